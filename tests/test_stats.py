"""Paired bootstrap and randomization test against direct computations, and `evaluate.py --baseline`."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats as scipy_stats

import evaluate
from helpers import make_tiny_bert, tiny_beir
from retrieval.metrics import METRICS
from retrieval.stats import format_comparison, paired_bootstrap, paired_randomization


def enumerated_p(a, b) -> float:
    """Two-sided sign-flip p-value by listing every assignment of signs to the per-query changes."""
    diff = [y - x for x, y in zip(a, b)]
    observed = abs(sum(diff))
    hits = sum(
        abs(sum(s * d for s, d in zip(signs, diff))) >= observed - 1e-9
        for signs in itertools.product((1, -1), repeat=len(diff))
    )
    return hits / 2 ** len(diff)


def scipy_p(a, b, resamples: int = 10000, seed: int = 0) -> float:
    """scipy's paired permutation test: swapping a query's two scores is flipping the sign of its change.

    Its two-sided p is twice the smaller one-sided p; the sign-flip null distribution is symmetric,
    so for a non-zero change that is the fraction with |statistic| >= |observed|, our definition.
    """
    result = scipy_stats.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(y - x, axis=axis),
        vectorized=True,
        permutation_type="samples",
        alternative="two-sided",
        n_resamples=resamples,
        rng=np.random.default_rng(seed),
    )
    return float(result.pvalue)


def metric_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query scores on a coarse grid of exact binary fractions: many tied and zero changes."""
    rng = np.random.default_rng(seed)
    grid = np.array([0.0, 0.25, 0.5, 0.625, 1.0])
    return rng.choice(grid, n), rng.choice(grid, n)


