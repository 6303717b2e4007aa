"""What BM25 and the fusion add to one evaluation: the BM25 index, and BM25 alone plus both fusions
at every dim (the weight chosen on the split: 21 fused rankings a dim), on a real corpus.

    python -m bench.hybrid_cost --data ../shared/data/obliqa --split dev --dims 384,256,128,64,32

The dense side is the dense search of the same shapes (unit vectors of the model's size, seeded):
its cost, like BM25's, depends on the shapes and the texts, not on what the vectors hold. Prints
the seconds of each part, min/median/max over --repeats, beside the dense exact search alone.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from data import load_ir
from retrieval.evaluation import evaluate_embeddings
from retrieval.hybrid import evaluate_hybrid, lexical_index
from retrieval.settings import LexicalConfig


def timed(function, repeats: int) -> tuple[list[float], object]:
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return seconds, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--dims", default="384,256,128,64,32")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    data = load_ir(args.data, args.split)
    dims = [int(d) for d in args.dims.split(",")]
    rng = np.random.default_rng(0)
    query_emb = rng.normal(size=(len(data.query_ids), dims[0])).astype(np.float32)
    corpus_emb = rng.normal(size=(len(data.corpus_ids), dims[0])).astype(np.float32)
    index = lexical_index(data, LexicalConfig())
    given = {d: 0.4 for d in dims}
    rows = [
        ("dense exact search and metrics, every dim", lambda: evaluate_embeddings(query_emb, corpus_emb, data, dims)),
        ("BM25 index (once per run)", lambda: lexical_index(data, LexicalConfig())),
        (
            "BM25 + convex (weight chosen) + RRF, every dim",
            lambda: evaluate_hybrid(query_emb, corpus_emb, data, dims, index),
        ),
        (
            "the same with the weight given",
            lambda: evaluate_hybrid(query_emb, corpus_emb, data, dims, index, given, "x"),
        ),
    ]
    print(f"{data.name}: {len(data.query_ids)} queries, {len(data.corpus_ids)} passages, dims {dims}")
    print("| part | min s | median s | max s |\n|---|---:|---:|---:|")
    for name, function in rows:
        seconds, _ = timed(function, args.repeats)
        print(f"| {name} | {min(seconds):.2f} | {statistics.median(seconds):.2f} | {max(seconds):.2f} |")


if __name__ == "__main__":
    main()
