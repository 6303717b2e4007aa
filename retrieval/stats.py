"""Paired statistics for comparing two models on the same queries: is a change in a metric real?

Both tests resample queries, the unit a user's next questions are drawn from, and pair each
query's score under the baseline with its score under the new model, so the (large) variation
in difficulty between queries cancels out:

- `paired_bootstrap`: a percentile interval for the mean per-query change;
- `paired_randomization`: a two-sided sign-flip test of "no change" (under the null hypothesis
  either model is equally likely to have produced either score of a query).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

CHUNK = 1 << 20  # resampled values held at once: memory stays bounded whatever the query count


def _differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Q,) per-query b - a in float64, after checking the two arrays pair up."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(
            f"paired per-query arrays must be 1-D, non-empty and equal in length; got {a.shape} and {b.shape}"
        )
    return b - a


def _row_chunks(rows: int, width: int) -> Iterator[int]:
    """Sizes of consecutive blocks of `rows` rows of `width` values, at most CHUNK values a block."""
    step = max(1, CHUNK // width)
    for start in range(0, rows, step):
        yield min(step, rows - start)


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, resamples: int = 10000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float, float]:
    """mean(b - a) and its percentile bootstrap interval (lo, hi) at `confidence`.

    a: (Q,) a metric of the baseline per query; b: (Q,) the same metric of the new model on the
    same queries. Each resample draws Q query indices with replacement (one row of
    `default_rng(seed).integers(0, Q, (resamples, Q))`, drawn in blocks) and takes the mean change.
    """
    diff = _differences(a, b)
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [
            diff[rng.integers(0, diff.size, (rows, diff.size))].mean(axis=1)  # (rows,)
            for rows in _row_chunks(resamples, diff.size)
        ]
    )
    tail = (1.0 - confidence) / 2
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return float(diff.mean()), float(lo), float(hi)


def paired_randomization(a: np.ndarray, b: np.ndarray, resamples: int = 10000, seed: int = 0) -> float:
    """Two-sided p-value of mean(b - a) under random sign flips of the per-query changes.

    Exact when 2**Q <= resamples (every sign assignment once, the observed one included);
    otherwise `resamples` random assignments and p = (count + 1) / (resamples + 1), which never
    reports 0 for a finite sample. An assignment counts when |its sum| >= |the observed sum|, up
    to 1e-12 of the sum of |changes|, so rounding cannot drop the observed assignment or its
    mirror image, and zero changes (ties) are simply unaffected by their sign.
    """
    diff = _differences(a, b)
    n = diff.size
    threshold = abs(diff.sum()) - 1e-12 * np.abs(diff).sum()
    exact = 2**n <= resamples
    total = 2**n if exact else resamples
    rng = np.random.default_rng(seed)
    count, done = 0, 0
    for rows in _row_chunks(total, n):
        if exact:  # row i of the full table: bit j of i says whether query j's change is flipped
            bits = (np.arange(done, done + rows)[:, None] >> np.arange(n)) & 1  # (rows, Q)
        else:
            bits = rng.integers(0, 2, (rows, n))
        sums = (1 - 2 * bits) @ diff  # (rows,)
        count += int(np.count_nonzero(np.abs(sums) >= threshold))
        done += rows
    return count / total if exact else (count + 1) / (resamples + 1)


def compare_per_query(
    base: dict[int, dict[str, np.ndarray]],
    new: dict[int, dict[str, np.ndarray]],
    metrics: Sequence[str] | None = None,
    resamples: int = 10000,
    seed: int = 0,
) -> dict[int, dict[str, dict[str, float]]]:
    """For each dim and metric: the means of base and new, their change with a 95% paired bootstrap
    interval, and the randomization p-value.

    base, new: {dim: {metric: (Q,) per-query values}} on the same queries in the same order (as
    `evaluate_embeddings(...)[dim].per_query`). metrics: default every metric of `base`.
    Returns {dim: {metric: {"base", "new", "diff", "lo", "hi", "p"}}}.
    """
    if list(base) != list(new):
        raise ValueError(f"base and new are evaluated at different dims: {list(base)} vs {list(new)}")
    comparison: dict[int, dict[str, dict[str, float]]] = {}
    for dim in base:
        comparison[dim] = {}
        for metric in metrics or list(base[dim]):
            a, b = base[dim][metric], new[dim][metric]
            diff, lo, hi = paired_bootstrap(a, b, resamples, seed)
            comparison[dim][metric] = {
                "base": float(np.mean(a)),
                "new": float(np.mean(b)),
                "diff": diff,
                "lo": lo,
                "hi": hi,
                "p": paired_randomization(a, b, resamples, seed),
            }
    return comparison


def format_comparison(comparison: dict[int, dict[str, dict[str, float]]], metrics: Sequence[str] = ("ndcg@10",)) -> str:
    """Markdown: per metric, a table with one row per dim (base | new | change | 95% CI | p)."""
    tables = []
    for metric in metrics:
        lines = [f"| dim | base {metric} | new | change | 95% CI | p |", "|---:|---:|---:|---:|:---:|---:|"]
        for dim, by_metric in comparison.items():
            c = by_metric[metric]
            lines.append(
                f"| {dim} | {c['base']:.4f} | {c['new']:.4f} | {c['diff']:+.4f} "
                f"| [{c['lo']:+.4f}, {c['hi']:+.4f}] | {c['p']:.3g} |"
            )
        tables.append("\n".join(lines))
    return "\n\n".join(tables)
