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
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
import torch
import torch.distributed as dist

from data import DataError, IRDataset, load_ir
from model import PACKAGED_MINILM, Encoder, ModelConfig
from quantize import PRECISIONS
from stats import compare_per_query, format_comparison

logger = logging.getLogger(__name__)

METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100", "map@100")
TOP_K = 100  # the deepest cut-off any metric needs
GPU_MAX_K = 2048  # faiss-gpu's largest k


def default_dims(full: int, smallest: int = 32) -> list[int]:
    """The full size and every power of two below it, down to `smallest`: 384 -> [384, 256, 128, 64, 32]."""
    dims = [full]
    power = 1 << (full.bit_length() - 1)  # largest power of two <= full
    power = power // 2 if power == full else power
    while power >= smallest:
        dims.append(power)
        power //= 2
    return dims


def truncate_normalize(embeddings: np.ndarray, dim: int) -> np.ndarray:
    """(N, D) -> (N, dim) float32 rows of unit length (all-zero rows stay zero)."""
    head = np.ascontiguousarray(embeddings[:, :dim], dtype=np.float32)
    norms = np.linalg.norm(head, axis=1, keepdims=True)
    return head / np.maximum(norms, 1e-12)


# ---------------------------------------------------------------- search


def _flat_ip_index(docs: np.ndarray) -> tuple[faiss.Index, int]:
    """An exact inner-product index over `docs` (N, D), on the GPU when faiss and CUDA allow; and its max k."""
    index = faiss.IndexFlatIP(docs.shape[1])
    max_k = docs.shape[0]
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0 and torch.cuda.is_available():
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        max_k = min(max_k, GPU_MAX_K)
    index.add(docs)
    return index, max_k


