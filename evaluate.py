"""Retrieval evaluation at every Matryoshka dimension: encode once -> exact FAISS search -> metrics.

    python evaluate.py --model MODEL --data BEIR_DIR --split dev --out metrics.json
    python evaluate.py --model NEW --baseline OLD --data BEIR_DIR --split dev   # paired comparison

Corpus and queries are encoded once at full size; each dimension truncates, re-normalises and
runs exact inner-product search (`IndexFlatIP`, on the GPU when faiss has GPU support and CUDA
is present). Ties in score are broken by one rule: score descending, then corpus order.
Metrics follow trec_eval: NDCG@10 with the judged relevance as gain, MRR@10, Recall@10,
Recall@100, and MAP@100 (average precision over the top 100, divided by all relevant documents).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from common.files import write_atomic
from common.processes import is_main_process, start_processes, stop_processes
from data import DataError, IRDataset, load_ir
from model import PACKAGED_MINILM, Encoder, ModelConfig
from retrieval.evaluation import default_dims, encode_ir, evaluate_embeddings, write_runs
from retrieval.frontier import evaluate_frontier, frontier_report, write_frontier_runs
from retrieval.metrics import METRICS, DimResult, format_table
from retrieval.settings import check_precision_flags
from retrieval.stats import compare_per_query, format_comparison

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=PACKAGED_MINILM, help="hub id or local directory (default: packaged MiniLM)")
    parser.add_argument(
        "--data", required=True, help="BEIR directory, or pairs (directory of <split> files, or hub id)"
    )
    parser.add_argument("--split", default="test", help="qrels split of a BEIR set, or the held-out pairs split")
    parser.add_argument(
        "--dims",
        type=lambda s: [int(d) for d in s.split(",")],
        help="e.g. 384,128,64 (default: full and powers of two down to 32)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, help="write metrics JSON here")
    parser.add_argument("--run-out", type=Path, help="write TREC runs and per-query metrics to this directory")
    parser.add_argument("--max-length", type=int)
    parser.add_argument("--pooling", choices=["cls", "mean", "lasttoken", "max"])
    parser.add_argument("--query-prompt")
    parser.add_argument("--document-prompt")
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="allow the model's (and the baseline's) own code"
    )
    parser.add_argument(
        "--baseline", help="also evaluate this model (with its own settings) and compare the two per query"
    )
    parser.add_argument(
        "--resamples", type=int, default=10000, help="bootstrap and randomization resamples (default 10000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    parser.add_argument(
        "--precision",
        type=lambda s: [p for p in s.split(",") if p],
        default=["float32"],
        help="float32,int8,binary: search each dim at each precision (default float32 only)",
    )
    parser.add_argument(
        "--rescore",
        type=int,
        default=0,
        help="also rescore the top N binary candidates with the float32 query (N >= 100)",
    )
    return parser.parse_args(argv)


def _compare(
    results: dict[int, DimResult], base_results: dict[int, DimResult], args: argparse.Namespace
) -> dict[str, dict[str, dict[str, float]]]:
    """Print the baseline's table and the paired change per metric; the comparison keyed by str(dim) for JSON."""
    comparison = compare_per_query(
        {dim: r.per_query for dim, r in base_results.items()},
        {dim: r.per_query for dim, r in results.items()},
        METRICS,
        args.resamples,
        args.seed,
    )
    print(f"\nbaseline {args.baseline}:")
    print(format_table({dim: result.metrics for dim, result in base_results.items()}))
    print(
        f"\nchange from the baseline per query: 95% paired bootstrap interval, two-sided randomization p "
        f"({args.resamples} resamples, seed {args.seed})"
    )
    print(format_comparison(comparison, METRICS))
    return {str(dim): by_metric for dim, by_metric in comparison.items()}


def checked_args(argv: list[str] | None) -> argparse.Namespace:
    """The parsed flags; a bad one exits with one error line before anything is loaded."""
    args = parse_args(argv)
    try:
        if args.resamples < 1:
            raise ValueError(f"--resamples {args.resamples}: must be at least 1")
        check_precision_flags(args.precision, args.rescore)
    except ValueError as err:
        sys.exit(f"error: {err}")
    return args


