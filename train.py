"""Fine-tune an embedding model with Matryoshka InfoNCE, gradient caching and a cosine schedule.

    python train.py --config configs/quickstart.yaml
    accelerate launch train.py --config configs/bge.yaml --train.lr 1e-5
    torchrun --nproc_per_node 8 train.py --config configs/bge.yaml

One YAML config (the dataclasses below); any key can be overridden as `--section.key value`.
The global batch (train.global_batch) is the contrastive batch across all processes: every
query is scored against every document of it. Each optimiser step runs GradCache:
  1. embed every micro-batch of the step without grad, saving each one's RNG state;
  2. the Matryoshka loss on the cached embeddings, and its gradient w.r.t. them;
  3. replay each micro-batch with grad under its saved RNG state and backpropagate the cached
     gradient into the model (DDP synchronises only during the last replay).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import numpy as np
import torch
import torch.distributed as dist
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from data import DataError, IRDataset, PairsData, SpreadBatchSampler, TrainTable, index_texts, known_relevant, load_ir, load_pairs
from evaluate import METRICS, DimResult, default_dims, evaluate, format_table
from losses import infonce_per_dim, matryoshka_infonce
from mine import MineConfig, check_mine_config, mine, write_atomic
from model import Encoder, ModelConfig
from stats import compare_per_query, format_comparison

logger = logging.getLogger("train")


# ---------------------------------------------------------------- config


@dataclass
class DataConfig:
    train: str = ""  # pairs/triplets: .jsonl/.csv/.parquet file or hub dataset id
    train_split: str | None = None  # split of a hub dataset (e.g. "train")
    eval: str | None = None  # BEIR directory or pairs dataset with a held-out split; null: no evaluation
    eval_split: str = "dev"
    qrels: str | None = None  # BEIR directory whose qrels/<qrels_split>.tsv adds known relevant passages
    qrels_split: str = "train"
    hard_negatives: MineConfig = field(default_factory=MineConfig)  # k > 0: mine before training


@dataclass
class LossConfig:
    dims: list[int] = field(default_factory=list)  # Matryoshka dims; []: full size and powers of two down to 32
    weights: list[float] = field(default_factory=list)  # one per dim; []: all 1
    temperature: float = 0.05  # logits = cos / temperature (scale 20)
    symmetric: bool = False  # add the document->query term


@dataclass
class TrainConfig:
    epochs: int = 1
    global_batch: int = 512  # contrastive batch over all processes
    micro_batch: int = 32  # rows embedded at once (memory), per process; does not change the result
    lr: float = 2e-5
    warmup_ratio: float = 0.1  # warm-up steps = ceil(ratio * total steps)
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of lr
    weight_decay: float = 0.01  # AdamW; never on biases and LayerNorm
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    max_grad_norm: float | None = 1.0  # null: no clipping
    seed: int = 42
    mixed_precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | no
    deterministic: bool = False  # deterministic CUDA algorithms (CPU runs are bitwise reproducible anyway)
    gradient_checkpointing: bool = False
    drop_last: bool = True  # drop an epoch's short last batch
    optimizer: str = "adamw"  # adamw | sgd (plain SGD: for tests that must see a gradient off by a factor)


@dataclass
class EvalConfig:
    before: bool = True
    after: bool = True
    batch_size: int = 64
    dims: list[int] = field(default_factory=list)  # []: loss.dims
    every: str = "end"  # end | epoch | N: evaluate every N optimiser steps (and at the end)
    select: str = "ndcg@10:mean"  # the evaluated checkpoint kept: METRIC:DIM, METRIC:mean (over dims), or last


@dataclass
class OutputConfig:
    dir: str = "runs/model"  # model/ (sentence-transformers), results.json, results.md, train_log.jsonl
    overwrite: bool = False


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


class ConfigError(ValueError):
    """A bad config file, key or value; the message names the key."""


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if get_origin(hint) in (Union, UnionType) and NoneType in get_args(hint):
        rest = [arg for arg in get_args(hint) if arg is not NoneType]
        return rest[0], True
    return hint, False


def coerce(value: Any, hint: Any, key: str) -> Any:
    """`value` (from YAML or the command line) as type `hint`, or a ConfigError naming `key`."""
    hint, optional = _unwrap_optional(hint)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("null", "none")):
        if optional:
            return None
        raise ConfigError(f"{key}: may not be null")
    if get_origin(hint) is list:
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [coerce(item, get_args(hint)[0], f"{key}[{i}]") for i, item in enumerate(value)]
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return int(value.strip())
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = float(value)  # YAML reads 2e-5 as a string
        if number is not None and math.isfinite(number):
            return number
    elif hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):  # `every: 50` in YAML
            return str(value)
    raise ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def build_config(cls: type, raw: dict, prefix: str = "") -> Any:
    """A dataclass from a nested dict; unknown keys and wrong types raise ConfigError with the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {raw!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = [name for name in raw if name not in names]
    if unknown:
        raise ConfigError(f"unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in raw.items():
        hint = hints[name]
        if is_dataclass(hint):
            kwargs[name] = build_config(hint, value or {}, f"{prefix}{name}.")
        else:
            kwargs[name] = coerce(value, hint, prefix + name)
    return cls(**kwargs)


def apply_override(raw: dict, key: str, text: str) -> None:
    """Set `raw[a][b] = text` for key 'a.b', after checking the key exists. String fields take the
    text as it is (prompts have colons); other fields parse it when the config is built."""
    cls, node, parts = Config, raw, key.split(".")
    for depth, part in enumerate(parts):
        known = {f.name: f for f in fields(cls)}
        if part not in known:
            raise ConfigError(f"unknown key {'.'.join(parts[: depth + 1])} (known: {', '.join(sorted(known))})")
        hint = get_type_hints(cls)[part]
        if depth == len(parts) - 1:
            if is_dataclass(hint):
                raise ConfigError(f"{key}: is a section; set one of its keys, e.g. --{key}.{fields(hint)[0].name}")
            node[part] = text
            return
        if not is_dataclass(hint):
            raise ConfigError(f"{'.'.join(parts[: depth + 1])}: is not a section")
        if node.get(part) is None:  # absent, or an empty section in the YAML
            node[part] = {}
        if not isinstance(node[part], dict):
            raise ConfigError(f"{'.'.join(parts[: depth + 1])}: expected a mapping, got {node[part]!r}")
        node, cls = node[part], hint


def check_config(config: Config) -> None:
    """Cross-field checks, all in one place. Model-dependent ones (dims vs. size) come after loading."""
    t, loss = config.train, config.loss
    if not config.data.train:
        raise ConfigError("data.train: required (a pairs file or hub dataset id)")
    for key, value in (("train.epochs", t.epochs), ("train.global_batch", t.global_batch), ("train.micro_batch", t.micro_batch)):
        if value < 1:
            raise ConfigError(f"{key}: must be at least 1, got {value}")
    if t.lr <= 0 or not 0 <= t.warmup_ratio <= 1 or not 0 <= t.min_lr_ratio <= 1:
        raise ConfigError("train.lr must be > 0; train.warmup_ratio and train.min_lr_ratio in [0, 1]")
    if t.mixed_precision not in ("auto", "bf16", "no"):
        raise ConfigError(f"train.mixed_precision: {t.mixed_precision!r} is not auto, bf16 or no")
    if t.optimizer not in ("adamw", "sgd"):
        raise ConfigError(f"train.optimizer: {t.optimizer!r} is not adamw or sgd")
    if len(t.adam_betas) != 2 or not all(0 <= beta < 1 for beta in t.adam_betas):
        raise ConfigError(f"train.adam_betas: expected two numbers in [0, 1), got {t.adam_betas}")
    if t.adam_eps <= 0 or t.weight_decay < 0:
        raise ConfigError(f"train.adam_eps must be > 0 and train.weight_decay >= 0, got {t.adam_eps}, {t.weight_decay}")
    if t.max_grad_norm is not None and t.max_grad_norm <= 0:
        raise ConfigError(f"train.max_grad_norm: must be > 0, or null for no clipping, got {t.max_grad_norm}")
    if config.eval.batch_size < 1:
        raise ConfigError(f"eval.batch_size: must be at least 1, got {config.eval.batch_size}")
    if loss.temperature <= 0:
        raise ConfigError(f"loss.temperature: must be > 0, got {loss.temperature}")
    if loss.weights and len(loss.weights) != len(loss.dims):
        raise ConfigError(f"loss.weights: {len(loss.weights)} weights for {len(loss.dims)} loss.dims")
    if len(set(loss.dims)) != len(loss.dims):
        raise ConfigError(f"loss.dims: repeated dims in {loss.dims}")
    every = config.eval.every
    if every not in ("end", "epoch") and not (every.isdecimal() and int(every) > 0):
        raise ConfigError(f"eval.every: {every!r} is not end, epoch or a number of steps above 0")
    metric, _, dim = config.eval.select.partition(":")
    if config.eval.select != "last" and (metric not in METRICS or not (dim == "mean" or dim.isdecimal())):
        raise ConfigError(f"eval.select: {config.eval.select!r} is not last, METRIC:DIM or METRIC:mean "
                          f"(metrics: {', '.join(METRICS)})")
    if every != "end" and not (config.eval.after and config.data.eval):
        raise ConfigError(f"eval.every: {every!r} needs data.eval and eval.after true")
    if config.data.hard_negatives.refresh and not config.data.hard_negatives.k:
        raise ConfigError("data.hard_negatives.refresh: re-mining needs data.hard_negatives.k > 0")
    try:
        check_mine_config(config.data.hard_negatives, "data.hard_negatives")
    except ValueError as err:
        raise ConfigError(str(err)) from None


def load_config(argv: list[str] | None) -> Config:
    """`--config FILE` plus any `--a.b value` / `--a.b=value` overrides."""
    args = list(sys.argv[1:] if argv is None else argv)
    path, overrides = None, []
    while args:
        arg = args.pop(0)
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}; use --config FILE and --section.key value")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if not args:
                raise ConfigError(f"--{key}: missing its value")
            value = args.pop(0)
        if key == "config":
            path = value
        else:
            overrides.append((key, value))
    raw: dict = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: {err}") from None
    for key, value in overrides:
        apply_override(raw, key, value)
    config = build_config(Config, raw)
    check_config(config)
    return config


# ---------------------------------------------------------------- schedule


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


# ---------------------------------------------------------------- distributed gather


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)  # (N·b, ...) in rank order

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # sum over ranks of d(loss_r)/d(gathered)
        rows = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * rows : (dist.get_rank() + 1) * rows]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(b, ...) on each of N ranks -> (N·b, ...) in rank order; the identity on one process.

    Gradients: rank r computes the loss L_r of its own queries against the gathered batch. The
    backward all-reduces (sums) the gradient w.r.t. the gathered tensor and returns this rank's
    slice, so rank r receives d(L_1 + ... + L_N)/d(its rows). DDP then averages parameter
    gradients over ranks, restoring the 1/N: the result is the gradient of the mean loss over
    all N·b queries, which is what one process computes on the whole batch.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _AllGatherWithGrad.apply(x)


