"""Process-group setup for ``torchrun`` (DDP): nccl on GPU, gloo on CPU. A plain
``python``/``pipeline`` run is world size 1 and never touches torch.distributed."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


DEVICES = ("auto", "cpu", "cuda")


def check_device(preference: str) -> str:
    """``preference`` if it is one of :data:`DEVICES` (for config ``__post_init__``), else ValueError."""
    if preference not in DEVICES:
        raise ValueError(f"device must be auto, cpu or cuda, got {preference!r}")
    return preference


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """auto: cuda:local_rank when a GPU is visible, else cpu; cuda: the same, or an error."""
    check_device(preference)
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for but no GPU is visible")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def setup(preference: str = "auto") -> DistContext:
    """Join the process group that torchrun describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(preference, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistContext(rank=rank, world_size=world, device=device)


def barrier(ctx: DistContext) -> None:
    if ctx.world_size > 1:
        dist.barrier()


def teardown(ctx: DistContext) -> None:
    if ctx.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously): before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
