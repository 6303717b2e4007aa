"""The optimiser's parameter groups: which parameters get weight decay (the trainable weight
matrices, never biases or norms), and each group's share of the learning rate (layer-wise decay)."""

from __future__ import annotations

import re

import torch

LAYER = re.compile(r"(?:^|\.)layers?\.(\d+)\.")  # BERT's encoder.layer.N., most others' layers.N.


def layer_depths(model: torch.nn.Module) -> tuple[dict[str, int], int]:
    """Each parameter's depth, by name, and the number of layers L: 0 for the embeddings (a name
    holding "embeddings" outside any layer), N + 1 in layer N, L + 1 for anything above the layers
    (a pooler, a head) and for anything else outside them."""
    names = [name for name, _ in model.named_parameters()]
    layers = [int(match.group(1)) for name in names if (match := LAYER.search(name))]
    count = max(layers) + 1 if layers else 0
    depths = {}
    for name in names:
        match = LAYER.search(name)
        if match:
            depths[name] = int(match.group(1)) + 1
        else:
            depths[name] = 0 if "embeddings" in name else count + 1
    return depths, count


def decay_groups(model: torch.nn.Module, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """Optimiser parameter groups over the parameters that require grad: weight matrices with
    `weight_decay`, biases and LayerNorm (or any *Norm module's) parameters with none (BERT's rule).
    A parameter shared by two modules (a decoder tied to the word embeddings) is listed once.

    layer_decay < 1: layer-wise learning-rate decay (ELECTRA, Clark et al. 2020; BEiT): each group
    carries `lr_scale` = layer_decay ** max(0, L − depth) (`layer_depths`). An embedding model has no
    head above its layers (BERT's pooler is frozen), so its last layer (N = L − 1) learns at the full
    rate, layer N at layer_decay ** (L − 1 − N), the embeddings at layer_decay ** L, and anything
    trainable above the layers at the full rate. A model whose parameter names show no layers is
    refused (ValueError)."""
    depths, count = layer_depths(model)
    if layer_decay != 1.0 and count == 0:
        raise ValueError("no parameter name shows a layer number (layer.N. or layers.N.)")
    groups: dict[tuple[bool, int], list] = {}
    seen = set()
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            exempt = name == "bias" or isinstance(module, torch.nn.LayerNorm) or "norm" in type(module).__name__.lower()
            depth = depths[f"{module_name}.{name}" if module_name else name] if layer_decay != 1.0 else 0
            groups.setdefault((exempt, depth), []).append(param)
    if layer_decay == 1.0:  # the two groups the optimiser has always had, either possibly empty
        return [
            {"params": groups.get((False, 0), []), "weight_decay": weight_decay},
            {"params": groups.get((True, 0), []), "weight_decay": 0.0},
        ]
    return [
        {
            "params": params,
            "weight_decay": 0.0 if exempt else weight_decay,
            "lr_scale": layer_decay ** max(0, count - depth),
        }
        for (exempt, depth), params in sorted(groups.items())
    ]