# ---------------------------------------------------------------- gradient cache


@dataclass
class RngState:
    """The RNG state of every device a micro-batch touches, so its replay draws the same dropout."""

    cpu: torch.Tensor
    cuda: torch.Tensor | None = None
    cuda_device: torch.device | None = None


def capture_rng_state(device: torch.device) -> RngState:
    if device.type == "cuda":
        return RngState(torch.get_rng_state(), torch.cuda.get_rng_state(device), device)
    return RngState(torch.get_rng_state())


@contextlib.contextmanager
def replayed_rng(state: RngState):
    """Run the block from `state`, then put every RNG back as it was (the replay consumes nothing)."""
    devices = [state.cuda_device] if state.cuda is not None else []
    with torch.random.fork_rng(devices=devices, device_type="cuda"):
        torch.set_rng_state(state.cpu)
        if state.cuda is not None:
            torch.cuda.set_rng_state(state.cuda, state.cuda_device)
        yield


def plan_micro_batches(lengths: list[int], size: int) -> list[torch.Tensor]:
    """Row indices, longest texts first, cut into micro-batches: each pads only to its own longest."""
    order = torch.from_numpy(np.argsort(-np.asarray(lengths), kind="stable"))
    return list(order.split(size))


def _padded(encoder: Encoder, token_ids: list[list[int]], rows: torch.Tensor, device: torch.device) -> dict:
    batch = encoder.pad([token_ids[i] for i in rows.tolist()])
    return {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}


