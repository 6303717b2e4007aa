"""Embedding ensembles: do several fine-tuned encoders, their cosines averaged, retrieve better?

    python -m bench.ensemble --models runs/recipe/ours/seed42/model,runs/recipe/ours/seed43/model \
        --data ../shared/data/obliqa --out runs/ensemble/recipe
    python -m bench.pair_results bench/results/quality/ours/seed42.json runs/ensemble/recipe/result.json

At each dim d, every model's question and passage vectors are truncated to d and re-normalised,
then joined side by side and divided by sqrt(n) (n models): unit vectors of n x d numbers whose
inner product is the mean of the n cosines. That is a deployable index (n x d floats a passage, n
encoders a question), searched and fused with BM25 exactly as the quality bench scores a row
(bench.quality.Scorer: the weight cross-fitted on two halves of the split), alone and fused; with
`--memory PAIRS` also fused with question memory (the training questions encoded the same way).
Unlike a soup (bench/soup.py, one averaged model), it costs n encoders at search time. The result
json is keyed by d, in the quality bench's format, so bench.pair_results pairs it with any row.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.quality import CROSS, Scorer, encode_model, model_bench_parser, per_query_lists
from common.files import output_problem, write_atomic
from retrieval.evaluation import encode_queries, evaluate_embeddings
from retrieval.memory import EncodedMemory
from retrieval.search import truncate_normalize


def joined(parts: list[np.ndarray], dim: int) -> np.ndarray:
    """(N, n x dim): each model's vectors truncated to dim and unit length, side by side, / sqrt(n)."""
    return np.concatenate([truncate_normalize(x, dim) for x in parts], axis=1) / np.sqrt(len(parts))


def main(argv: list[str] | None = None) -> int:
    parser = model_bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="result.json goes here")
    parser.add_argument("--memory", type=Path, metavar="PAIRS", help="also fuse with question memory (bench.quality)")
    args = parser.parse_args(argv)
    if problem := output_problem(args.out, directory=True):
        raise SystemExit(f"error: --out {args.out}: {problem}")
    args.weight_split = CROSS
    scorer = Scorer(args)  # reads --memory and links it, before any model loads
    queries, corpus, keys = [], [], []
    for name in args.models:
        q, c, encoder = encode_model(name, scorer)
        queries.append(q)
        corpus.append(c)
        if scorer.memory is not None:
            keys.append(encode_queries(encoder, scorer.memory.questions, args.eval_batch, False))
    dims = args.dims
    result = {
        "row": "ensemble",
        "models": [str(m) for m in args.models],
        "data": f"{args.data} ({args.split})",
        "weight_split": CROSS,
        "query_ids": scorer.data.query_ids,
        "per_query": {},
        "fused": {},
        "weights": {},
    }
    for dim in dims:
        width = len(args.models) * dim
        q, c = joined(queries, dim), joined(corpus, dim)
        args.dims = [width]  # the Scorer fuses at the args' dims: here the joined width
        alone = evaluate_embeddings(q, c, scorer.data, [width])[width]
        fused, weights, _ = scorer.cross_fitted(q, c)
        result["per_query"][str(dim)] = per_query_lists(alone)
        result["fused"][str(dim)], result["weights"][str(dim)] = fused[width], weights[width]
        line = f"{dim} dims ({width} numbers a passage): ndcg@10 alone {alone.metrics['ndcg@10']:.4f}, fused "
        line += f"{np.mean(fused[width]['ndcg@10']):.4f}"
        if scorer.memory is not None:
            remembered = scorer.cross_fitted(q, c, EncodedMemory(scorer.memory, joined(keys, dim)))[0][width]
            result.setdefault("remembered", {})[str(dim)] = remembered
            line += f", fused with memory {np.mean(remembered['ndcg@10']):.4f}"
        print(line, flush=True)
    args.dims = dims
    if scorer.memory is not None:
        result["memory"] = {"pairs": str(args.memory), "pairs_sha256": scorer.memory_sha256}
    write_atomic(args.out / "result.json", json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
