"""Does BM25 gain from keeping rule numbers as tokens? `lexical.tokens` words against references.

    python -m bench.bm25_tokens --data ../shared/data/obliqa

BM25 alone (retrieval/lexical.py, the evaluation's own code, the other settings at their defaults)
on the train questions and on the reported split of one BEIR corpus, once per token pattern:
NDCG@10, Recall@10 and MAP@10, the paired change of references against words (95% bootstrap
interval and randomization p over the split's questions), and the means on the questions that hold
a digit and on the others. Seconds on ObliQA; no model is run.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from data import load_ir
from retrieval.lexical import build_index, lexical_search
from retrieval.metrics import TOP_K, score_ranking
from retrieval.settings import TOKEN_PATTERNS, LexicalConfig
from retrieval.stats import paired_bootstrap, paired_randomization

METRICS = ("ndcg@10", "recall@10", "map@10")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a BEIR directory with qrels/train.tsv")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--resamples", type=int, default=10_000)
    args = parser.parse_args(argv)
    print("| split | metric | words | references | change [95% CI] | p | with a digit (n) | the others |")
    print("|---|---|---:|---:|---|---:|---|---|")
    for split in ("train", args.split):
        data = load_ir(args.data, split)
        qrels = [data.qrels.get(qid, {}) for qid in data.query_ids]
        digit = np.array([bool(re.search(r"\d", text)) for text in data.query_texts])
        per_query = {}
        for tokens in TOKEN_PATTERNS:
            index = build_index(data.corpus_texts, LexicalConfig(tokens=tokens))
            found = lexical_search(index, data.query_texts, min(TOP_K, index.size))
            per_query[tokens] = score_ranking(*found, data, qrels).per_query
        for metric in METRICS:
            words, refs = (np.asarray(per_query[t][metric]) for t in ("words", "references"))
            diff, lo, hi = paired_bootstrap(words, refs, resamples=args.resamples, seed=0)
            p = paired_randomization(words, refs, resamples=args.resamples, seed=0)
            print(
                f"| {split} | {metric} | {words.mean():.4f} | {refs.mean():.4f} | {diff:+.4f} [{lo:+.4f}, {hi:+.4f}] "
                f"| {p:.2g} | {words[digit].mean():.4f} → {refs[digit].mean():.4f} ({digit.sum()}) "
                f"| {words[~digit].mean():.4f} → {refs[~digit].mean():.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
