"""The second storage knob beside Matryoshka truncation: int8 and binary embeddings, and exact
search over them.

- float32: 4 bytes a dim. Exact inner product (retrieval.search.exact_search).
- int8: 1 byte a dim. Per-dimension scalar quantization calibrated on the corpus itself: dim j
  maps [lo_j, hi_j] (the corpus's min and max) onto 256 levels, code = round((x - lo) / step) - 128
  with step = (hi - lo) / 255, clipped to [-128, 127]; decoded as lo + (code + 128) * step. The
  query stays float32 and is scored against the decoded corpus (asymmetric search, as FAISS's
  scalar quantizer does), so a rescoring pass would compute the same scores: int8 needs none.
- binary: 1 bit a dim. The sign bit of each dim (x > 0), packed 8 to a byte; queries are
  binarized the same way and documents ranked by Hamming distance (FAISS IndexBinaryFlat), score
  = -distance. Optionally the top N are rescored with the float32 query against the ±1 vector of
  each document's bits (`rescore`), the usual practice for binary indexes.
Ties keep the project's rule everywhere: score descending, then corpus order.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np


def bytes_per_vector(dim: int, precision: str) -> int:
    return {"float32": 4 * dim, "int8": dim, "binary": -(-dim // 8)}[precision]


# ---------------------------------------------------------------- int8


@dataclass
class Int8Ranges:
    """Per-dimension calibration: the corpus's min and max of each dim; stored with the index."""

    lo: np.ndarray  # (D,) float32
    hi: np.ndarray  # (D,) float32

    @property
    def step(self) -> np.ndarray:
        return np.maximum((self.hi - self.lo) / 255.0, np.float32(1e-12)).astype(np.float32)  # a constant dim: any step


def int8_ranges(corpus: np.ndarray) -> Int8Ranges:
    return Int8Ranges(corpus.min(axis=0).astype(np.float32), corpus.max(axis=0).astype(np.float32))


def quantize_int8(x: np.ndarray, ranges: Int8Ranges) -> np.ndarray:
    """(N, D) float -> (N, D) int8 codes; values outside the calibrated range are clipped."""
    levels = np.rint((x.astype(np.float32) - ranges.lo) / ranges.step)
    return (np.clip(levels, 0, 255) - 128).astype(np.int8)


def dequantize_int8(codes: np.ndarray, ranges: Int8Ranges) -> np.ndarray:
    """(N, D) int8 codes -> (N, D) float32: each code's level, lo + (code + 128) * step."""
    return (ranges.lo + (codes.astype(np.float32) + 128.0) * ranges.step).astype(np.float32)


# ---------------------------------------------------------------- binary


def pack_signs(x: np.ndarray) -> np.ndarray:
    """(N, D) float -> (N, ceil(D/8)) uint8: bit j is x_j > 0 (padding bits are 0 on every vector,
    so they never change a Hamming distance)."""
    return np.packbits(x > 0, axis=1)


def unpack_signs(bits: np.ndarray, dim: int) -> np.ndarray:
    """(N, ceil(D/8)) uint8 -> (N, D) float32 of ±1: what a rescore multiplies the float query with."""
    return np.unpackbits(bits, axis=1, count=dim).astype(np.float32) * 2.0 - 1.0


class HammingIndex:
    """FAISS IndexBinaryFlat with the search interface retrieval.search.ranked_search expects: scores
    higher-is-better (minus the Hamming distance) and -1 ids beyond the corpus."""

    def __init__(self, bits: np.ndarray):
        self.index = faiss.IndexBinaryFlat(bits.shape[1] * 8)
        self.index.add(np.ascontiguousarray(bits))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        distances, ids = self.index.search(np.ascontiguousarray(queries), k)
        return -distances.astype(np.float32), ids


# ---------------------------------------------------------------- rescoring


def rescore(queries: np.ndarray, candidates: np.ndarray, decoded: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank each query's candidate rows (Q, N; -1 for none) by the float32 query against the
    decoded corpus vectors `decoded` (rows, D); the top k as (Q, k) scores and ids (-1 padded)."""
    n_queries = queries.shape[0]
    scores_out = np.full((n_queries, k), -np.inf, dtype=np.float32)
    ids_out = np.full((n_queries, k), -1, dtype=np.int64)
    for row in range(n_queries):
        ids = candidates[row][candidates[row] >= 0]
        scores = decoded[ids] @ queries[row]  # (n,)
        order = np.lexsort((ids, -scores))[:k]  # score descending, then corpus order
        scores_out[row, : len(order)], ids_out[row, : len(order)] = scores[order], ids[order]
    return scores_out, ids_out
