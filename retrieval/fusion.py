"""Hybrid retrieval: a dense ranking and a lexical one fused into one, per query.

Both retrievers' top k (k = 100) are pooled into each query's candidates C (at most 2k passages).
Every candidate has an exact score under both retrievers (the dense cosine and BM25 are computed
for any passage, not only those a retriever returned), so:

- convex: w * norm(dense) + (1 - w) * norm(bm25), each normalised over C per query: minmax
  (s - min) / (max - min), or zscore (s - mean) / std; a constant score normalises to 0. Or max:
  the dense cosine as it is and BM25 over its per-query best (s / max, in [0, 1]), the sum a model
  trained with loss.lexical_scale was trained under (cos / temperature + beta x BM25 / best is this
  fusion at w = 1 / (1 + temperature x beta)); a query's dense confidence is kept, not stretched.
  w is the dense weight: 1 is dense alone, 0 BM25 alone (over C).
- rrf (reciprocal rank fusion, Cormack et al. 2009): sum over the two top-k lists of
  1 / (rrf_k + rank), ranks 1-based; a list that does not hold a candidate adds nothing.

The fused ranking is C ordered by fused score descending, then corpus order (the project's tie rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WEIGHT_GRID = tuple(round(0.05 * i, 2) for i in range(21))  # 0, 0.05, ..., 1


def best_weight(curve: dict[float, np.ndarray]) -> float:
    """The weight whose per-question values (Q,) have the best mean (ties: the lower)."""
    top = max(float(v.mean()) for v in curve.values())
    return min(w for w, v in curve.items() if float(v.mean()) >= top - 1e-12)


@dataclass
class Candidates:
    """Each query's pooled candidates, padded with row -1 (which never ranks)."""

    rows: np.ndarray  # (Q, C) corpus rows, ascending within a query, -1 padding last
    dense: np.ndarray  # (Q, C) dense scores (0 at padding)
    lexical: np.ndarray  # (Q, C) lexical scores (0 at padding)
    dense_rank: np.ndarray  # (Q, C) 1-based rank in the dense top k, 0 when absent
    lexical_rank: np.ndarray  # (Q, C) 1-based rank in the lexical top k, 0 when absent

    @property
    def valid(self) -> np.ndarray:
        return self.rows >= 0

    def take(self, questions: np.ndarray) -> Candidates:
        """The candidates of the questions at `questions` (rows of Q), in that order."""
        return Candidates(
            *(getattr(self, f)[questions] for f in ("rows", "dense", "lexical", "dense_rank", "lexical_rank"))
        )


def pool(dense_rows: np.ndarray, lexical_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Q, C) pooled rows (ascending, -1 padded) and each one's 1-based rank in either list (0: absent)."""
    n_queries = dense_rows.shape[0]
    width = dense_rows.shape[1] + lexical_rows.shape[1]
    rows = np.full((n_queries, width), -1, dtype=np.int64)
    ranks = (np.zeros((n_queries, width), dtype=np.int64), np.zeros((n_queries, width), dtype=np.int64))
    for q in range(n_queries):
        union = np.union1d(dense_rows[q][dense_rows[q] >= 0], lexical_rows[q][lexical_rows[q] >= 0])
        rows[q, : union.size] = union
        for listed, rank_out in zip((dense_rows[q], lexical_rows[q]), ranks):
            position = {row: rank for rank, row in enumerate(listed.tolist(), start=1) if row >= 0}
            rank_out[q, : union.size] = [position.get(row, 0) for row in union.tolist()]
    return rows, ranks[0], ranks[1]


def normalized(scores: np.ndarray, valid: np.ndarray, norm: str) -> np.ndarray:
    """(Q, C) scores normalised per query over its valid candidates; 0 at padding and for a constant row."""
    masked = np.where(valid, scores, np.nan).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if norm == "minmax":
            low, high = np.nanmin(masked, axis=1, keepdims=True), np.nanmax(masked, axis=1, keepdims=True)
            out = (masked - low) / (high - low)
        elif norm == "zscore":
            out = (masked - np.nanmean(masked, axis=1, keepdims=True)) / np.nanstd(masked, axis=1, keepdims=True)
        elif norm == "max":  # a best score <= 0 (no match: BM25 is 0 everywhere) scales to 0
            high = np.nanmax(masked, axis=1, keepdims=True)
            out = np.where(high > 0, masked / high, 0.0)
        else:
            raise ValueError(f"fusion norm {norm!r}: choose minmax, zscore or max")
    return np.where(valid & np.isfinite(out), out, 0.0)


def convex(c: Candidates, weight: float, norm: str = "minmax") -> np.ndarray:
    """(Q, C) fused scores w * norm(dense) + (1 - w) * norm(lexical) (under max, the dense cosine as it
    is); -inf at padding."""
    fused = weight * _dense(c.dense, c.valid, norm) + (1.0 - weight) * normalized(c.lexical, c.valid, norm)
    return np.where(c.valid, fused, -np.inf)


def convex_scores(dense: np.ndarray, lexical: np.ndarray, weight: float, norm: str = "minmax") -> np.ndarray:
    """(C,) fused scores of one query's candidates (every one valid)."""
    valid = np.ones((1, dense.size), dtype=bool)
    return weight * _dense(dense[None], valid, norm)[0] + (1.0 - weight) * normalized(lexical[None], valid, norm)[0]


def _dense(scores: np.ndarray, valid: np.ndarray, norm: str) -> np.ndarray:
    """The dense side of the fusion: normalised as `norm` says, except under max, where the cosine
    stays as it is (0 at padding)."""
    return np.where(valid, scores, 0.0) if norm == "max" else normalized(scores, valid, norm)


def reciprocal_rank(c: Candidates, k: int = 60) -> np.ndarray:
    """(Q, C) reciprocal rank fusion scores; -inf at padding."""
    fused = sum(np.where(rank > 0, 1.0 / (k + rank), 0.0) for rank in (c.dense_rank, c.lexical_rank))
    return np.where(c.valid, fused, -np.inf)


def ranked(c: Candidates, fused: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top k of the fused scores: (Q, k) scores and corpus rows, score descending then corpus
    order, -1 (score -inf) where a query has fewer than k candidates."""
    order = np.lexsort((np.where(c.valid, c.rows, np.iinfo(np.int64).max), -fused), axis=1)[:, :k]
    scores, rows = np.take_along_axis(fused, order, 1), np.take_along_axis(c.rows, order, 1)
    if scores.shape[1] < k:  # fewer candidates than k in every query
        pad = k - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
    return scores.astype(np.float32), np.where(np.isfinite(scores), rows, -1)