def embed_without_grad(model, encoder: Encoder, token_ids: list[list[int]], chunks: list[torch.Tensor],
                       device: torch.device) -> tuple[torch.Tensor, list[RngState]]:
    """Step 1: (R, D) float32 embeddings of all R texts, in input order, and each chunk's RNG state."""
    reps = torch.empty(len(token_ids), encoder.dim, device=device)
    states = []
    with torch.no_grad():
        for rows in chunks:
            states.append(capture_rng_state(device))
            reps[rows.to(device, non_blocking=True)] = model(**_padded(encoder, token_ids, rows, device)).float()
    return reps, states


def replay_and_backward(model, encoder: Encoder, accelerator: Accelerator, token_ids: list[list[int]],
                        chunks: list[torch.Tensor], states: list[RngState], rep_grads: torch.Tensor,
                        device: torch.device) -> None:
    """Step 3, accumulating into .grad: each chunk re-embedded with grad under its saved RNG state,
    its cached gradient backpropagated. Under DDP, gradients are all-reduced only in the last
    chunk's backward: no_sync covers the forward and the backward of every other chunk."""
    for i, (rows, state) in enumerate(zip(chunks, states)):
        sync = contextlib.nullcontext() if i == len(chunks) - 1 else accelerator.no_sync(model)
        with sync, replayed_rng(state):
            reps = model(**_padded(encoder, token_ids, rows, device)).float()  # (r, D)
            accelerator.backward(reps, gradient=rep_grads[rows.to(device, non_blocking=True)])


