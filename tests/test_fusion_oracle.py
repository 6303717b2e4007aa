"""bench/fusion_oracle.py: the fixed weight reproduces the quality bench's cross-fitted fusion, and
the two-bin weights and the oracle on hand-made per-question tables whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from bench import fusion_oracle
from bench.quality import CROSS, Scorer, cross_halves
from retrieval.fusion import WEIGHT_GRID, Candidates
from tests.helpers import make_tiny_bert, tiny_beir


def _split_table(n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Questions with a low feature score 1 only at weight 0, the others only at weight 1; a wide gap
    between the two kinds, so any quantile cut between them on one half separates the other too."""
    low = np.arange(n) < n / 2
    feature = np.arange(n, dtype=np.float64) + np.where(low, 0.0, 100.0)
    grid = np.zeros((n, len(WEIGHT_GRID)))
    grid[low, 0] = 1.0
    grid[~low, -1] = 1.0
    return grid, feature


def test_two_bins_finds_the_cut_that_separates_the_questions():
    grid, feature = _split_table()
    halves = cross_halves(len(feature))
    assert all(
        ((feature[h] < 100).sum(), (feature[h] >= 100).sum()) == (3, 3) for h in halves
    )  # the median cuts between
    np.testing.assert_array_equal(fusion_oracle.two_bins(grid, feature, halves), np.ones(len(feature)))
    fixed = fusion_oracle.fixed_weight(grid, halves)
    # one weight for everything: each half gets the side that is the majority of the other half
    for half, other in (halves, halves[::-1]):
        column = 0 if (feature[other] < 100).sum() >= (feature[other] >= 100).sum() else -1  # ties: the lower
        np.testing.assert_array_equal(fixed[half], grid[half, column])
    assert grid.max(1).mean() == 1.0  # the oracle


def test_the_cut_comes_from_the_other_half():
    """Without the gap, each half's best cut misplaces one question of the other: halves
    [2 4 5 7 9 11] and [0 1 3 6 8 10]. Cut on the second, at its median 4.5, question 5 (a low one)
    lands on the high side; cut on the first, at its median 6, question 6 lands on the low side."""
    grid, _ = _split_table()
    feature = np.arange(12, dtype=np.float64)
    halves = cross_halves(12)
    assert [h.tolist() for h in halves] == [[2, 4, 5, 7, 9, 11], [0, 1, 3, 6, 8, 10]]
    expected = np.ones(12)
    expected[[5, 6]] = 0.0
    np.testing.assert_array_equal(fusion_oracle.two_bins(grid, feature, halves), expected)


def test_a_feature_that_tells_nothing_gives_the_fixed_weight():
    grid, _ = _split_table()
    halves = cross_halves(grid.shape[0])
    constant = np.full(grid.shape[0], 3.0)
    # each half holds 3 questions of each kind: the tie goes to the lower weight, 0, for both halves
    np.testing.assert_array_equal(fusion_oracle.two_bins(grid, constant, halves), grid[:, 0])


def test_fixed_weight_reproduces_the_quality_bench(tmp_path, capsys):
    model, data = make_tiny_bert(tmp_path / "model"), tiny_beir(tmp_path / "beir", n_docs=60, n_queries=12)

    class Args:
        split, dims, eval_batch, weight_split = "dev", [32, 8], 64, CROSS

    Args.data = data
    scorer = Scorer(Args)
    result = scorer.model(model)
    assert fusion_oracle.main(["--models", str(model), "--data", str(data), "--dims", "32,8", "--resamples", "50"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("BM25 ")]
    assert len(printed) == 2
    for line, dim in zip(printed, ("32", "8")):
        fixed = float(line.split("fixed weight cross-fitted ")[1].split(",")[0])
        assert fixed == pytest.approx(np.mean(result["fused"][dim]["ndcg@10"]), abs=6e-5)


def test_features_read_by_hand():
    """Three questions: a plain one; one with padding (whose values must be ignored) and a BM25 tie;
    one no passage matches lexically (BM25 all 0: no first passage to agree with)."""
    c = Candidates(
        rows=np.array([[0, 1, 2, 3], [5, 7, -1, -1], [4, 6, 8, -1]]),
        dense=np.array([[0.9, 0.5, 0.7, 0.1], [0.8, 0.6, 0.99, 0.99], [0.3, 0.2, 0.25, 0.99]]),
        lexical=np.array([[2.0, 4.0, 1.0, 0.5], [3.0, 3.0, 9.0, 9.0], [0.0, 0.0, 0.0, 9.0]]),
        dense_rank=np.array([[1, 3, 2, 4], [1, 2, 0, 0], [1, 3, 2, 0]]),
        lexical_rank=np.array([[2, 1, 3, 0], [1, 2, 0, 0], [0, 0, 0, 0]]),
    )
    expected = {
        "bm25 margin (1st - 2nd) / 1st": [0.5, 0.0, 0.0],
        "bm25 top score": [4.0, 3.0, 0.0],
        "dense margin 1st - 2nd": [0.2, 0.2, 0.05],
        "dense top cosine": [0.9, 0.8, 0.3],
        "top-10 overlap": [3, 2, 0],
        "same top passage": [0, 1, 0],
    }
    found = fusion_oracle.features(c)
    assert found.keys() == expected.keys()
    for name, values in expected.items():
        np.testing.assert_allclose(found[name], values, atol=1e-12, err_msg=name)
