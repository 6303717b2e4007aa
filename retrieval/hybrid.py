"""BM25 alone and fused with the dense model at every Matryoshka dim, on the same questions.

What a careful user deploys on regulatory text is not the dense model alone but the dense model
fused with BM25; this scores both, so a run says whether fine-tuning beat what they already had.
The dense weight of the convex fusion is `lexical.fusion_weight` when given, else chosen per dim
on the evaluated split itself (the best NDCG@10 over 0, 0.05, ..., 1; ties: the lower weight):
optimistic, as any setting chosen on the split it is scored on. `evaluate.py --fusion-weight-from
SPLIT` chooses it on another split instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from data import IRDataset
from retrieval.fusion import WEIGHT_GRID, Candidates, best_weight, convex, pool, ranked, reciprocal_rank
from retrieval.lexical import LexicalIndex, build_index, matched_top_k
from retrieval.memory import EncodedMemory
from retrieval.metrics import METRICS, TOP_K, DimResult, score_ranking
from retrieval.quantize import bytes_per_vector, dequantize_int8, int8_ranges, quantize_int8
from retrieval.search import exact_search, truncate_normalize
from retrieval.settings import LexicalConfig
from retrieval.stats import compare_per_query

CONVEX, RRF = "convex", "rrf"


@dataclass
class HybridResults:
    """BM25 alone (the same at every dim) and, per dim, each fusion's result and the convex weight."""

    bm25: DimResult
    fused: dict[int, dict[str, DimResult]] = field(default_factory=dict)  # dim -> convex | rrf -> result
    weights: dict[int, float] = field(default_factory=dict)  # dim -> dense weight of the convex fusion
    weights_from: str = ""  # where the weights came from: given | the split they were chosen on
    candidates: dict[int, Candidates] = field(default_factory=dict, repr=False)  # dim -> pooled (a re-ranker's input)


def lexical_index(data: IRDataset, config: LexicalConfig) -> LexicalIndex:
    return build_index(data.corpus_texts, config)


def candidates_by_dim(
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    data: IRDataset,
    dims: list[int],
    index: LexicalIndex,
    docs_by_dim: dict[int, np.ndarray] | None = None,
    memory: EncodedMemory | None = None,
    leave_own_out: bool = True,
) -> tuple[dict[int, Candidates], tuple[np.ndarray, np.ndarray]]:
    """Every dim's pooled candidates with both exact scores, and BM25's own top k (scores, rows).
    BM25 scores every passage once per query block, shared by all dims. `docs_by_dim`: the stored
    passage vectors the dense side searches and scores with at a dim (say, int8 dequantized),
    instead of the corpus embeddings truncated and normalised. `memory`: the dense side's score is
    the remembered one (retrieval/memory.py: the best of the passage's cosine and its training
    questions' cosines), searched and scored exactly; a scored question that is a training question
    is left out of its own memory unless `leave_own_out` is false (a deployed retriever asked a
    question it has answered before)."""
    k = min(TOP_K, len(data.corpus_ids))
    dense_rows, normalized, remembered = {}, {}, {}
    self_keys = None
    if memory is not None:  # (Q,) each question's own training question, -1: none (or none left out)
        own = memory.memory.self_keys(data.query_texts)
        self_keys = own if leave_own_out else np.full_like(own, -1)
    for dim in dims:
        docs = docs_by_dim[dim] if docs_by_dim else truncate_normalize(corpus_emb, dim)
        normalized[dim] = (truncate_normalize(query_emb, dim), docs)
        if memory is not None:
            remembered[dim] = memory.at(dim)
            dense_rows[dim] = remembered[dim].search(*normalized[dim], k, self_keys)[1]
        else:
            dense_rows[dim] = exact_search(*normalized[dim], k)[1]  # (Q, k)
    parts: dict[int, list] = {dim: [] for dim in dims}
    lexical_parts = []
    for block, scores, matched in index.scores(data.query_texts):  # scores, matched: (B, N)
        lexical_scores, lexical_rows = matched_top_k(scores, matched, k)
        lexical_parts.append((lexical_scores, lexical_rows))
        for dim in dims:
            rows, dense_rank, lexical_rank = pool(dense_rows[dim][block], lexical_rows)  # (B, C) each
            safe = np.maximum(rows, 0)
            queries, docs = normalized[dim]
            if memory is not None:
                dense = remembered[dim].scores_at(queries[block], docs, rows, self_keys[block])
            else:
                dense = np.einsum("bcd,bd->bc", docs[safe], queries[block])  # (B, C) cosine
            lexical = np.take_along_axis(scores, safe, 1)
            parts[dim].append(
                (rows, np.where(rows >= 0, dense, 0.0), np.where(rows >= 0, lexical, 0.0), dense_rank, lexical_rank)
            )
    found = {}
    for dim in dims:
        rows, dense, lexical, dense_rank, lexical_rank = (np.concatenate(arrays) for arrays in zip(*parts[dim]))
        found[dim] = Candidates(rows, dense, lexical, dense_rank, lexical_rank)
    bm25 = tuple(np.concatenate(arrays) for arrays in zip(*lexical_parts))
    return found, bm25


