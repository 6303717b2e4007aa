"""The embedding-space diagnostics against direct computations: float64 loops over every pair, and
the sets whose answers are known (a collapsed set, an orthonormal one)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from data import IRDataset
from retrieval.diagnostics import (
    alignment,
    anisotropy,
    corpus_sample,
    effective_rank,
    map_problem,
    positive_pairs,
    space_diagnostics,
    uniformity,
)


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)) + 0.7  # a shared direction: anisotropic, not collapsed
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def loop_uniformity(x: np.ndarray, t: float = 2.0) -> float:
    pairs = itertools.combinations(range(len(x)), 2)
    potentials = [math.exp(-t * sum((a - b) ** 2 for a, b in zip(x[i], x[j]))) for i, j in pairs]
    return math.log(sum(potentials) / len(potentials))


def loop_anisotropy(x: np.ndarray) -> float:
    cosines = [sum(a * b for a, b in zip(x[i], x[j])) for i, j in itertools.permutations(range(len(x)), 2)]
    return sum(cosines) / len(cosines)


def test_each_number_matches_a_loop_over_the_pairs():
    rng = np.random.default_rng(0)
    x, y = unit_rows(rng, 12, 5), unit_rows(rng, 12, 5)
    expected_alignment = sum(sum((a - b) ** 2 for a, b in zip(x[i], y[i])) for i in range(12)) / 12
    assert alignment(x, y) == pytest.approx(expected_alignment, rel=1e-12)
    assert uniformity(x) == pytest.approx(loop_uniformity(x), rel=1e-10)
    assert uniformity(x, t=0.5) == pytest.approx(loop_uniformity(x, t=0.5), rel=1e-10)
    assert anisotropy(x) == pytest.approx(loop_anisotropy(x), rel=1e-10)
    # effective rank from the eigenvalues of X^T X (their square roots are the singular values)
    singular = np.sqrt(np.clip(np.linalg.eigvalsh(x.T @ x), 0, None))
    p = singular / singular.sum()
    assert effective_rank(x) == pytest.approx(math.exp(-sum(v * math.log(v) for v in p if v > 0)), rel=1e-9)


def test_a_collapsed_set_and_an_orthonormal_set_give_the_known_answers():
    collapsed = np.tile(np.array([[0.6, 0.8, 0.0]]), (10, 1))
    assert alignment(collapsed, collapsed) == 0.0
    assert uniformity(collapsed) == pytest.approx(0.0, abs=1e-12)  # exp(0) for every pair
    assert anisotropy(collapsed) == pytest.approx(1.0)
    assert effective_rank(collapsed) == pytest.approx(1.0)
    basis = np.eye(8)  # isotropic: every pair orthogonal, |x - y|^2 = 2
    assert uniformity(basis) == pytest.approx(-4.0)
    assert anisotropy(basis) == pytest.approx(0.0)
    assert effective_rank(basis) == pytest.approx(8.0)
    antipodal = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert alignment(antipodal[:1], antipodal[1:]) == pytest.approx(4.0)  # the farthest a pair can be


def test_the_diagnostics_of_a_set_truncate_and_renormalise_per_dim():
    rng = np.random.default_rng(1)
    corpus, queries = unit_rows(rng, 30, 16), unit_rows(rng, 4, 16)
    data = IRDataset(
        corpus_ids=[f"d{i}" for i in range(30)],
        corpus_texts=[f"passage {i}" for i in range(30)],
        query_ids=["q0", "q1", "q2", "q3"],
        query_texts=["a", "b", "c", "d"],
        qrels={"q0": {"d3": 1}, "q1": {"d5": 1, "d7": 2}, "q2": {"d0": 1}, "q3": {"d29": 1}},
    )
    q_rows, p_rows = positive_pairs(data)
    assert list(zip(q_rows.tolist(), p_rows.tolist())) == [(0, 3), (1, 5), (1, 7), (2, 0), (3, 29)]
    found = space_diagnostics(queries, corpus, data, [16, 4])
    cut = corpus[:, :4] / np.linalg.norm(corpus[:, :4], axis=1, keepdims=True)
    cut_q = queries[:, :4] / np.linalg.norm(queries[:, :4], axis=1, keepdims=True)
    pairs = [(0, 3), (1, 5), (1, 7), (2, 0), (3, 29)]
    assert found[4]["alignment"] == pytest.approx(np.mean([np.sum((cut_q[q] - cut[p]) ** 2) for q, p in pairs]))
    assert found[4]["uniformity"] == pytest.approx(loop_uniformity(cut))
    assert found[4]["anisotropy"] == pytest.approx(loop_anisotropy(cut))
    assert found[16]["anisotropy"] == pytest.approx(loop_anisotropy(corpus))
    assert found[16]["effective_rank"] > found[4]["effective_rank"]  # 16 dims hold more directions than 4


def test_the_sample_is_fixed_and_independent_of_anything_but_the_corpus_size():
    first, again = corpus_sample(13012), corpus_sample(13012)
    assert len(first) == 2000 and np.array_equal(first, again)
    assert np.all(np.diff(first) > 0) and first[-1] < 13012
    assert np.array_equal(corpus_sample(40), np.arange(40))


def test_the_map_needs_umap_and_50_passages():
    import importlib.util

    if importlib.util.find_spec("umap") is None:
        assert "needs umap-learn" in map_problem(5000)
        return
    assert map_problem(50) is None and map_problem(13012) is None
    assert map_problem(49) == "the embedding map needs at least 50 passages, the corpus has 49"


def test_the_map_is_seeded():
    pytest.importorskip("umap")
    from retrieval.diagnostics import space_map

    x = unit_rows(np.random.default_rng(3), 80, 12).astype(np.float32)
    first, again = space_map(x), space_map(x)
    assert first.shape == (80, 2) and first.dtype == np.float32 and np.array_equal(first, again)