def load_inputs(args: argparse.Namespace) -> tuple[IRDataset, Encoder, Encoder | None, list[int]]:
    """The data, the model, the baseline (None without --baseline) and the dims, checked before encoding."""
    try:
        data = load_ir(args.data, args.split)
    except DataError as err:
        sys.exit(f"error: {err}")
    config = ModelConfig(
        args.model,
        pooling=args.pooling,
        max_length=args.max_length,
        query_prompt=args.query_prompt,
        document_prompt=args.document_prompt,
        trust_remote_code=args.trust_remote_code,
    )
    encoder = Encoder.from_config(config)
    # the baseline reads its own pooling, prompts and max length
    baseline = (
        Encoder.from_config(ModelConfig(args.baseline, trust_remote_code=args.trust_remote_code))
        if args.baseline
        else None
    )
    full = min(model.dim for model in (encoder, baseline) if model is not None)
    dims = args.dims or default_dims(full)
    if not all(0 < dim <= full for dim in dims):
        sys.exit(
            f"error: --dims {dims}: each must be in 1..{full}, the embedding size of "
            + ("the smaller model" if baseline else "the model")
        )
    return data, encoder, baseline, dims


def scored_report(
    args: argparse.Namespace, data: IRDataset, dims: list[int], embeddings: tuple, base_embeddings: tuple | None
) -> dict:
    """Score, print and return the report: metrics per dim, the metadata, the paired comparison with
    --baseline, and the storage frontier with --precision. `embeddings` is (queries, corpus, seconds)."""
    query_emb, corpus_emb, seconds = embeddings
    results = evaluate_embeddings(query_emb, corpus_emb, data, dims)
    report: dict = {str(dim): result.metrics for dim, result in results.items()}
    report["meta"] = {
        "model": args.model,
        "data": data.name,
        "queries": len(data.query_ids),
        "corpus": len(data.corpus_ids),
        "corpus_encode_s": seconds,
        "passages_per_s": len(data.corpus_ids) / seconds,
    }
    print(
        f"{data.name}: {len(data.query_ids)} queries, {len(data.corpus_ids)} passages "
        f"(encoded at {len(data.corpus_ids) / seconds:.1f} passages/s)"
    )
    if base_embeddings is not None:
        print(f"model {args.model}:")
    print(format_table({dim: result.metrics for dim, result in results.items()}))
    if base_embeddings is not None:
        report["comparison"] = _compare(results, evaluate_embeddings(*base_embeddings, data, dims), args)
        report["meta"].update(baseline=args.baseline, resamples=args.resamples, seed=args.seed)
    if args.precision != ["float32"] or args.rescore:
        comparison = report.get("comparison")  # --baseline's, of the float32 search
        points = evaluate_frontier(query_emb, corpus_emb, data, dims, args.precision, args.rescore)
        report = frontier_report(
            points, corpus_emb, data, {**report["meta"], "precisions": args.precision, "rescore": args.rescore}
        )
        if comparison is not None:
            report["comparison"] = comparison
        if args.run_out:
            write_frontier_runs(points, data, args.run_out)
    elif args.run_out:
        write_runs(results, data, args.run_out)
    return report


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Run from the command line; returns {dim: {metric: value}} and the metadata as written to --out."""
    args = checked_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data, encoder, baseline, dims = load_inputs(args)
    device = start_processes()
    show_progress = is_main_process()
    embeddings = encode_ir(encoder.to(device), data, args.batch_size, show_progress)
    base_embeddings = None
    if baseline is not None:
        encoder.cpu()  # one model on the device at a time
        base_embeddings = encode_ir(baseline.to(device), data, args.batch_size, show_progress)[:2]
    stop_processes()
    if embeddings[0] is None:  # not the main process: its shard is encoded and gathered
        return {}
    report = scored_report(args, data, dims, embeddings, base_embeddings)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.out, json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
