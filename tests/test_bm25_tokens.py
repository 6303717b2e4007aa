"""bench/bm25_tokens.py on a corpus where only the rule number tells passages apart: with reference
tokens each question finds its rule first; with words every passage ties on "rule" and falls back to
corpus order, so a question about row r finds it at rank r + 1 (NDCG@10 1 / log2(r + 2))."""

from __future__ import annotations

import math
import re

import pytest

from bench import bm25_tokens
from tests.helpers import write_jsonl


def rules_beir(root):
    texts = [f"Rule {c}.{s}.{r} sets the reporting duty." for c in (1, 2) for s in (1, 2) for r in (1, 2, 3)]
    write_jsonl(root / "corpus.jsonl", [{"_id": f"c{i}", "title": "", "text": t} for i, t in enumerate(texts)])
    asked = {"train": [0, 1, 2, 3], "dev": [6, 7, 8]}
    queries = []
    (root / "qrels").mkdir()
    for split, rows in asked.items():
        for row in rows:
            queries.append({"_id": f"{split}{row}", "text": f"What does {texts[row][:10]} require?"})
        queries.append({"_id": f"{split}-plain", "text": "Which rule sets the duty?"})  # no digit: row 0
        lines = [f"{split}{row}\tc{row}\t1\n" for row in rows] + [f"{split}-plain\tc0\t1\n"]
        (root / "qrels" / f"{split}.tsv").write_text("".join(lines))
    write_jsonl(root / "queries.jsonl", queries)
    return root, asked


def test_reference_tokens_find_each_rule_and_words_fall_back_to_corpus_order(tmp_path, capsys):
    root, asked = rules_beir(tmp_path / "beir")
    bm25_tokens.main(["--data", str(root), "--resamples", "200"])
    rows = {
        tuple(cells[:2]): cells
        for line in capsys.readouterr().out.splitlines()
        if (cells := [c.strip() for c in line.strip("|").split("|")])[0] in ("train", "dev")
    }
    for split, wanted in asked.items():
        cells = rows[split, "ndcg@10"]
        words = [1 / math.log2(row + 2) for row in wanted]
        everyone = (sum(words) + 1) / (len(wanted) + 1)  # the plain question's passage is row 0: rank 1 either way
        assert float(cells[2]) == pytest.approx(everyone, abs=1e-4) and float(cells[3]) == 1.0
        digit = re.fullmatch(r"(\S+) → (\S+) \((\d+)\)", cells[6])
        assert digit and float(digit[1]) == pytest.approx(sum(words) / len(words), abs=1e-4)
        assert float(digit[2]) == 1.0 and int(digit[3]) == len(wanted)
        assert cells[7] == "1.0000 → 1.0000"  # the question without a digit: the same either way