@dataclass
class StepBatch:
    """One process's share of a global batch, as token ids, and what the loss needs of the whole."""

    token_ids: list[list[int]]  # b anchors, b positives, b·k negatives (an empty slot: the empty text)
    share: int  # b
    labels: torch.Tensor  # (b,) rows of this share's positives among the G gathered positives
    known: torch.Tensor  # (G, G·(1+k)) bool: candidates known relevant to row g's question, or empty slots


def make_step_batch(table: TrainTable, tokens: dict[str, list[list[int]]], global_rows: np.ndarray,
                    rank: int, world_size: int) -> StepBatch:
    """Every process knows the whole table and global batch, so the mask of the gathered layout is
    computed locally (no communication): equal to gathering it, and free."""
    share = len(global_rows) // world_size
    rows = global_rows[rank * share : (rank + 1) * share]
    passage = lambda i: tokens["passage"][i] if i >= 0 else tokens["empty"]  # noqa: E731
    token_ids = ([tokens["anchor"][i] for i in table.anchor_ids[rows]]
                 + [tokens["passage"][i] for i in table.positive_ids[rows]]
                 + [passage(i) for i in table.negative_ids[rows].reshape(-1)])
    return StepBatch(token_ids, share, torch.arange(rank * share, (rank + 1) * share),
                     torch.from_numpy(table.known_mask(global_rows)))


def loss_and_rep_grads(reps: torch.Tensor, batch: StepBatch, loss_config: LossConfig, dims: list[int],
                       weights: list[float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step 2: the Matryoshka loss of this share's queries against the gathered batch, and its
    gradient w.r.t. the cached embeddings (R, D). Returns (loss, per-dim losses, gradient)."""
    reps = reps.detach().requires_grad_()
    b, device = batch.share, reps.device
    q, positives, negatives = reps[:b], reps[b : 2 * b], reps[2 * b :]  # (b, D), (b, D), (b·k, D)
    d = torch.cat([all_gather_with_grad(positives), all_gather_with_grad(negatives)])  # (G·(1+k), D)
    q_all = all_gather_with_grad(q) if loss_config.symmetric else None  # (G, D)
    # Host-to-device copies are non_blocking: a blocking one waits for all queued GPU work.
    labels, known = (t.to(device, non_blocking=True) for t in (batch.labels, batch.known))
    per_dim = infonce_per_dim(q, d, dims, loss_config.temperature, labels, known, loss_config.symmetric, q_all)
    loss = matryoshka_infonce(per_dim, weights)
    (grad,) = torch.autograd.grad(loss, reps)
    return loss.detach(), per_dim.detach(), grad


def gradcache_step(model, encoder: Encoder, accelerator: Accelerator, batch: StepBatch, config: Config,
                   dims: list[int], weights: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1-3 for one global batch; leaves the summed gradients in .grad. Returns (loss, per-dim)."""
    device = accelerator.device
    chunks = plan_micro_batches([len(ids) for ids in batch.token_ids], config.train.micro_batch)
    reps, states = embed_without_grad(model, encoder, batch.token_ids, chunks, device)
    loss, per_dim, rep_grads = loss_and_rep_grads(reps, batch, config.loss, dims, weights)
    replay_and_backward(model, encoder, accelerator, batch.token_ids, chunks, states, rep_grads, device)
    return loss, per_dim


# ---------------------------------------------------------------- set-up


def make_accelerator(config: Config) -> Accelerator:
    precision = config.train.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() else "no"  # bf16 measured slower on our CPUs
    # cpu=True on CPU-only machines: without it, Accelerate under torchrun sees no GPU backend and
    # runs every process as a lone non-distributed one (each would train on the whole batch).
    accelerator = Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available())
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if world != accelerator.num_processes:
        raise RuntimeError(f"torch.distributed has {world} processes but Accelerate sees {accelerator.num_processes}")
    return accelerator


def load_encoder(config: Config) -> Encoder:
    encoder = Encoder.from_config(config.model)
    pooler = getattr(encoder.transformer, "pooler", None)
    if isinstance(pooler, torch.nn.Module):  # BERT's pooler is never used: DDP must not wait for its grads
        pooler.requires_grad_(False)
    if config.train.gradient_checkpointing:
        encoder.transformer.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return encoder


def resolve_dims(config: Config, full: int) -> tuple[list[int], list[float], list[int]]:
    """(loss dims, loss weights, eval dims), checked against the model's embedding size."""
    dims = config.loss.dims or default_dims(full)
    for key, values in (("loss.dims", dims), ("eval.dims", config.eval.dims)):
        bad = [d for d in values if not 0 < d <= full]
        if bad:
            raise ConfigError(f"{key}: {bad} outside 1..{full}, the model's embedding size")
    weights = config.loss.weights or [1.0] * len(dims)
    eval_dims = config.eval.dims or dims
    select_dim = config.eval.select.partition(":")[2]
    if select_dim.isdecimal() and int(select_dim) not in eval_dims:
        raise ConfigError(f"eval.select: dim {select_dim} is not among the eval dims {eval_dims}")
    return dims, weights, eval_dims


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on weight matrices only: never on biases or LayerNorm."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            exempt = name == "bias" or isinstance(module, torch.nn.LayerNorm) or "norm" in type(module).__name__.lower()
            (no_decay if exempt else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr)
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.adam_betas), eps=config.adam_eps)