def _sort_ties(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order each row by score descending, then corpus id ascending; missing (-1) ids last."""
    key_ids = np.where(ids < 0, np.iinfo(np.int64).max, ids)
    key_scores = np.where(ids < 0, np.inf, -scores)
    order = np.lexsort((key_ids, key_scores), axis=1)  # last key is the primary one
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def exact_search(queries: np.ndarray, docs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by inner product: (Q, k) scores and corpus row ids, -1 where the corpus has fewer than k."""
    return ranked_search(*_flat_ip_index(docs), queries, k)


def ranked_search(index, max_k: int, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of any index whose search returns higher-is-better scores, under the tie rule.

    FAISS breaks ties arbitrarily, so each row is fetched deeper than k until the k-th score is
    strictly above the last score fetched (or the whole corpus is fetched): then every document
    tied with the k-th is among those fetched, and sorting them gives the documented tie rule.
    """
    n_queries = queries.shape[0]
    top_scores = np.full((n_queries, k), -np.inf, dtype=np.float32)
    top_ids = np.full((n_queries, k), -1, dtype=np.int64)
    rows = np.arange(n_queries)
    fetch = min(k + 16, max_k)
    while rows.size:
        scores, ids = _sort_ties(*index.search(queries[rows], fetch))
        keep = min(k, fetch)
        top_scores[rows, :keep], top_ids[rows, :keep] = scores[:, :keep], ids[:, :keep]
        if fetch >= max_k or keep < k:
            break
        unresolved = scores[:, k - 1] == scores[:, fetch - 1]  # ties may continue past what was fetched
        rows, fetch = rows[unresolved], min(fetch * 2, max_k)
    return top_scores, top_ids


# ---------------------------------------------------------------- metrics


def gains_at_ranks(ranked_ids: list[list[str]], qrels: list[dict[str, int]]) -> np.ndarray:
    """(Q, K) relevance of the document at each rank (0 for unjudged, irrelevant or missing)."""
    depth = max((len(ids) for ids in ranked_ids), default=0)
    gains = np.zeros((len(ranked_ids), depth), dtype=np.float64)
    for row, (ids, judged) in enumerate(zip(ranked_ids, qrels)):
        gains[row, : len(ids)] = [judged.get(doc_id, 0) for doc_id in ids]
    return gains


def per_query_metrics(gains: np.ndarray, qrels: list[dict[str, int]]) -> dict[str, np.ndarray]:
    """trec_eval's measures per query from (Q, K) gains (K >= 100, shorter rows padded with 0)."""
    gains = np.pad(gains, ((0, 0), (0, max(0, TOP_K - gains.shape[1]))))[:, :TOP_K]
    hits = gains > 0  # (Q, K)
    n_relevant = np.array([sum(r > 0 for r in judged.values()) for judged in qrels], dtype=np.float64)
    ranks = np.arange(1, TOP_K + 1)
    discounts = 1.0 / np.log2(ranks + 1)  # rank 1 -> 1/log2(2)
    ideal = np.zeros((len(qrels), 10))
    for row, judged in enumerate(qrels):
        best = sorted((r for r in judged.values() if r > 0), reverse=True)[:10]
        ideal[row, : len(best)] = best
    idcg = ideal @ discounts[:10]
    first_hit = np.where(hits[:, :10].any(1), hits[:, :10].argmax(1) + 1, np.inf)
    precision_at_hits = np.cumsum(hits, axis=1) / ranks * hits  # (Q, K) precision at each relevant rank
    return {
        "ndcg@10": (gains[:, :10] @ discounts[:10]) / np.maximum(idcg, 1e-300),
        "mrr@10": 1.0 / first_hit,
        "recall@10": hits[:, :10].sum(1) / n_relevant,
        "recall@100": hits.sum(1) / n_relevant,
        "map@100": precision_at_hits.sum(1) / n_relevant,
    }


# ---------------------------------------------------------------- evaluation


@dataclass
class DimResult:
    metrics: dict[str, float]  # mean over queries
    per_query: dict[str, np.ndarray]  # metric -> (Q,)
    ranked_ids: list[list[str]]  # top-100 corpus ids per query, best first
    ranked_scores: np.ndarray  # (Q, 100)
    # other precisions of the same dim (frontier.attach_frontier): label -> metrics, bytes_per_vector, ms_per_query
    quantized: dict[str, dict[str, float]] = field(default_factory=dict)


def evaluate_embeddings(
    query_emb: np.ndarray, corpus_emb: np.ndarray, data: IRDataset, dims: list[int]
) -> dict[int, DimResult]:
    """Metrics at each dim from full-size (Q, D) query and (N, D) corpus embeddings."""
    full = corpus_emb.shape[1]
    bad = [d for d in dims if not 0 < d <= full]
    if bad:
        raise ValueError(f"dims {bad} are outside 1..{full}, the model's embedding size")
    qrels = [data.qrels.get(qid, {}) for qid in data.query_ids]
    unjudged = [qid for qid, judged in zip(data.query_ids, qrels) if not any(r > 0 for r in judged.values())]
    if unjudged:
        raise ValueError(f"queries without a relevant document cannot be scored: {unjudged[:5]}")
    results = {}
    for dim in dims:
        scores, rows = exact_search(truncate_normalize(query_emb, dim), truncate_normalize(corpus_emb, dim), TOP_K)
        results[dim] = score_ranking(scores, rows, data, qrels)
    return results


def score_ranking(scores: np.ndarray, rows: np.ndarray, data: IRDataset, qrels: list[dict[str, int]]) -> DimResult:
    ranked_ids = [[data.corpus_ids[r] for r in row if r >= 0] for row in rows]
    per_query = per_query_metrics(gains_at_ranks(ranked_ids, qrels), qrels)
    return DimResult({name: float(values.mean()) for name, values in per_query.items()}, per_query, ranked_ids, scores)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def encode_sharded(encode: Callable[[list[str]], torch.Tensor], texts: list[str], dim: int,
                   device: torch.device) -> torch.Tensor | None:
    """(N, dim) embeddings of `texts` in input order on the main process (None on the others).

    Outside distributed mode this is `encode(texts)`. With P processes, process r encodes
    texts[r::P] (strided, so every process gets a similar mix of lengths): each text is encoded
    exactly once, and the shards are gathered to process 0, which alone searches.
    """
    if not _distributed():
        return encode(texts)
    rank, world = dist.get_rank(), dist.get_world_size()
    shard = texts[rank::world]
    mine = encode(shard) if shard else torch.zeros(0, dim)
    rows = -(-len(texts) // world)  # every shard padded to the largest, as gather needs equal sizes
    padded = torch.zeros(rows, dim, device=device)
    padded[: len(shard)] = mine.to(device)
    parts = [torch.empty_like(padded) for _ in range(world)] if rank == 0 else None
    dist.gather(padded, parts, dst=0)  # NCCL gathers CUDA tensors, gloo CPU ones: `device` is the model's
    if rank != 0:
        return None
    out = torch.empty(len(texts), dim)
    for r, part in enumerate(parts):
        out[r::world] = part[: len(range(r, len(texts), world))].cpu()
    return out


def encode_ir(encoder: Encoder, data: IRDataset, batch_size: int,
              show_progress: bool) -> tuple[np.ndarray | None, np.ndarray | None, float]:
    """Full-size query and corpus embeddings (None on all but the main process when distributed),
    and the corpus encoding time in seconds."""
    def encoder_for(prompt: str) -> Callable[[list[str]], torch.Tensor]:
        return lambda texts: encoder.encode(texts, batch_size=batch_size, prompt=prompt, show_progress=show_progress)

    query_emb = encode_sharded(encoder_for(encoder.spec.query_prompt), data.query_texts, encoder.dim, encoder.device)
    start = time.perf_counter()
    corpus_emb = encode_sharded(encoder_for(encoder.spec.document_prompt), data.corpus_texts, encoder.dim, encoder.device)
    seconds = time.perf_counter() - start
    if query_emb is None:
        return None, None, seconds
    return query_emb.numpy(), corpus_emb.numpy(), seconds


def evaluate(
    encoder: Encoder, data: IRDataset, dims: list[int] | None = None, batch_size: int = 64, show_progress: bool = False
) -> dict[int, DimResult] | None:
    """Encode `data` once with `encoder` and measure retrieval at each Matryoshka dim (default: all).

    Under torch.distributed every process must call it: encoding is sharded across processes and
    the search runs on the main one, which gets the results; the others get None.
    """
    query_emb, corpus_emb, _ = encode_ir(encoder, data, batch_size, show_progress)
    if query_emb is None:
        return None
    return evaluate_embeddings(query_emb, corpus_emb, data, dims or default_dims(encoder.dim))


def format_table(metrics_by_dim: dict[int, dict[str, float]]) -> str:
    """A Markdown table, one row per dimension."""
    lines = ["| dim | " + " | ".join(METRICS) + " |", "|---:|" + "---:|" * len(METRICS)]
    for dim, metrics in metrics_by_dim.items():
        lines.append(f"| {dim} | " + " | ".join(f"{metrics[m]:.4f}" for m in METRICS) + " |")
    return "\n".join(lines)


def write_runs(results: dict[int, DimResult], data: IRDataset, out_dir: Path, tag: str = "embed", suffix: str = "") -> None:
    """Per dim: a TREC run file (qid Q0 docid rank score tag) and per-query metrics as JSONL
    (`run.<dim><suffix>.trec`; the suffix names the precision when there are several)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for dim, result in results.items():
        with open(out_dir / f"run.{dim}{suffix}.trec", "w", encoding="utf-8") as run:
            for qid, ids, scores in zip(data.query_ids, result.ranked_ids, result.ranked_scores):
                for rank, (doc_id, score) in enumerate(zip(ids, scores), start=1):
                    run.write(f"{qid} Q0 {doc_id} {rank} {score:.9g} {tag}\n")
        with open(out_dir / f"per_query.{dim}{suffix}.jsonl", "w", encoding="utf-8") as per_query:
            for row, (qid, text) in enumerate(zip(data.query_ids, data.query_texts)):
                record = {"query_id": qid, "query": text, "relevant": sorted(data.qrels[qid])}
                record.update({m: float(result.per_query[m][row]) for m in METRICS})
                record["top10"] = result.ranked_ids[row][:10]
                per_query.write(json.dumps(record) + "\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=PACKAGED_MINILM, help="hub id or local directory (default: packaged MiniLM)")
    parser.add_argument("--data", required=True, help="BEIR directory, or pairs (directory of <split> files, or hub id)")
    parser.add_argument("--split", default="test", help="qrels split of a BEIR set, or the held-out pairs split")
    parser.add_argument("--dims", type=lambda s: [int(d) for d in s.split(",")], help="e.g. 384,128,64 (default: full and powers of two down to 32)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, help="write metrics JSON here")
    parser.add_argument("--run-out", type=Path, help="write TREC runs and per-query metrics to this directory")
    parser.add_argument("--max-length", type=int)
    parser.add_argument("--pooling", choices=["cls", "mean", "lasttoken", "max"])
    parser.add_argument("--query-prompt")
    parser.add_argument("--document-prompt")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model's (and the baseline's) own code")
    parser.add_argument("--baseline", help="also evaluate this model (with its own settings) and compare the two per query")
    parser.add_argument("--resamples", type=int, default=10000, help="bootstrap and randomization resamples (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    parser.add_argument("--precision", type=lambda s: [p for p in s.split(",") if p], default=["float32"],
                        help="float32,int8,binary: search each dim at each precision (default float32 only)")
    parser.add_argument("--rescore", type=int, default=0,
                        help="also rescore the top N binary candidates with the float32 query (N >= 100)")
    return parser.parse_args(argv)


def _compare(results: dict[int, DimResult], base_results: dict[int, DimResult],
             args: argparse.Namespace) -> dict[str, dict[str, dict[str, float]]]:
    """Print the baseline's table and the paired change per metric; the comparison keyed by str(dim) for JSON."""
    comparison = compare_per_query({dim: r.per_query for dim, r in base_results.items()},
                                   {dim: r.per_query for dim, r in results.items()},
                                   METRICS, args.resamples, args.seed)
    print(f"\nbaseline {args.baseline}:")
    print(format_table({dim: result.metrics for dim, result in base_results.items()}))
    print(f"\nchange from the baseline per query: 95% paired bootstrap interval, two-sided randomization p "
          f"({args.resamples} resamples, seed {args.seed})")
    print(format_comparison(comparison, METRICS))
    return {str(dim): by_metric for dim, by_metric in comparison.items()}


def start_processes() -> torch.device:
    """Under torchrun (WORLD_SIZE > 1) join the process group; the device this process encodes on."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Run from the command line; returns {dim: {metric: value}} and the metadata as written to --out."""
    args = parse_args(argv)
    if args.resamples < 1:
        sys.exit(f"error: --resamples {args.resamples}: must be at least 1")
    unknown = [p for p in args.precision if p not in PRECISIONS]
    if unknown or not args.precision:
        sys.exit(f"error: --precision {','.join(args.precision)}: choose from {','.join(PRECISIONS)}")
    if args.rescore and (args.rescore < TOP_K or "binary" not in args.precision):
        sys.exit(f"error: --rescore {args.rescore}: rescores binary candidates, so it needs --precision with binary "
                 f"and N >= {TOP_K} (the depth the metrics need)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        data = load_ir(args.data, args.split)
    except DataError as err:
        sys.exit(f"error: {err}")
    config = ModelConfig(args.model, pooling=args.pooling, max_length=args.max_length, query_prompt=args.query_prompt,
                         document_prompt=args.document_prompt, trust_remote_code=args.trust_remote_code)
    encoder = Encoder.from_config(config)
    # the baseline reads its own pooling, prompts and max length; loaded now so that bad dims stop the run before encoding
    baseline = Encoder.from_config(ModelConfig(args.baseline, trust_remote_code=args.trust_remote_code)) if args.baseline else None
    device = start_processes()
    full = min(model.dim for model in (encoder, baseline) if model is not None)
    dims = args.dims or default_dims(full)
    if not all(0 < dim <= full for dim in dims):
        sys.exit(f"error: --dims {dims}: each must be in 1..{full}, the embedding size of "
                 + ("the smaller model" if baseline else "the model"))
    show_progress = not _distributed() or dist.get_rank() == 0
    query_emb, corpus_emb, seconds = encode_ir(encoder.to(device), data, args.batch_size, show_progress)
    if baseline is not None:
        encoder.cpu()  # one model on the device at a time
        base_query_emb, base_corpus_emb, _ = encode_ir(baseline.to(device), data, args.batch_size, show_progress)
    if dist.is_initialized():
        dist.destroy_process_group()
    if query_emb is None:  # not the main process: its shard is encoded and gathered
        return {}
    results = evaluate_embeddings(query_emb, corpus_emb, data, dims)
    report: dict = {str(dim): result.metrics for dim, result in results.items()}
    report["meta"] = {"model": args.model, "data": data.name, "queries": len(data.query_ids),
                      "corpus": len(data.corpus_ids), "corpus_encode_s": seconds,
                      "passages_per_s": len(data.corpus_ids) / seconds}
    print(f"{data.name}: {len(data.query_ids)} queries, {len(data.corpus_ids)} passages "
          f"(encoded at {len(data.corpus_ids) / seconds:.1f} passages/s)")
    if baseline is not None:
        print(f"model {args.model}:")
    print(format_table({dim: result.metrics for dim, result in results.items()}))
    if baseline is not None:
        report["comparison"] = _compare(results, evaluate_embeddings(base_query_emb, base_corpus_emb, data, dims), args)
        report["meta"].update(baseline=args.baseline, resamples=args.resamples, seed=args.seed)
    if args.precision != ["float32"] or args.rescore:
        from frontier import frontier_report  # frontier.py builds on this module

        comparison = report.get("comparison")  # --baseline's, of the float32 search
        report = frontier_report(query_emb, corpus_emb, data, dims, args, report["meta"])
        if comparison is not None:
            report["comparison"] = comparison
    elif args.run_out:
        write_runs(results, data, args.run_out)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
