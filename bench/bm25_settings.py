"""How much of BM25's lead is its settings: k1 and b, bm25s's methods, and passage context.

    python -m bench.bm25_settings --data ../shared/data/obliqa

Scores BM25 alone (retrieval/lexical.py, the evaluation's own code) on the train questions and on
the reported split (dev) of one BEIR corpus, for a grid of k1 and b, for each bm25s method at the
default and at the train-best k1 and b, and with each passage prefixed by its context: the
document's title from documents/documents.jsonl (when the corpus has one; ObliQA's passages carry
an empty title) and the texts of its ancestor passages (a passage_id that is a prefix of this
one's, ending at a '.' or '(' boundary, within the same doc_id) of at most N words: its headings.
Settings are chosen on train; dev is printed beside them, to be read, not to choose from.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections import defaultdict
from pathlib import Path

from data import IRDataset, load_ir
from retrieval.lexical import LexicalIndex, build_index, lexical_search
from retrieval.metrics import TOP_K, score_ranking
from retrieval.settings import LexicalConfig

METRIC = "ndcg@10"


def ndcg(data: IRDataset, index: LexicalIndex) -> float:
    scores, rows = lexical_search(index, data.query_texts, min(TOP_K, index.size))
    qrels = [data.qrels.get(qid, {}) for qid in data.query_ids]
    return score_ranking(scores, rows, data, qrels).metrics[METRIC]


def ancestors(passage_id: str, ids: list[str]) -> list[str]:
    """The passage ids of `ids` that are proper prefixes of `passage_id` at a boundary, outermost first."""
    found = [
        p
        for p in ids
        if p != passage_id and passage_id.startswith(p) and (p.endswith(".") or passage_id[len(p)] in ".(")
    ]
    return sorted(found, key=len)


def contexts(corpus: Path, corpus_ids: list[str], max_words: int | None, titles: dict[int, str]) -> list[str]:
    """Each passage (in `corpus_ids` order) prefixed by its document title and its short ancestors."""
    rows = {row["_id"]: row for row in map(json.loads, corpus.open(encoding="utf-8"))}
    by_doc: dict[object, dict[str, str]] = defaultdict(dict)
    for row in rows.values():
        by_doc[row.get("doc_id")][row.get("passage_id", row["_id"])] = row["text"]
    texts = []
    for cid in corpus_ids:
        row = rows[cid]
        siblings = by_doc[row.get("doc_id")]
        heads = []
        if max_words is not None:
            heads = [
                siblings[p]
                for p in ancestors(row.get("passage_id", cid), list(siblings))
                if len(siblings[p].split()) <= max_words
            ]
        prefix = [titles[row["doc_id"]]] if row.get("doc_id") in titles else []
        texts.append(" > ".join(prefix + heads + [row.get("title", "")]).strip(" >") + " " + row["text"])
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a BEIR directory with qrels/train.tsv")
    parser.add_argument("--split", default="dev")
    args = parser.parse_args()
    train, dev = load_ir(args.data, "train"), load_ir(args.data, args.split)
    if train.corpus_ids != dev.corpus_ids:
        raise SystemExit(f"{args.data}: train and {args.split} load different corpora")
    base = LexicalConfig()
    print(f"| setting | train {METRIC} | {args.split} {METRIC} |\n|---|---:|---:|")

    def line(label: str, config: LexicalConfig, texts: list[str] | None = None) -> float:
        index = build_index(texts or train.corpus_texts, config)
        on_train = ndcg(train, index)
        print(f"| {label} | {on_train:.4f} | {ndcg(dev, index):.4f} |", flush=True)
        return on_train

    grid = {}
    for k1 in (0.3, 0.45, 0.6, 0.75, 0.9, 1.2, 1.5, 2.0):
        for b in (0.5, 0.7, 0.75, 0.8, 0.9, 1.0):
            grid[k1, b] = line(f"{base.method} k1 {k1} b {b}", dataclasses.replace(base, k1=k1, b=b))
    k1, b = max(grid, key=grid.get)
    print(f"\ntrain-best: k1 {k1}, b {b}\n\n| setting | train {METRIC} | {args.split} {METRIC} |\n|---|---:|---:|")
    for method in ("lucene", "robertson", "atire", "bm25l", "bm25+"):
        for k, bb in ((base.k1, base.b), (k1, b)):
            line(f"{method} k1 {k} b {bb}", dataclasses.replace(base, method=method, k1=k, b=bb))
    documents = args.data / "documents" / "documents.jsonl"
    titles = {}
    if documents.is_file():
        titles = {row["doc_id"]: row["title"] for row in map(json.loads, documents.open(encoding="utf-8"))}
    for with_title in (False, True):
        for max_words in (None, 8, 15, 1000):
            if not with_title and max_words is None:
                continue
            texts = contexts(args.data / "corpus.jsonl", train.corpus_ids, max_words, titles if with_title else {})
            heads = "no headings" if max_words is None else f"headings of <= {max_words} words"
            label = f"context: {'document title, ' if with_title else ''}{heads}"
            line(label, base, texts)


if __name__ == "__main__":
    main()