def tokenize_table(encoder: Encoder, table: TrainTable) -> dict[str, list[list[int]]]:
    """Every distinct text tokenized once, with its prompt."""
    return {"anchor": encoder.tokenize(table.anchor_texts, encoder.spec.query_prompt),
            "passage": encoder.tokenize(table.passage_texts, encoder.spec.document_prompt),
            "empty": encoder.tokenize([""])[0] or [encoder.tokenizer.pad_token_id or 0]}  # an empty slot: masked, no gradient


def library_versions() -> dict[str, str]:
    libs = ("torch", "transformers", "accelerate", "numpy", "faiss-cpu", "faiss-gpu", "datasets")
    found = {}
    for lib in libs:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[lib] = importlib.metadata.version(lib)
    return {"python": sys.version.split()[0], **found}


# ---------------------------------------------------------------- training data and hard negatives


def load_table(config: Config, encoder: Encoder, accelerator: Accelerator, out: Path, epoch: int = 0) -> TrainTable:
    """The training rows as a table, with the passages known relevant to each question (the whole
    table's and the qrels'), and, when data.hard_negatives.k > 0, the negatives mined for each
    question appended to its rows' own. Mining at epoch 0 may reuse a complete earlier file."""
    pairs = load_pairs(config.data.train, config.data.train_split)
    relevant = known_relevant(pairs)
    if config.data.qrels:  # read once, merged into the table's; matched by text, so say how many matched
        judged = known_relevant(PairsData([], [], [], ""), config.data.qrels, config.data.qrels_split)
        for question, texts in judged.items():
            relevant.setdefault(question, set()).update(texts)
        if epoch == 0:
            asked = set(pairs.anchors)
            logger.info("data.qrels: %d of %d training questions are judged in %s", len(asked & set(judged)),
                        len(asked), Path(config.data.qrels) / "qrels" / f"{config.data.qrels_split}.tsv")
    if config.data.hard_negatives.k:
        pairs = with_mined_negatives(pairs, relevant, config, encoder, accelerator, out, epoch)
    return index_texts(pairs, relevant)


