"""Exact top-k search by inner product (FAISS `IndexFlatIP`, on the GPU when faiss has GPU
support and CUDA is present), with one tie rule everywhere: score descending, then corpus order."""

from __future__ import annotations

import faiss
import numpy as np
import torch

GPU_MAX_K = 2048  # faiss-gpu's largest k


def truncate_normalize(embeddings: np.ndarray, dim: int) -> np.ndarray:
    """(N, D) -> (N, dim) float32 rows of unit length (all-zero rows stay zero)."""
    head = np.ascontiguousarray(embeddings[:, :dim], dtype=np.float32)
    norms = np.linalg.norm(head, axis=1, keepdims=True)
    return head / np.maximum(norms, 1e-12)


def flat_ip_index(docs: np.ndarray) -> tuple[faiss.Index, int]:
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
    return ranked_search(*flat_ip_index(docs), queries, k)


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
