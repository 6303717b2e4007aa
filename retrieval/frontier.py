"""The storage/quality frontier: retrieval at every (Matryoshka dim, precision), with the bytes
each vector costs and the search time per query. `python evaluate.py --precision
float32,int8,binary [--rescore N]` prints it; train.py's report draws it."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from data import IRDataset
from retrieval.evaluation import write_runs
from retrieval.metrics import METRICS, TOP_K, DimResult, score_ranking
from retrieval.quantize import (
    HammingIndex,
    bytes_per_vector,
    dequantize_int8,
    int8_ranges,
    pack_signs,
    quantize_int8,
    rescore,
    unpack_signs,
)
from retrieval.search import flat_ip_index, ranked_search, truncate_normalize


@dataclass
class FrontierPoint:
    """One (dim, precision) setting: what it keeps and what it costs."""

    dim: int
    label: str  # float32 | int8 | binary | binary+rescoreN
    bytes_per_vector: int
    ms_per_query: float  # the search alone (the corpus quantized and indexed beforehand), on this machine
    result: DimResult


def quantized_searcher(docs: np.ndarray, precision: str, rescore_n: int = 0):
    """Quantize and index `docs` (N, dim) once; return search(queries, k) -> (scores, ids)."""
    if precision == "float32":
        index, max_k = flat_ip_index(docs)
        return lambda queries, k: ranked_search(index, max_k, queries, k)
    if precision == "int8":
        ranges = int8_ranges(docs)
        index, max_k = flat_ip_index(dequantize_int8(quantize_int8(docs, ranges), ranges))
        return lambda queries, k: ranked_search(index, max_k, queries, k)
    bits = pack_signs(docs)
    hamming, signs = HammingIndex(bits), unpack_signs(bits, docs.shape[1])

    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = ranked_search(hamming, docs.shape[0], pack_signs(queries), max(k, rescore_n))
        if rescore_n:  # the top N by Hamming distance, re-ranked by the float32 query against their ±1 bits
            return rescore(queries, ids[:, :rescore_n], signs, k)
        return scores[:, :k], ids[:, :k]

    return search


def evaluate_frontier(
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    data: IRDataset,
    dims: list[int],
    precisions: list[str],
    rescore_n: int = 0,
) -> list[FrontierPoint]:
    """Every dim at every precision (and binary rescored, when rescore_n): metrics, bytes, ms/query."""
    qrels = [data.qrels.get(qid, {}) for qid in data.query_ids]
    points = []
    for dim in dims:
        queries, docs = truncate_normalize(query_emb, dim), truncate_normalize(corpus_emb, dim)
        settings = [(p, 0) for p in precisions] + (
            [("binary", rescore_n)] if rescore_n and "binary" in precisions else []
        )
        for precision, depth in settings:
            search = quantized_searcher(docs, precision, depth)
            start = time.perf_counter()
            scores, rows = search(queries, TOP_K)
            ms = 1000 * (time.perf_counter() - start) / len(queries)
            label = f"{precision}+rescore{depth}" if depth else precision
            points.append(
                FrontierPoint(
                    dim, label, bytes_per_vector(dim, precision), ms, score_ranking(scores, rows, data, qrels)
                )
            )
    return points


def format_frontier(points: list[FrontierPoint]) -> str:
    """A Markdown table, one row per (dim, precision)."""
    lines = [
        "| dim | precision | bytes/vector | index per 1M vectors | ms/query | " + " | ".join(METRICS) + " |",
        "|---:|---|---:|---:|---:|" + "---:|" * len(METRICS),
    ]
    for p in points:
        size = p.bytes_per_vector * 1e6
        size_text = f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"
        lines.append(
            f"| {p.dim} | {p.label} | {p.bytes_per_vector} | {size_text} | {p.ms_per_query:.3f} | "
            + " | ".join(f"{p.result.metrics[m]:.4f}" for m in METRICS)
            + " |"
        )
    return "\n".join(lines)


def frontier_report(points: list[FrontierPoint], corpus_emb: np.ndarray, data: IRDataset, meta: dict) -> dict:
    """Print the storage/quality table of `points`; the report keyed dim -> precision -> metrics and
    costs, with each dim's int8 calibration ranges added to `meta` when int8 was searched."""
    print(
        f"\nstorage/quality frontier (search time on this machine, {len(data.query_ids)} queries, "
        f"{len(data.corpus_ids)} passages):"
    )
    print(format_frontier(points))
    report: dict = {}
    for p in points:
        report.setdefault(str(p.dim), {})[p.label] = {
            **p.result.metrics,
            "bytes_per_vector": p.bytes_per_vector,
            "index_bytes_per_million": p.bytes_per_vector * 1_000_000,
            "ms_per_query": p.ms_per_query,
        }
    if any(p.label == "int8" for p in points):
        ranges = {str(d): int8_ranges(truncate_normalize(corpus_emb, d)) for d in dict.fromkeys(p.dim for p in points)}
        meta = {**meta, "int8_ranges": {d: {"lo": r.lo.tolist(), "hi": r.hi.tolist()} for d, r in ranges.items()}}
    report["meta"] = meta
    return report


def write_frontier_runs(points: list[FrontierPoint], data: IRDataset, out_dir) -> None:
    """TREC runs and per-query metrics of every (dim, precision), the precision in each file name."""
    for label in dict.fromkeys(p.label for p in points):
        write_runs({p.dim: p.result for p in points if p.label == label}, data, out_dir, suffix=f".{label}")


def attach_frontier(
    results: dict[int, DimResult],
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    data: IRDataset,
    precisions: list[str],
    rescore_n: int = 0,
) -> None:
    """Fill each dim's `quantized` with every precision's metrics and costs (float32 included)."""
    for p in evaluate_frontier(query_emb, corpus_emb, data, list(results), precisions, rescore_n):
        results[p.dim].quantized[p.label] = {
            **p.result.metrics,
            "bytes_per_vector": p.bytes_per_vector,
            "ms_per_query": p.ms_per_query,
        }


def frontier_of(results: dict[int, DimResult] | None) -> dict[str, dict[str, dict[str, float]]] | None:
    """{dim: {precision: {metric: value, bytes_per_vector, ms_per_query}}} for JSON; None without any."""
    if not results or not any(r.quantized for r in results.values()):
        return None
    return {str(dim): r.quantized for dim, r in results.items()}


def cheapest_within(
    frontier: dict[str, dict[str, dict[str, float]]],
    reference: float,
    tolerance: float = 0.01,
    metric: str = "ndcg@10",
    fused: bool = False,
) -> tuple[str, str, dict] | None:
    """The setting with the fewest bytes per vector whose metric is within `tolerance` of `reference`
    (ties: the higher metric), among the dense settings, or with `fused` among those fused with
    BM25 (labels ending "+bm25"); None when none is."""
    found = [
        (point["bytes_per_vector"], -point[metric], dim, label, point)
        for dim, by_label in frontier.items()
        for label, point in by_label.items()
        if point[metric] >= reference - tolerance and label.endswith("+bm25") == fused
    ]
    if not found:
        return None
    _, _, dim, label, point = min(found, key=lambda item: item[:2])
    return dim, label, point
