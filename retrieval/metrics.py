"""Retrieval metrics as trec_eval computes them, per query and on average: NDCG@10 with the judged
relevance as gain, MRR@10, Recall@10, Recall@100, and MAP@10 and MAP@100 (average precision over the
top 10 or 100, divided by all relevant documents: trec_eval's map_cut). Imports no FAISS: the config
reads METRICS from here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from data import IRDataset

METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100", "map@10", "map@100")
TOP_K = 100  # the deepest cut-off any metric needs


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
        "map@10": precision_at_hits[:, :10].sum(1) / n_relevant,
        "map@100": precision_at_hits.sum(1) / n_relevant,
    }


@dataclass
class DimResult:
    metrics: dict[str, float]  # mean over queries
    per_query: dict[str, np.ndarray]  # metric -> (Q,)
    ranked_ids: list[list[str]]  # top-100 corpus ids per query, best first
    ranked_scores: np.ndarray  # (Q, 100)
    # other precisions of the same dim (retrieval.frontier.attach_frontier):
    # label -> metrics, bytes_per_vector, ms_per_query
    quantized: dict[str, dict[str, float]] = field(default_factory=dict)
    # the same questions under BM25 and fused with it (retrieval.hybrid.attach_hybrid): bm25 | convex | rrf -> result,
    # and the convex fusion's top k re-ranked by a cross-encoder (retrieval.rerank.attach_reranked): reranked -> result,
    # and the convex fusion whose dense side remembers the training questions (attach_remembered): remembered -> result
    fused: dict[str, DimResult] = field(default_factory=dict)
    fusion_weight: float | None = None  # the dense weight of the convex fusion
    rerank_weight: float | None = None  # the cross-encoder's weight against the fused score
    memory_weight: float | None = None  # the dense weight of the fusion that remembers (fused["remembered"])
    # the embedding space at this dim (retrieval.diagnostics): alignment, uniformity, anisotropy, effective_rank
    space: dict[str, float] = field(default_factory=dict)
    # (S, D) full-size float32 embeddings of retrieval.diagnostics.corpus_sample, kept for the map (largest dim only)
    space_sample: np.ndarray | None = None


def score_ranking(scores: np.ndarray, rows: np.ndarray, data: IRDataset, qrels: list[dict[str, int]]) -> DimResult:
    ranked_ids = [[data.corpus_ids[r] for r in row if r >= 0] for row in rows]
    per_query = per_query_metrics(gains_at_ranks(ranked_ids, qrels), qrels)
    return DimResult({name: float(values.mean()) for name, values in per_query.items()}, per_query, ranked_ids, scores)


def format_table(metrics_by_dim: dict[int, dict[str, float]]) -> str:
    """A Markdown table, one row per dimension."""
    lines = ["| dim | " + " | ".join(METRICS) + " |", "|---:|" + "---:|" * len(METRICS)]
    for dim, metrics in metrics_by_dim.items():
        lines.append(f"| {dim} | " + " | ".join(f"{metrics[m]:.4f}" for m in METRICS) + " |")
    return "\n".join(lines)