def with_mined_negatives(pairs: PairsData, relevant: dict[str, set[str]], config: Config, encoder: Encoder,
                         accelerator: Accelerator, out: Path, epoch: int) -> PairsData:
    """Mine on every process (encoding is sharded; the main one searches and writes), then read the
    triplets back on all. A refresh (epoch > 0) mines with the model being trained, as it is now."""
    hn = config.data.hard_negatives
    miner, identity = encoder, {"model": asdict(config.model)}
    if hn.model and epoch == 0:  # another model, read from its own files
        miner = Encoder.from_config(ModelConfig(hn.model, trust_remote_code=config.model.trust_remote_code))
        miner, identity = miner.to(accelerator.device), {"model": hn.model}
    # The weights as they are (a model rebuilt in place, or trained for `epoch` epochs): a file is
    # reused only when mined with the very same weights.
    identity["weights"] = weights_digest(miner)
    directory = out / "hard_negatives" / (f"epoch{epoch}" if epoch else "start")
    report = mine(miner, pairs, relevant, hn, directory, identity, show_progress=accelerator.is_main_process)
    if report is not None:
        logger.info("%s", report.format_report())
    accelerator.wait_for_everyone()
    mined = load_pairs(directory / "triplets.jsonl")
    if mined.anchors != pairs.anchors or mined.positives != pairs.positives:
        raise DataError(f"{directory / 'triplets.jsonl'}: rows do not match {config.data.train}")
    negatives = [own + [text for text in new if text not in own] for own, new in zip(pairs.negatives, mined.negatives)]
    return PairsData(pairs.anchors, pairs.positives, negatives, pairs.source)


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------- evaluate, select, save


def run_eval(encoder: Encoder, data: IRDataset | None, dims: list[int], config: Config,
             accelerator: Accelerator, label: str) -> dict[int, DimResult] | None:
    """Results per dim: every process encodes a shard, the main process searches and prints."""
    if data is None:
        return None
    results = evaluate(encoder, data, dims, config.eval.batch_size, show_progress=accelerator.is_main_process)
    accelerator.wait_for_everyone()
    if results is None:  # not the main process
        return None
    print(f"\n{label} ({data.name}):\n{format_table(metrics_of(results))}", flush=True)
    return results


def metrics_of(results: dict[int, DimResult] | None) -> dict[int, dict[str, float]] | None:
    return None if results is None else {dim: result.metrics for dim, result in results.items()}


def selection_score(metrics: dict[int, dict[str, float]], select: str) -> float:
    """eval.select as a number, higher is better: METRIC:DIM, METRIC:mean over the dims."""
    metric, _, dim = select.partition(":")
    if dim == "mean":
        return float(np.mean([by_metric[metric] for by_metric in metrics.values()]))
    return metrics[int(dim)][metric]


def eval_due(step: int, total: int, steps_per_epoch: int, every: str) -> bool:
    """Whether optimiser step `step` (1-based) ends with an evaluation: every N steps or epoch, and the last."""
    if step == total:
        return True
    if every == "epoch":
        return step % steps_per_epoch == 0
    return every.isdecimal() and step % int(every) == 0


class Checkpoints:
    """The evaluations made during training (the curve) and the best state so far by eval.select,
    kept on the CPU; `last` keeps whatever was evaluated last."""

    def __init__(self, select: str):
        self.select, self.curve, self.best_step, self.best_score, self.best_state = select, [], None, None, None
        self.best_results: dict[int, DimResult] | None = None

    def observe(self, step: int, epoch: int, results: dict[int, DimResult], model: torch.nn.Module) -> None:
        metrics = metrics_of(results)
        score = None if self.select == "last" else selection_score(metrics, self.select)
        self.curve.append({"step": step, "epoch": epoch, "score": score,
                           "metrics": {str(d): m for d, m in metrics.items()}})
        if self.best_score is None or score is None or score > self.best_score:
            self.best_step, self.best_score, self.best_results = step, score, results
            self.best_state = {name: t.detach().to("cpu", copy=True) for name, t in model.state_dict().items()}


def comparison_markdown(before: dict[int, DimResult], after: dict[int, DimResult]) -> list[str]:
    """Before -> after per dim with the paired 95% bootstrap interval and randomization p-value."""
    common = [dim for dim in after if dim in before]
    comparison = compare_per_query({d: before[d].per_query for d in common}, {d: after[d].per_query for d in common},
                                   metrics=("ndcg@10",))
    return ["## Change, paired over the same questions", "", format_comparison(comparison), ""]