def choose_weight(c: Candidates, data: IRDataset, norm: str) -> float:
    """The dense weight of WEIGHT_GRID with the best mean NDCG@10 on `data` (ties: the lower)."""
    qrels = [data.qrels.get(qid, {}) for qid in data.query_ids]
    return best_weight(
        {w: score_ranking(*ranked(c, convex(c, w, norm), TOP_K), data, qrels).per_query["ndcg@10"] for w in WEIGHT_GRID}
    )


def evaluate_hybrid(
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    data: IRDataset,
    dims: list[int],
    index: LexicalIndex,
    weights: dict[int, float] | None = None,
    weights_from: str = "",
    memory: EncodedMemory | None = None,
) -> HybridResults:
    """BM25 alone, and the dense model (full-size embeddings, truncated per dim) fused with it by the
    convex combination and by RRF at each dim. `weights`: the dense weight per dim, else
    index.config.fusion_weight, else chosen on `data` itself. `memory`: the dense side remembers
    the training questions (retrieval/memory.py)."""
    config = index.config
    qrels = [data.qrels.get(qid, {}) for qid in data.query_ids]
    candidates, (bm25_scores, bm25_rows) = candidates_by_dim(query_emb, corpus_emb, data, dims, index, memory=memory)
    results = HybridResults(score_ranking(bm25_scores, bm25_rows, data, qrels), candidates=candidates)
    for dim, c in candidates.items():
        if weights is not None:
            weight, results.weights_from = weights[dim], weights_from
        elif config.fusion_weight is not None:
            weight, results.weights_from = config.fusion_weight, "given"
        else:
            weight, results.weights_from = choose_weight(c, data, config.fusion_norm), data.name
        results.weights[dim] = weight
        results.fused[dim] = {
            CONVEX: score_ranking(*ranked(c, convex(c, weight, config.fusion_norm), TOP_K), data, qrels),
            RRF: score_ranking(*ranked(c, reciprocal_rank(c, config.rrf_k), TOP_K), data, qrels),
        }
    return results


def chosen_weights(
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    data: IRDataset,
    dims: list[int],
    index: LexicalIndex,
    memory: EncodedMemory | None = None,
) -> dict[int, float]:
    """The dense weight per dim chosen on `data` (another split than the one reported); with
    `memory`, for the fusion that remembers."""
    candidates, _ = candidates_by_dim(query_emb, corpus_emb, data, dims, index, memory=memory)
    return {dim: choose_weight(c, data, index.config.fusion_norm) for dim, c in candidates.items()}


def attach_hybrid(
    results: dict[int, DimResult], query_emb: np.ndarray, corpus_emb: np.ndarray, data: IRDataset, index: LexicalIndex
) -> HybridResults:
    """Fill each dim's `fused` (bm25, convex, rrf) and `fusion_weight`; the weight as index.config says
    (given, or chosen on `data`)."""
    hybrid = evaluate_hybrid(query_emb, corpus_emb, data, list(results), index)
    attach_fused(results, hybrid)
    return hybrid


def attach_remembered(
    results: dict[int, DimResult],
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    data: IRDataset,
    index: LexicalIndex,
    memory: EncodedMemory,
) -> HybridResults:
    """Each dim's `fused["remembered"]` and `memory_weight`: the convex fusion whose dense side
    remembers the training questions (retrieval/memory.py), its weight as index.config says (given,
    or chosen on `data`)."""
    hybrid = evaluate_hybrid(query_emb, corpus_emb, data, list(results), index, memory=memory)
    for dim, result in results.items():
        result.fused["remembered"] = hybrid.fused[dim][CONVEX]
        result.memory_weight = hybrid.weights[dim]
    return hybrid


