"""Gradient caching (GradCache, Gao et al. 2021): the contrastive batch is limited by nothing but
time. For one global batch:
  1. embed every micro-batch without grad, saving each one's RNG state;
  2. the Matryoshka loss on the cached embeddings, and its gradient w.r.t. them;
  3. replay each micro-batch with grad under its saved RNG state and backpropagate the cached
     gradient into the model (DDP synchronises only during the last replay).
Accelerate's gradient accumulation stays at 1 (distributed.make_accelerator): this is ours.

Where the whole share's activations fit in memory, the cache's pass without grad is a forward the
step need not make: `direct_step_accumulating` (train.gradient_cache false) embeds each micro-batch
once, with grad, keeps every graph and backpropagates the loss once. Same gradient, same RNG draws.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from accelerate import Accelerator

from data import TrainTable
from losses import LossSpec, infonce_per_dim, matryoshka_infonce
from model import Encoder
from retrieval.lexical import LexicalPrior
from training.distributed import all_gather_with_grad
from training.teacher import Teacher, teacher_tensor


@dataclass
class RngState:
    """The RNG state of every device a micro-batch touches, so its replay draws the same dropout.

    Ours rather than torch.utils.checkpoint's get_device_states, which finds the devices from
    tensor arguments: a chunk's inputs are not on the device yet when its state is captured."""

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


@dataclass
class StepBatch:
    """One process's share of a global batch, as token ids, and what the loss needs of the whole."""

    token_ids: list[list[int]]  # b anchors, b positives, b·k negatives (an empty slot: the empty text)
    share: int  # b
    labels: torch.Tensor  # (b,) rows of this share's positives among the G gathered positives
    known: torch.Tensor  # (G, G·(1+k)) bool: candidates known relevant to row g's question, or empty slots
    lexical: torch.Tensor | None = None  # (G, G·(1+k)) float32 BM25 prior (loss.lexical_scale > 0), else None
    teacher: torch.Tensor | None = None  # (G, G·(1+k)) float32 fused teacher scores (loss.distill > 0), else None


def make_step_batch(
    table: TrainTable,
    tokens: dict[str, list[list[int]]],
    global_rows: np.ndarray,
    rank: int,
    world_size: int,
    prior: LexicalPrior | None = None,
    teacher: Teacher | None = None,
) -> StepBatch:
    """Every process knows the whole table and global batch, so the mask of the gathered layout (and
    the lexical prior, with `prior`, and the teacher's scores, with `teacher`) is computed locally
    (no communication): equal to gathering it, and free."""
    share = len(global_rows) // world_size
    rows = global_rows[rank * share : (rank + 1) * share]
    passage = lambda i: tokens["passage"][i] if i >= 0 else tokens["empty"]  # noqa: E731
    token_ids = (
        [tokens["anchor"][i] for i in table.anchor_ids[rows]]
        + [tokens["passage"][i] for i in table.positive_ids[rows]]
        + [passage(i) for i in table.negative_ids[rows].reshape(-1)]
    )
    lexical = None
    if prior is not None:
        candidates = np.concatenate([table.positive_ids[global_rows], table.negative_ids[global_rows].reshape(-1)])
        lexical = torch.from_numpy(prior.scores(table.anchor_ids[global_rows], candidates))  # (G, M)
    return StepBatch(
        token_ids,
        share,
        torch.arange(rank * share, (rank + 1) * share),
        torch.from_numpy(table.known_mask(global_rows)),
        lexical,
        teacher_tensor(teacher, table, global_rows),
    )


@dataclass
class Embedder:
    """What a step embeds with: the model as Accelerate prepared it (DDP on several processes), the
    encoder under it (padding, embedding size) and the accelerator (device, backward, no_sync)."""

    model: torch.nn.Module
    encoder: Encoder
    accelerator: Accelerator

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def embed(self, token_ids: list[list[int]], rows: torch.Tensor) -> torch.Tensor:
        """(r, D) float32 embeddings of the texts token_ids[rows], padded to their longest."""
        batch = self.encoder.pad([token_ids[i] for i in rows.tolist()])
        return self.model(**{name: t.to(self.device, non_blocking=True) for name, t in batch.items()}).float()


def embed_without_grad(
    embedder: Embedder, token_ids: list[list[int]], chunks: list[torch.Tensor]
) -> tuple[torch.Tensor, list[RngState]]:
    """Step 1: (R, D) float32 embeddings of all R texts, in input order, and each chunk's RNG state."""
    device = embedder.device
    reps = torch.empty(len(token_ids), embedder.encoder.dim, device=device)
    states = []
    with torch.no_grad():
        for rows in chunks:
            states.append(capture_rng_state(device))
            reps[rows.to(device, non_blocking=True)] = embedder.embed(token_ids, rows)
    return reps, states