def curve_markdown(checkpoints: Checkpoints) -> list[str]:
    if len(checkpoints.curve) < 2:
        return []
    dims = list(checkpoints.curve[0]["metrics"])
    lines = ["## NDCG@10 during training", "", "| step | epoch | " + " | ".join(dims) + " | |",
             "|---:|---:|" + "---:|" * len(dims) + "---|"]
    for point in checkpoints.curve:
        chosen = "kept" if point["step"] == checkpoints.best_step else ""
        lines.append(f"| {point['step']} | {point['epoch']} | "
                     + " | ".join(f"{point['metrics'][d]['ndcg@10']:.4f}" for d in dims) + f" | {chosen} |")
    return lines + ["", f"The model kept is step {checkpoints.best_step}'s (eval.select {checkpoints.select}).", ""]


def save_results(out: Path, config: Config, before, after, checkpoints: Checkpoints | None, steps: int,
                 seconds: float, query_ids: list[str]) -> dict:
    """The before/after tables, the curve and the step kept, as results.json and results.md."""
    results = {"before": metrics_of(before), "after": metrics_of(after), "steps": steps, "train_seconds": seconds,
               "selected_step": checkpoints.best_step if checkpoints else steps,
               "select": config.eval.select, "curve": checkpoints.curve if checkpoints else [],
               "model": config.model.name_or_path, "eval": f"{config.data.eval} ({config.data.eval_split})",
               "versions": library_versions()}
    lines = [f"# {config.model.name_or_path} fine-tuned: {steps} steps, {seconds:.0f} s", ""]
    for label, metrics in (("Before", results["before"]), ("After", results["after"])):
        if metrics:
            lines += [f"## {label}", "", format_table(metrics), ""]
    if before and after:
        lines += comparison_markdown(before, after)
    if checkpoints:
        lines += curve_markdown(checkpoints)
    write_atomic(out / "results.json", [json.dumps(results, indent=2) + "\n"])
    if after:  # each question's metrics, for paired comparisons between runs (bench/quality.py)
        per_query = {label: None if res is None else {str(d): {m: r.per_query[m].tolist() for m in METRICS}
                                                      for d, r in res.items()}
                     for label, res in (("before", before), ("after", after))}
        write_atomic(out / "per_query.json", [json.dumps({"query_ids": query_ids, **per_query}) + "\n"])
    write_atomic(out / "results.md", ["\n".join(lines) + "\n"])
    return results


def save_model(out: Path, encoder: Encoder, config: Config) -> None:
    """The model in sentence-transformers format (written atomically), with the resolved config and
    the library versions inside it."""
    config_text = yaml.safe_dump({**asdict(config), "versions": library_versions()}, sort_keys=False)
    encoder.save(out / "model", extra_files={"train_config.yaml": config_text})


# ---------------------------------------------------------------- the loop


def check_step(stats: torch.Tensor, accelerator: Accelerator, step: int) -> list[float]:
    """Gather [loss, grad norm, per-dim losses] from every rank (the step's one host sync); stop
    every rank, before the optimiser step, if any of them is not finite."""
    gathered = accelerator.gather(stats[None]).cpu()  # (N, 2 + dims)
    bad = [rank for rank, row in enumerate(gathered) if not torch.isfinite(row).all()]
    if bad:
        raise FloatingPointError(f"non-finite loss or gradient at step {step} on rank(s) {bad}: {gathered[bad[0]].tolist()}")
    return gathered.mean(0).tolist()


