"""Processes of one job under torchrun: whether there are several, joining their group, and
making them agree. Used by evaluation, mining and training alike."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a process group of more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Processes in the running group; 1 without one."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return not is_distributed() or dist.get_rank() == 0


def start_processes() -> torch.device:
    """Under torchrun (WORLD_SIZE > 1) join the process group; the device this process encodes on."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before the process group: NCCL binds each rank to its own GPU
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return device


def stop_processes() -> None:
    """Leave the process group, when one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main_process_decides(flag: bool, device: torch.device) -> bool:
    """Process 0's `flag` on every process: when only it reads a file (other nodes may not share
    the disk), all must still take the same branch, or a collective call would wait forever."""
    if not is_distributed():
        return flag
    box = torch.tensor([int(flag)], device=device)
    dist.broadcast(box, src=0)
    return bool(box.item())
