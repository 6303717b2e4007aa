"""Which evaluated state of a run becomes its model: the evaluations made during training (the
curve) and the best weights by eval.select, kept on the CPU."""

from __future__ import annotations

import numpy as np
import torch

from retrieval.metrics import DimResult


class Selection:
    """The evaluations made during training (the curve) and the best state so far by eval.select,
    kept on the CPU; `last` keeps whatever was evaluated last."""

    def __init__(self, select: str):
        self.select, self.curve, self.best_step, self.best_score, self.best_state = select, [], None, None, None
        self.best_results: dict[int, DimResult] | None = None
        self.best_sets: dict[str, dict[int, DimResult]] = {}  # the other data.eval sets, at the step kept

    def observe(
        self,
        step: int,
        epoch: int,
        results: dict[int, DimResult],
        model: torch.nn.Module,
        other_sets: dict[str, dict[int, DimResult]] | None = None,
    ) -> None:
        """Record step's evaluation (`results`: the set eval.select scores; `other_sets`: the other
        data.eval sets by name) and keep the weights when it is the best so far."""
        metrics = {dim: result.metrics for dim, result in results.items()}
        hybrid = {dim: result.fused["convex"].metrics for dim, result in results.items() if "convex" in result.fused}
        score = None if self.select == "last" else selection_score(metrics, self.select, hybrid)
        point = {"step": step, "epoch": epoch, "score": score, "metrics": {str(d): m for d, m in metrics.items()}}
        if hybrid:
            point["hybrid"] = {str(d): m for d, m in hybrid.items()}
        if other_sets:
            point["sets"] = {
                name: {str(d): r.metrics for d, r in by_dim.items()} for name, by_dim in other_sets.items()
            }
        self.curve.append(point)
        if self.best_score is None or score is None or score > self.best_score:
            self.best_step, self.best_score, self.best_results = step, score, results
            self.best_sets = dict(other_sets or {})
            self.best_state = {name: t.detach().to("cpu", copy=True) for name, t in model.state_dict().items()}

    def evaluated(self, step: int) -> bool:
        return any(point["step"] == step for point in self.curve)

    def state_dict(self) -> dict:
        """All but the weights (saved beside it as a safetensors file)."""
        return {
            "select": self.select,
            "curve": self.curve,
            "best_step": self.best_step,
            "best_score": self.best_score,
            "best_results": self.best_results,
            "best_sets": self.best_sets,
        }

    def load_state_dict(self, state: dict, best_state: dict[str, torch.Tensor] | None) -> None:
        self.select, self.curve, self.best_step = state["select"], state["curve"], state["best_step"]
        self.best_score, self.best_results, self.best_state = state["best_score"], state["best_results"], best_state
        self.best_sets = state.get("best_sets") or {}


def selection_score(
    metrics: dict[int, dict[str, float]], select: str, hybrid: dict[int, dict[str, float]] | None = None
) -> float:
    """eval.select as a number, higher is better: METRIC:DIM, METRIC:mean over the dims, and
    METRIC:hybrid:DIM or METRIC:hybrid:mean on the model fused with BM25 (convex; `hybrid`)."""
    metric, _, dim = select.partition(":")
    if dim.startswith("hybrid:"):
        if not hybrid:
            raise ValueError(f"eval.select {select}: needs lexical.retriever bm25 (no fused results)")
        metrics, dim = hybrid, dim.removeprefix("hybrid:")
    if dim == "mean":
        return float(np.mean([by_metric[metric] for by_metric in metrics.values()]))
    return metrics[int(dim)][metric]
