"""Exact top-k search by inner product (FAISS `IndexFlatIP`, on the GPU when faiss has GPU
support and CUDA is present, on the CPU for what the GPU cannot do), with one tie rule
everywhere: score descending, then corpus order."""

from __future__ import annotations

import logging

import faiss
import numpy as np
import torch

logger = logging.getLogger(__name__)

GPU_MAX_K = 2048  # faiss-gpu's largest k: deeper searches run on the CPU


def truncate_normalize(embeddings: np.ndarray, dim: int) -> np.ndarray:
    """(N, D) -> (N, dim) float32 rows of unit length (all-zero rows stay zero)."""
    head = np.ascontiguousarray(embeddings[:, :dim], dtype=np.float32)
    norms = np.linalg.norm(head, axis=1, keepdims=True)
    return head / np.maximum(norms, 1e-12)


_GPU_RESOURCES: dict[int, object] = {}  # device -> faiss StandardGpuResources, made once per process


def _gpu_device() -> int | None:
    """This process's CUDA device when faiss has GPU support, else None."""
    if hasattr(faiss, "StandardGpuResources") and torch.cuda.is_available() and faiss.get_num_gpus() > 0:
        return torch.cuda.current_device()  # the run's own device (set per rank), not GPU 0
    return None


class ExactIndex:
    """Exact inner-product search over `docs` (N, D): `IndexFlatIP` on this process's GPU when
    faiss and CUDA allow (one StandardGpuResources per device, reused), else on the CPU. What the
    GPU cannot do goes to a CPU index over the same vectors, built when first needed: a k past
    faiss-gpu's 2,048 (so ties past it resolve as on the CPU), and an out-of-memory failure."""

    def __init__(self, docs: np.ndarray):
        self.docs, self.ntotal = docs, docs.shape[0]
        self._cpu: faiss.Index | None = None
        self._gpu: faiss.Index | None = None
        device = _gpu_device()
        if device is not None:
            try:
                if device not in _GPU_RESOURCES:
                    _GPU_RESOURCES[device] = faiss.StandardGpuResources()
                gpu = faiss.index_cpu_to_gpu(_GPU_RESOURCES[device], device, faiss.IndexFlatIP(docs.shape[1]))
                gpu.add(docs)
                self._gpu = gpu
            except (RuntimeError, MemoryError) as err:  # faiss reports a failed allocation as RuntimeError
                logger.warning("faiss-gpu could not hold %d vectors (%s); searching on the CPU", self.ntotal, err)

    @property
    def on_gpu(self) -> bool:
        return self._gpu is not None

    def cpu(self) -> faiss.Index:
        if self._cpu is None:
            self._cpu = faiss.IndexFlatIP(self.docs.shape[1])
            self._cpu.add(self.docs)
        return self._cpu

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._gpu is not None and k <= GPU_MAX_K:
            try:
                return self._gpu.search(queries, k)
            except (RuntimeError, MemoryError) as err:
                logger.warning("faiss-gpu search failed (%s); searching on the CPU from now on", err)
                self._gpu = None
        return self.cpu().search(queries, k)


def flat_ip_index(docs: np.ndarray) -> tuple[ExactIndex, int]:
    """An exact inner-product index over `docs` (N, D) and the largest k it serves (all N)."""
    index = ExactIndex(docs)
    return index, index.ntotal


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
