"""Exact FAISS search against numpy, the tie rule, short corpora, and batch-size invariance."""

from __future__ import annotations

import numpy as np
import pytest

from data import IRDataset
from helpers import random_texts
from model import Encoder, ModelConfig
from retrieval.evaluation import evaluate
from retrieval.search import exact_search, truncate_normalize


def numpy_top_k(queries, docs, k):
    """Score descending, then corpus order: a stable argsort of the negated scores."""
    scores = queries @ docs.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), order


@pytest.mark.parametrize("n_docs,k", [(500, 100), (50, 10), (7, 100)])
def test_faiss_top_k_matches_numpy(n_docs, k):
    rng = np.random.default_rng(n_docs)
    queries = truncate_normalize(rng.standard_normal((40, 24)), 24)
    docs = truncate_normalize(rng.standard_normal((n_docs, 24)), 24)
    scores, ids = exact_search(queries, docs, k)
    ref_scores, ref_ids = numpy_top_k(queries, docs, k)
    kept = min(k, n_docs)
    np.testing.assert_array_equal(ids[:, :kept], ref_ids)
    np.testing.assert_allclose(scores[:, :kept], ref_scores, rtol=0, atol=1e-5)
    assert (ids[:, kept:] == -1).all()  # a corpus smaller than k is padded with -1


def test_ties_broken_by_corpus_order_even_past_the_cut():
    """Small-integer vectors give exact float32 scores, so ties are real and many: more tied
    documents than FAISS is first asked for, straddling the cut-off."""
    rng = np.random.default_rng(0)
    docs = rng.integers(0, 3, size=(300, 4)).astype(np.float32)
    queries = rng.integers(0, 3, size=(30, 4)).astype(np.float32)
    scores, ids = exact_search(queries, docs, 25)
    ref_scores, ref_ids = numpy_top_k(queries, docs, 25)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores)
    assert (ref_scores[:, 24:25] == (queries @ docs.T)).sum(1).max() > 40  # the test really has deep ties


def tiny_ir(n_docs: int = 60, n_queries: int = 12) -> IRDataset:
    texts = random_texts(n_docs, seed=1)
    corpus_ids = [f"c{i}" for i in range(n_docs)]
    qrels = {f"q{q}": {corpus_ids[(q * 7) % n_docs]: 1, corpus_ids[(q * 11 + 3) % n_docs]: 2} for q in range(n_queries)}
    queries = [texts[(q * 7) % n_docs][:30] for q in range(n_queries)]  # a prefix of one relevant passage
    return IRDataset(corpus_ids, texts, list(qrels), queries, qrels, name="tiny")


def test_metrics_do_not_depend_on_encoding_batch_size(tiny_bert):
    encoder = Encoder.from_config(ModelConfig(tiny_bert))
    data = tiny_ir()
    results = [evaluate(encoder, data, dims=[32, 16, 8], batch_size=bs) for bs in (1, 5, 64)]
    for other in results[1:]:
        for dim in (32, 16, 8):
            for name, value in results[0][dim].metrics.items():
                assert other[dim].metrics[name] == pytest.approx(value, abs=1e-6), (dim, name)
    assert 0 < results[0][32].metrics["ndcg@10"] <= 1


def test_small_corpus_never_counts_missing_ids(tiny_bert):
    """A corpus of 3 passages: FAISS returns -1 for ranks 4..100; recall counts only real hits."""
    encoder = Encoder.from_config(ModelConfig(tiny_bert))
    data = IRDataset(["a", "b", "c"], random_texts(3, seed=5), ["q"], ["w1 w2"], {"q": {"c": 1, "zzz": 1}})
    result = evaluate(encoder, data, dims=[32])[32]
    ranked = result.ranked_ids[0]
    assert len(ranked) == 3 and set(ranked) == {"a", "b", "c"}  # no id for the -1 slots
    rank = ranked.index("c") + 1
    assert result.metrics["recall@100"] == pytest.approx(0.5)  # "zzz" is never found, "c" once
    assert result.metrics["mrr@10"] == pytest.approx(1 / rank)
    assert result.metrics["map@100"] == pytest.approx(1 / rank / 2)


class FakeGpuIndex:
    """Stands in for faiss-gpu on a CPU machine: refuses k past 2,048 as faiss-gpu does, breaks
    ties in the worst order for the tie rule (highest corpus row first), and can run out of memory."""

    def __init__(self, docs: np.ndarray, fail: bool = False):
        self.docs, self.fail, self.calls = docs, fail, []

    def search(self, queries: np.ndarray, k: int):
        from retrieval.search import GPU_MAX_K

        self.calls.append(k)
        assert k <= GPU_MAX_K, "faiss-gpu cannot search past k 2048"
        if self.fail:
            raise RuntimeError("Error in faiss::gpu::StandardGpuResourcesImpl::allocMemory: out of memory")
        scores = queries @ self.docs.T
        order = np.lexsort((-np.arange(self.docs.shape[0])[None].repeat(len(queries), 0), -scores), axis=1)[:, :k]
        return np.take_along_axis(scores, order, 1).astype(np.float32), order.astype(np.int64)


def gpu_backed(docs: np.ndarray, fail: bool = False):
    from retrieval.search import ExactIndex

    index = ExactIndex(docs)
    index._gpu = FakeGpuIndex(docs, fail)
    return index


def test_ties_past_the_gpu_limit_resolve_as_on_the_cpu():
    """3,000 equal passages: the GPU's 2,048 deepest holds none of the first ten by the tie rule;
    the rows left unresolved at the GPU's limit are searched on the CPU, giving rows 0-9."""
    from retrieval.search import ranked_search

    docs = np.ones((3000, 8), dtype=np.float32) / np.sqrt(8)
    queries = truncate_normalize(np.random.default_rng(0).standard_normal((3, 8)), 8)
    index = gpu_backed(docs)
    scores, ids = ranked_search(index, index.ntotal, queries, 10)
    np.testing.assert_array_equal(ids, np.tile(np.arange(10), (3, 1)))
    assert max(index._gpu.calls) <= 2048 and index._cpu is not None  # the GPU as deep as it can, then the CPU


def test_a_k_past_the_gpu_limit_and_a_gpu_failure_run_on_the_cpu():
    from retrieval.search import ranked_search

    rng = np.random.default_rng(1)
    docs = truncate_normalize(rng.standard_normal((3000, 16)), 16)
    queries = truncate_normalize(rng.standard_normal((5, 16)), 16)
    _, want_ids = exact_search(queries, docs, 2500)  # the CPU search (this machine has no GPU)
    deep = gpu_backed(docs)
    _, ids = ranked_search(deep, deep.ntotal, queries, 2500)
    np.testing.assert_array_equal(ids, want_ids)
    assert deep._gpu.calls == []  # past the GPU's limit from the start: the CPU
    failing = gpu_backed(docs, fail=True)
    _, ids = ranked_search(failing, failing.ntotal, queries, 10)
    np.testing.assert_array_equal(ids, want_ids[:, :10])
    assert not failing.on_gpu  # after an out-of-memory error, the CPU from then on