def train_loop(model, encoder: Encoder, optimizer, accelerator: Accelerator, sampler: SpreadBatchSampler,
               table: TrainTable, config: Config, dims: list[int], weights: list[float], out: Path,
               eval_data: IRDataset | None, eval_dims: list[int]) -> tuple[int, Checkpoints | None]:
    """Train for train.epochs; evaluate as eval.every says and keep the checkpoints' curve and best
    state (None without eval data). Returns (steps, checkpoints)."""
    tokens = tokenize_table(encoder, table)
    total = len(sampler) * config.train.epochs
    bar = tqdm(total=total, desc="train", disable=not accelerator.is_main_process)
    log = open(out / "train_log.jsonl", "w", encoding="utf-8", buffering=1) if accelerator.is_main_process else None
    checkpoints = Checkpoints(config.eval.select) if eval_data is not None and config.eval.after else None
    params = [p for p in model.parameters() if p.requires_grad]
    refresh = config.data.hard_negatives.refresh if config.data.hard_negatives.k else 0
    step = 0
    model.train()
    for epoch in range(config.train.epochs):
        if refresh and epoch and epoch % refresh == 0:  # re-mine with the model as it is now
            sampler.table = table = load_table(config, encoder, accelerator, out, epoch)
            tokens = tokenize_table(encoder, table)
        for global_rows in sampler:
            start = time.perf_counter()
            batch = make_step_batch(table, tokens, global_rows, accelerator.process_index, accelerator.num_processes)
            lr = lr_at(step, total, config.train.lr, config.train.warmup_ratio, config.train.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, per_dim = gradcache_step(model, encoder, accelerator, batch, config, dims, weights)
            norm = accelerator.clip_grad_norm_(params, config.train.max_grad_norm or float("inf"))
            stats = check_step(torch.cat([loss[None], norm.float()[None].to(loss.device), per_dim]), accelerator, step)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            pairs_per_s = len(global_rows) / (time.perf_counter() - start)
            record = {"step": step + 1, "epoch": epoch, "lr": lr, "loss": stats[0], "grad_norm": stats[1],
                      "loss_by_dim": dict(zip(map(str, dims), stats[2:])), "pairs_per_s": pairs_per_s}
            if log:
                log.write(json.dumps(record) + "\n")
            bar.set_postfix(loss=f"{stats[0]:.4f}", lr=f"{lr:.2e}", pairs_s=f"{pairs_per_s:.1f}")
            bar.update()
            step += 1
            if checkpoints is not None and eval_due(step, total, len(sampler), config.eval.every):
                label = f"After (step {step})" if step == total else f"Step {step}"
                results = run_eval(encoder, eval_data, eval_dims, config, accelerator, label)
                if results is not None:
                    checkpoints.observe(step, epoch + 1, results, encoder)
    bar.close()
    if log:
        log.close()
    return step, checkpoints


# ---------------------------------------------------------------- the run


def prepare_output(config: Config) -> Path:
    """The run directory; refuses to clobber a finished model unless output.overwrite."""
    out = Path(config.output.dir)
    if (out / "model").exists() and not config.output.overwrite:
        raise ConfigError(f"output.dir: {out / 'model'} exists; set output.overwrite true or choose another dir")
    return out


def run(config: Config, accelerator: Accelerator) -> dict:
    """Load, evaluate before, train (evaluating as eval.every says), keep the selected checkpoint,
    save. Returns what results.json holds (on the main process; the others get the step count)."""
    if config.train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    set_seed(config.train.seed, device_specific=True)  # dropout differs per rank; data order does not use it
    out = prepare_output(config)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    eval_data = load_ir(config.data.eval, config.data.eval_split) if config.data.eval else None
    encoder = load_encoder(config).to(accelerator.device)
    dims, weights, eval_dims = resolve_dims(config, encoder.dim)
    table = load_table(config, encoder, accelerator, out)
    try:
        sampler = SpreadBatchSampler(table, config.train.global_batch, config.train.seed, config.train.drop_last,
                                     accelerator.num_processes)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    steps = len(sampler) * config.train.epochs
    if accelerator.is_main_process:
        logger.info("%d rows, %d processes: %d steps per epoch of %d pairs (%d per process, micro-batch %d), %d steps",
                    len(table), accelerator.num_processes, len(sampler), config.train.global_batch,
                    config.train.global_batch // accelerator.num_processes, config.train.micro_batch, steps)
    before = run_eval(encoder, eval_data, eval_dims, config, accelerator, "Before") if config.eval.before else None
    model, optimizer = accelerator.prepare(encoder, make_optimizer(encoder, config.train))
    start = time.perf_counter()
    done, checkpoints = train_loop(model, encoder, optimizer, accelerator, sampler, table, config, dims, weights,
                                   out, eval_data, eval_dims)
    seconds = time.perf_counter() - start
    after = None
    if checkpoints is not None and checkpoints.best_state is not None:  # the main process selects and saves
        encoder.load_state_dict(checkpoints.best_state)
        after = checkpoints.best_results
    results = {"steps": done, "train_seconds": seconds}
    if accelerator.is_main_process:
        save_model(out, encoder, config)
        results = save_results(out, config, before, after, checkpoints, done, seconds,
                               eval_data.query_ids if eval_data else [])
        kept = f", step {checkpoints.best_step} kept" if checkpoints else ""
        print(f"\nsaved {out / 'model'} ({done} steps in {seconds:.0f} s{kept})", flush=True)
    accelerator.wait_for_everyone()
    return results


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = load_config(argv)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    accelerator = make_accelerator(config)
    try:
        return run(config, accelerator)
    except (ConfigError, DataError) as err:
        sys.exit(f"error: {err}")
    finally:
        accelerator.end_training()


if __name__ == "__main__":
    main()
