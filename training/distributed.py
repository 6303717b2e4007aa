"""Running over processes: the accelerator, the differentiable all-gather, and the step's one host
sync (gathered statistics that stop every rank on a non-finite loss or gradient)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import GradientAccumulationPlugin

from common.processes import is_distributed, world_size
from model import resolve_bf16


def resolve_precision(mixed_precision: str) -> str:
    """train.mixed_precision as a run on this machine trains with: auto is bf16 on CUDA, else fp32
    ("no"; bf16 measured slower on our CPUs). The rule is model.resolve_bf16's, which encoding follows."""
    return "bf16" if resolve_bf16(mixed_precision) else "no"


def make_accelerator(
    mixed_precision: str, report_to: list[str] | None = None, project_dir: str | None = None, **kwargs
) -> Accelerator:
    """The accelerator for a run. `mixed_precision` auto is bf16 on CUDA and fp32 elsewhere.

    Gradient accumulation is pinned to 1 with an explicit plugin: `accelerator.backward` divides
    by the accumulation steps, which Accelerate otherwise reads from the environment
    (ACCELERATE_GRADIENT_ACCUMULATION_STEPS), so a launcher that sets it would silently scale
    every gradient. Gradient caching is our accumulation.
    """
    precision = resolve_precision(mixed_precision)
    # cpu=True on CPU-only machines: without it, Accelerate under torchrun sees no GPU backend and
    # runs every process as a lone non-distributed one (each would train on the whole batch).
    accelerator = Accelerator(
        mixed_precision=precision,
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=1),
        log_with=report_to or None,
        project_dir=project_dir,
        **kwargs,
    )
    world = world_size()
    if world != accelerator.num_processes:
        raise RuntimeError(f"torch.distributed has {world} processes but Accelerate sees {accelerator.num_processes}")
    return accelerator


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

    Ours rather than torch.distributed.nn.functional.all_gather, which computes the same: importing
    that module binds the world group in its defaults, which kept a gloo thread alive past
    destroy_process_group and aborted about 1 run in 40 at interpreter exit. An empty tensor is
    returned as it is (gloo has aborted on zero-size all_gather, pytorch#85234): every rank knows
    the table, so all ranks agree when a batch has no negatives.
    """
    if not is_distributed():
        return x
    if x.numel() == 0:
        return x.new_empty((x.shape[0] * dist.get_world_size(), *x.shape[1:]))
    return _AllGatherWithGrad.apply(x)


@dataclass
class StepStats:
    """A step's statistics, averaged over the processes."""

    loss: float
    grad_norm: float
    loss_by_dim: list[float]  # one per Matryoshka dim, in loss.dims order


def gathered_step_stats(
    loss: torch.Tensor, grad_norm: torch.Tensor, per_dim: torch.Tensor, accelerator: Accelerator, step: int
) -> StepStats:
    """Gather the loss, gradient norm and per-dim losses from every rank in one tensor (the step's
    one host sync); stop every rank, before the optimiser step, if any of them is not finite."""
    stats = torch.cat([loss.reshape(1), grad_norm.float().reshape(1).to(loss.device), per_dim])  # (2 + dims,)
    gathered = accelerator.gather(stats[None]).cpu()  # (N, 2 + dims)
    bad = [rank for rank, row in enumerate(gathered) if not torch.isfinite(row).all()]
    if bad:
        raise FloatingPointError(
            f"non-finite loss or gradient at step {step} on rank(s) {bad}: {gathered[bad[0]].tolist()}"
        )
    mean = gathered.mean(0).tolist()
    return StepStats(loss=mean[0], grad_norm=mean[1], loss_by_dim=mean[2:])