def continuous(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random(n)
    return a, np.clip(a + rng.normal(0.08, 0.2, n), 0, 1)


# ---------------------------------------------------------------- randomization test


@pytest.mark.parametrize("make", [metric_like, continuous])
@pytest.mark.parametrize("n", [6, 8, 10])
def test_exact_randomization_matches_enumeration_and_scipy(make, n):
    for seed in range(4):
        a, b = make(n, seed)
        expected = enumerated_p(a, b)
        assert paired_randomization(a, b) == pytest.approx(expected, abs=1e-12)
        assert paired_randomization(a, b, resamples=2**n) == pytest.approx(expected, abs=1e-12)  # still exact
        if not np.all(a == b):  # scipy clips its doubled p; for a zero observed change ours is 1 by definition
            assert scipy_p(a, b) == pytest.approx(expected, abs=1e-12)


def test_randomization_p_is_one_when_nothing_changes():
    a = np.array([0.0, 0.25, 1.0, 0.5, 0.5, 1.0, 0.0, 0.125])
    assert paired_randomization(a, a.copy()) == 1.0  # exact: 2**8 assignments
    a = np.random.default_rng(0).random(30)
    assert paired_randomization(a, a.copy()) == 1.0  # Monte Carlo: (count + 1) / (resamples + 1) with count = all


def test_monte_carlo_randomization_close_to_exact_distribution():
    """n = 30 is 2**30 assignments: the exact p comes from the distribution of the signed sum,
    built by convolution over integer-valued changes, and Monte Carlo must land within 4 standard errors."""
    rng = np.random.default_rng(0)  # its exact p is 0.069
    steps = rng.integers(-3, 5, 30)  # changes in units of 1/8: -0.375 .. +0.5
    a = rng.choice(np.arange(8, 17), 30) / 16
    b = a + steps / 8
    counts = Counter({0: 1})
    for step in steps:
        new = Counter()
        for total, ways in counts.items():
            new[total + step] += ways
            new[total - step] += ways
        counts = new
    observed = abs(int(steps.sum()))
    exact = sum(ways for total, ways in counts.items() if abs(total) >= observed) / 2**30
    assert 0.01 < exact < 0.5  # a p-value where the approximation matters
    resamples = 10000
    tolerance = 4 * math.sqrt(exact * (1 - exact) / resamples) + 1 / (resamples + 1)
    for seed in range(3):
        p = paired_randomization(a, b, resamples=resamples, seed=seed)
        assert abs(p - exact) < tolerance
        assert abs(p * (resamples + 1) - round(p * (resamples + 1))) < 1e-6  # (count + 1) / (resamples + 1)
    assert scipy_p(a, b, resamples=resamples) == pytest.approx(exact, abs=tolerance)  # same definition as scipy


# ---------------------------------------------------------------- bootstrap


def loop_bootstrap(a, b, resamples: int, seed: int, confidence: float) -> tuple[float, float]:
    """One resample at a time from the same generator, and the percentile by linear interpolation by hand."""
    diff = [y - x for x, y in zip(a, b)]
    rng = np.random.default_rng(seed)
    means = sorted(sum(diff[i] for i in rng.integers(0, len(diff), len(diff))) / len(diff) for _ in range(resamples))

    def percentile(q: float) -> float:
        position = (resamples - 1) * q
        low = math.floor(position)
        high = min(low + 1, resamples - 1)
        return means[low] + (position - low) * (means[high] - means[low])

    tail = (1 - confidence) / 2
    return percentile(tail), percentile(1 - tail)


@pytest.mark.parametrize(
    "n, resamples, seed, confidence", [(8, 2000, 0, 0.95), (10, 3000, 5, 0.9), (300, 10000, 1, 0.95)]
)  # the last crosses blocks
def test_bootstrap_matches_explicit_loop(n, resamples, seed, confidence):
    a, b = continuous(n, seed)
    diff, lo, hi = paired_bootstrap(a, b, resamples, seed, confidence)
    assert diff == pytest.approx(float(np.mean(b) - np.mean(a)), abs=1e-12)
    assert (lo, hi) == pytest.approx(loop_bootstrap(a, b, resamples, seed, confidence), abs=1e-12)


@pytest.mark.parametrize("make, n", [(continuous, 40), (metric_like, 279)])
def test_bootstrap_agrees_with_scipy_percentile_interval(make, n):
    """Different random draws, so within Monte Carlo error: the 2.5% quantile of 10000 resamples has a
    standard error near 0.03 of the bootstrap standard deviation; the two estimates differ by < 0.15 of it."""
    a, b = make(n, 11)
    _, lo, hi = paired_bootstrap(a, b)
    reference = scipy_stats.bootstrap(
        (a, b),
        lambda x, y, axis: np.mean(y - x, axis=axis),
        paired=True,
        vectorized=True,
        method="percentile",
        n_resamples=10000,
        rng=np.random.default_rng(123),
    ).confidence_interval
    spread = np.std(b - a) / math.sqrt(n)
    assert lo == pytest.approx(reference.low, abs=0.15 * spread)
    assert hi == pytest.approx(reference.high, abs=0.15 * spread)


def test_constant_change_gives_a_zero_width_interval():
    a = np.random.default_rng(2).integers(0, 5, 12) / 8
    assert paired_bootstrap(a, a + 0.25) == (0.25, 0.25, 0.25)
    assert paired_bootstrap(a, a.copy()) == (0.0, 0.0, 0.0)


def test_unpaired_input_is_rejected():
    with pytest.raises(ValueError, match="equal in length"):
        paired_bootstrap(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="equal in length"):
        paired_randomization(np.zeros(0), np.zeros(0))


def test_format_comparison_row():
    comparison = {384: {"ndcg@10": {"base": 0.5, "new": 0.53, "diff": 0.03, "lo": -0.004, "hi": 0.061, "p": 0.0312}}}
    assert (
        format_comparison(comparison).splitlines()[2]
        == "| 384 | 0.5000 | 0.5300 | +0.0300 | [-0.0040, +0.0610] | 0.0312 |"
    )


# ---------------------------------------------------------------- evaluate.py --baseline


def test_cli_model_against_itself_changes_nothing(tmp_path, tiny_bert, capsys):
    data = tiny_beir(tmp_path / "beir")
    report = evaluate.main(
        [
            "--model",
            str(tiny_bert),
            "--baseline",
            str(tiny_bert),
            "--data",
            str(data),
            "--split",
            "dev",
            "--dims",
            "32,16",
            "--resamples",
            "2000",
            "--out",
            str(tmp_path / "m.json"),
        ]
    )
    assert "change from the baseline" in capsys.readouterr().out
    written = json.loads((tmp_path / "m.json").read_text())
    assert list(written["comparison"]) == ["32", "16"]
    for dim, by_metric in written["comparison"].items():
        assert list(by_metric) == list(METRICS)
        for metric, c in by_metric.items():
            assert (c["diff"], c["lo"], c["hi"], c["p"]) == (0.0, 0.0, 0.0, 1.0)
            assert c["base"] == c["new"] == report[dim][metric]


def test_cli_two_models_compare_their_separate_results(tmp_path, tiny_bert):
    data = tiny_beir(tmp_path / "beir")
    other = make_tiny_bert(tmp_path / "other", num_hidden_layers=1)
    common = ["--data", str(data), "--split", "dev", "--dims", "32,16"]
    alone_new = evaluate.main(["--model", str(tiny_bert), *common, "--run-out", str(tmp_path / "new")])
    alone_base = evaluate.main(["--model", str(other), *common, "--run-out", str(tmp_path / "base")])
    assert "comparison" not in alone_new  # the plain report is unchanged
    report = evaluate.main(["--model", str(tiny_bert), "--baseline", str(other), *common])
    assert report["meta"]["baseline"] == str(other)
    changed = 0
    for dim in ("32", "16"):
        for metric in METRICS:
            c = report["comparison"][dim][metric]
            assert c["base"] == pytest.approx(alone_base[dim][metric], abs=1e-12)
            assert c["new"] == pytest.approx(alone_new[dim][metric], abs=1e-12)
            assert c["diff"] == pytest.approx(alone_new[dim][metric] - alone_base[dim][metric], abs=1e-12)
            assert c["lo"] <= c["diff"] <= c["hi"]
            changed += c["diff"] != 0
        per_query = {
            side: [
                json.loads(line)["ndcg@10"]
                for line in (tmp_path / side / f"per_query.{dim}.jsonl").read_text().splitlines()
            ]
            for side in ("base", "new")
        }
        assert report["comparison"][dim]["ndcg@10"]["p"] == pytest.approx(
            enumerated_p(per_query["base"], per_query["new"])
        )
    assert changed  # the two models really differ somewhere