def batch_loss(reps: torch.Tensor, batch: StepBatch, loss: LossSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The Matryoshka loss of this share's queries against the gathered batch, differentiable in
    `reps` (R, D): (loss, per-dim losses)."""
    b, device = batch.share, reps.device
    q, positives, negatives = reps[:b], reps[b : 2 * b], reps[2 * b :]  # (b, D), (b, D), (b·k, D)
    d = torch.cat([all_gather_with_grad(positives), all_gather_with_grad(negatives)])  # (G·(1+k), D)
    q_all = all_gather_with_grad(q) if loss.symmetric or loss.gte else None  # (G, D)
    # Host-to-device copies are non_blocking: a blocking one waits for all queued GPU work.
    labels, known = (t.to(device, non_blocking=True) for t in (batch.labels, batch.known))
    lexical, teacher = (None if t is None else t.to(device, non_blocking=True) for t in (batch.lexical, batch.teacher))
    per_dim = infonce_per_dim(q, d, loss, labels, known, q_all, lexical, teacher)
    return matryoshka_infonce(per_dim, loss.dim_weights()), per_dim


def loss_and_rep_grads(
    reps: torch.Tensor, batch: StepBatch, loss: LossSpec
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step 2: the loss on the cached embeddings (R, D) and its gradient w.r.t. them. Returns
    (loss, per-dim losses, gradient)."""
    reps = reps.detach().requires_grad_()
    total, per_dim = batch_loss(reps, batch, loss)
    (grad,) = torch.autograd.grad(total, reps)
    return total.detach(), per_dim.detach(), grad


def replay_and_backward(
    embedder: Embedder,
    token_ids: list[list[int]],
    chunks: list[torch.Tensor],
    states: list[RngState],
    rep_grads: torch.Tensor,
    on_replay: Callable[[int, int], None] | None = None,
) -> None:
    """Step 3, accumulating into .grad: each chunk re-embedded with grad under its saved RNG state,
    its cached gradient backpropagated. Under DDP, gradients are all-reduced only in the last
    chunk's backward: no_sync covers the forward and the backward of every other chunk.
    `on_replay(i, n)` is called as chunk i of n starts (a hook for tests)."""
    accelerator = embedder.accelerator
    for i, (rows, state) in enumerate(zip(chunks, states)):
        if on_replay is not None:
            on_replay(i, len(chunks))
        sync = contextlib.nullcontext() if i == len(chunks) - 1 else accelerator.no_sync(embedder.model)
        with sync, replayed_rng(state):
            reps = embedder.embed(token_ids, rows)  # (r, D)
            accelerator.backward(reps, gradient=rep_grads[rows.to(embedder.device, non_blocking=True)])


def gradcache_step_accumulating(
    embedder: Embedder,
    batch: StepBatch,
    loss: LossSpec,
    micro_batch: int,
    on_replay: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1-3 for one global batch; adds the batch's gradients into .grad. Returns (loss, per-dim)."""
    chunks = plan_micro_batches([len(ids) for ids in batch.token_ids], micro_batch)
    reps, states = embed_without_grad(embedder, batch.token_ids, chunks)
    total, per_dim, rep_grads = loss_and_rep_grads(reps, batch, loss)
    replay_and_backward(embedder, batch.token_ids, chunks, states, rep_grads, on_replay)
    return total, per_dim


def direct_step_accumulating(
    embedder: Embedder, batch: StepBatch, loss: LossSpec, micro_batch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One global batch without the cache (train.gradient_cache false); adds its gradients into
    .grad. Returns (loss, per-dim).

    The same length-sorted micro-batches, each embedded once with grad and its graph kept, then one
    backward through the loss: no pass without grad (a forward in every four units of a step's
    compute, a backward costing about two), for the activations of the whole share held at once.
    Dropout draws what the cache's first pass draws, in the same order, so the two give the same
    gradient. Under DDP every forward but the last runs under no_sync: the last one arms the
    reducer, and the single backward all-reduces each bucket once, over every micro-batch's
    contribution (autograd sums a parameter's gradient over the graphs before its hook fires).
    That holds for non-reentrant activation checkpointing only (model.py asks for it): a reentrant
    checkpoint runs a nested backward per micro-batch, and DDP would see each parameter ready once
    per micro-batch ("mark a variable ready only once")."""
    accelerator, device = embedder.accelerator, embedder.device
    chunks = plan_micro_batches([len(ids) for ids in batch.token_ids], micro_batch)
    parts = []
    for i, rows in enumerate(chunks):
        sync = contextlib.nullcontext() if i == len(chunks) - 1 else accelerator.no_sync(embedder.model)
        with sync:
            parts.append(embedder.embed(batch.token_ids, rows))
    reps = torch.cat(parts)[torch.argsort(torch.cat(chunks)).to(device, non_blocking=True)]  # input order
    total, per_dim = batch_loss(reps, batch, loss)
    accelerator.backward(total)
    return total.detach(), per_dim.detach()
