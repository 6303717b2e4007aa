"""Is a re-ranker's gain its model or its weight? Each saved re-ranker at several fixed weights over
one first stage, fused and re-ranked as the quality bench does it (the fusion weight cross-fitted on
the reported split). A diagnostic: weights read off the reported split choose nothing. With two or
more re-rankers, each one at the weight it saved is also paired with the first, question by
question (95% paired bootstrap interval, randomization p): is one re-ranker better than another?

    python -m bench.rerank_weights --models runs/quality/ours/seed42/model --data ../shared/data/obliqa \
        --rerankers runs/quality/reranker/seed42/reranker,runs/reranker_cmd/reranker --weights 0.45,0.55
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.quality import CROSS, METRIC, Scorer, change, encode_model, model_bench_parser


def main(argv: list[str] | None = None) -> int:
    parser = model_bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--rerankers", type=lambda s: [Path(p) for p in s.split(",")], required=True)
    parser.add_argument("--weights", type=lambda s: [float(w) for w in s.split(",")], default=[0.45, 0.55])
    args = parser.parse_args(argv)
    args.weight_split = CROSS
    scorer = Scorer(args)
    for model in args.models:
        queries, corpus, _ = encode_model(model, scorer)
        at_saved = {}  # re-ranker -> dim -> per-question METRIC at the weight it saved
        for where in args.rerankers:
            scorer.load_reranker(where)
            saved = scorer.reranker_note["weight"]
            for weight in sorted({*args.weights, saved}):
                scorer.reranker_note["weight"] = weight
                fused, _, reranked = scorer.cross_fitted(queries, corpus)
                if weight == saved:
                    at_saved[where] = {dim: np.asarray(reranked[dim][METRIC]) for dim in args.dims}
                if weight not in args.weights:
                    continue
                cells = ", ".join(
                    f"{dim}: fused {np.mean(fused[dim][METRIC]):.4f} re-ranked {np.mean(reranked[dim][METRIC]):.4f}"
                    for dim in args.dims
                )
                print(f"{model} | {where} (saved {saved}) at {weight}: {METRIC} {cells}", flush=True)
        first = args.rerankers[0]
        for where in args.rerankers[1:]:
            for dim in args.dims:
                a, b = at_saved[first][dim], at_saved[where][dim]
                diff, lo, hi, p = change(a, b, args.resamples)
                print(
                    f"{model} | {dim}: {where} {b.mean():.4f} - {first} {a.mean():.4f} at their saved weights: "
                    f"{diff:+.4f} [{lo:+.4f}, {hi:+.4f}], p {p:.3g}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
