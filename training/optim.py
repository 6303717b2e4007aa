"""Which parameters get weight decay: the trainable weight matrices, never biases or norms."""

from __future__ import annotations

import torch


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two optimiser parameter groups over the parameters that require grad: weight matrices with
    `weight_decay`, biases and LayerNorm (or any *Norm module's) parameters with none (BERT's rule).
    A parameter shared by two modules (a decoder tied to the word embeddings) is listed once."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            exempt = name == "bias" or isinstance(module, torch.nn.LayerNorm) or "norm" in type(module).__name__.lower()
            (no_decay if exempt else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
