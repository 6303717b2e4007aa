"""When things happen in a run: the learning rate of each optimiser step, and whether a step is
due for an evaluation or a checkpoint. Pure functions of the step."""

from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, peak: float, warmup_ratio: float, min_ratio: float = 0.0) -> float:
    """Learning rate of optimiser step `step` (0-based) of `total_steps`.

    Warm-up: W = ceil(warmup_ratio * total) steps rising linearly, peak * (step + 1) / (W + 1),
    so the first step already learns. Then cosine from the peak (at step W) down toward the floor
    peak * min_ratio, reached at step `total_steps`.
    """
    warmup = math.ceil(round(warmup_ratio * total_steps, 9))  # 0.07 * 100 is 7.000000000000001
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    floor = peak * min_ratio
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def is_due(step: int, total: int, steps_per_epoch: int, every: str) -> bool:
    """Whether optimiser step `step` (1-based) of `total` is due, for eval.every and checkpoint.every:
    `no` never; otherwise always the last step, and every epoch (`epoch`) or every N steps (`N`);
    `end` only the last."""
    if every == "no":
        return False
    if step == total:
        return True
    if every == "epoch":
        return step % steps_per_epoch == 0
    return every.isdecimal() and step % int(every) == 0
