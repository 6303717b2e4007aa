"""bench/fusion_variants.py end to end on a tiny set: a row per model and variant, each variant's
fused scores the quality bench's cross-fitted figure under that normalisation, the first variant
paired with itself at zero."""

from __future__ import annotations

import dataclasses
import random
import re

import numpy as np

from bench import fusion_variants
from bench.quality import Scorer, encode_model, model_bench_parser
from retrieval.hybrid import lexical_index
from retrieval.settings import LexicalConfig
from tests.helpers import WORDS, make_tiny_bert, random_texts, write_jsonl


def noisy_beir(root, n_docs=60, n_queries=20):
    """A BEIR set whose questions share three words with their passage and add five others, so
    neither BM25 nor the fusion ranks every one first (the normalisation then shows)."""
    rng = random.Random(3)
    texts = random_texts(n_docs, seed=7)
    write_jsonl(root / "corpus.jsonl", [{"_id": f"c{i}", "title": "", "text": t} for i, t in enumerate(texts)])
    questions = [
        " ".join(rng.sample(texts[i].split(), min(3, len(texts[i].split()))) + rng.choices(WORDS, k=5))
        for i in range(n_queries)
    ]
    write_jsonl(root / "queries.jsonl", [{"_id": f"q{i}", "text": q} for i, q in enumerate(questions)])
    (root / "qrels").mkdir()
    (root / "qrels" / "dev.tsv").write_text("".join(f"q{i}\tc{i}\t1\n" for i in range(n_queries)))
    return root


def test_every_variant_is_scored_as_the_bench_scores_a_row(tmp_path, capsys):
    model = make_tiny_bert(tmp_path / "m")
    beir = noisy_beir(tmp_path / "beir")
    common = ["--models", str(model), "--data", str(beir), "--dims", "32,16", "--resamples", "200"]
    fusion_variants.main([*common, "--variants", "minmax,max,zscore:k1=0.6:b=0.9"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {model} |")]
    assert [row.split(" | ")[1] for row in rows] == ["minmax", "max", "zscore:k1=0.6:b=0.9"]
    assert rows[0].count("+0.0000 [+0.0000, +0.0000]") == 2  # the first variant against itself

    args = model_bench_parser("").parse_args(common)
    args.weight_split = "cross"
    scorer = Scorer(args)
    queries, corpus, _ = encode_model(model, scorer)
    scores = {}
    for row, config in zip(rows, (LexicalConfig(), dataclasses.replace(LexicalConfig(), fusion_norm="max"))):
        scorer.index = lexical_index(scorer.data, config)
        fused, _, _ = scorer.cross_fitted(queries, corpus)
        shown = [float(x) for x in re.findall(r"\| (\d\.\d{4}) ", row)]  # BM25 alone, fused 32, fused 16
        assert shown[1:] == [round(float(np.mean(fused[d]["ndcg@10"])), 4) for d in (32, 16)]
        scores[config.fusion_norm] = np.array([fused[d]["mrr@10"] for d in (32, 16)])
    assert not np.array_equal(scores["minmax"], scores["max"])  # the normalisation reaches the fusion