def attach_fused(results: dict[int, DimResult], hybrid: HybridResults) -> None:
    """Each dim's `fused` (bm25, convex, rrf) and `fusion_weight` from an evaluate_hybrid of the same questions."""
    for dim, result in results.items():
        result.fused = {"bm25": hybrid.bm25, **hybrid.fused[dim]}
        result.fusion_weight = hybrid.weights[dim]


FUSED_PRECISIONS = ("float32", "int8")  # what the fused frontier stores the dense side as
FUSED_SUFFIX = "+bm25"  # its labels in DimResult.quantized: float32+bm25, int8+bm25


def attach_fused_frontier(
    results: dict[int, DimResult],
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    data: IRDataset,
    index: LexicalIndex,
    precisions: list[str],
) -> None:
    """The fused retriever at every dim and storage precision (float32, int8 of `precisions`):
    each dim's `quantized[f"{precision}+bm25"]` gets the convex fusion's metrics at the dim's
    fusion weight (attach_hybrid's), the dense side searched and scored with the stored vectors,
    with its bytes per vector (BM25's index is not counted) and ms per query."""
    dims = [dim for dim, result in results.items() if result.fusion_weight is not None]
    qrels = [data.qrels.get(qid, {}) for qid in data.query_ids]
    for precision in [p for p in precisions if p in FUSED_PRECISIONS]:
        stored = {}
        for dim in dims:
            docs = truncate_normalize(corpus_emb, dim)
            if precision == "int8":
                ranges = int8_ranges(docs)
                docs = dequantize_int8(quantize_int8(docs, ranges), ranges)
            stored[dim] = docs
        start = time.perf_counter()
        candidates, _ = candidates_by_dim(query_emb, corpus_emb, data, dims, index, stored)
        for dim, c in candidates.items():
            fused = convex(c, results[dim].fusion_weight, index.config.fusion_norm)
            ranking = score_ranking(*ranked(c, fused, TOP_K), data, qrels)
            results[dim].quantized[precision + FUSED_SUFFIX] = {
                **ranking.metrics,
                "bytes_per_vector": bytes_per_vector(dim, precision),
                "ms_per_query": 1000 * (time.perf_counter() - start) / max(1, len(data.query_ids) * len(dims)),
            }


def format_hybrid(h: HybridResults, dense: dict[int, DimResult]) -> str:
    """Markdown: BM25, then per dim the dense model and both fusions, every metric."""
    lines = ["| dim | retriever | " + " | ".join(METRICS) + " |", "|---:|---|" + "---:|" * len(METRICS)]

    def row(dim: str, name: str, metrics: dict[str, float]) -> str:
        return f"| {dim} | {name} | " + " | ".join(f"{metrics[m]:.4f}" for m in METRICS) + " |"

    lines.append(row("", "bm25", h.bm25.metrics))
    for dim, by_kind in h.fused.items():
        lines.append(row(str(dim), "dense", dense[dim].metrics))
        lines.append(row(str(dim), f"dense+bm25 convex (w {h.weights[dim]:.2f})", by_kind[CONVEX].metrics))
        lines.append(row(str(dim), "dense+bm25 rrf", by_kind[RRF].metrics))
    return "\n".join(lines)


def versus_bm25(
    h: HybridResults, dense: dict[int, DimResult], resamples: int = 10000, seed: int = 0
) -> dict[str, dict[int, dict[str, dict[str, float]]]]:
    """Each retriever against BM25 on the same questions: {dense | convex | rrf: {dim: {metric:
    {base, new, diff, lo, hi, p}}}} (paired bootstrap interval and randomization p, retrieval/stats.py)."""
    base = {dim: h.bm25.per_query for dim in h.fused}
    retrievers = {"dense": {dim: dense[dim].per_query for dim in h.fused}}
    for kind in (CONVEX, RRF):
        retrievers[kind] = {dim: by_kind[kind].per_query for dim, by_kind in h.fused.items()}
    return {name: compare_per_query(base, new, METRICS, resamples, seed) for name, new in retrievers.items()}


def hybrid_json(h: HybridResults) -> dict:
    """BM25's metrics and each dim's fused metrics with the convex weight, keyed by str(dim) for JSON."""
    fused = {
        str(dim): {CONVEX: {**by_kind[CONVEX].metrics, "weight": h.weights[dim]}, RRF: by_kind[RRF].metrics}
        for dim, by_kind in h.fused.items()
    }
    return {"bm25": h.bm25.metrics, "fused": fused, "weights_from": h.weights_from}
