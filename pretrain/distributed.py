"""Data-parallel plumbing for the torch trainer: one ``Dist`` value says who we are and where we compute.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) ``Dist.from_env`` initialises the default process
group: NCCL when CUDA is available, gloo otherwise (so tests can run 2 CPU processes). Every rank reads the
same global batch (``WindowLoader.batch(step)`` is a pure function of the step) and keeps its own rows, so the
data position is still just the step number and no sampler state needs checkpointing. Rank 0 alone writes
logs and checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from core.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Dist:
    """Rank, world size and the device this process computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """True on the rank that writes logs and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when gradients must be averaged across processes."""
        return self.world_size > 1

    @classmethod
    def from_env(cls, device: str = "auto") -> Dist:
        """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (torchrun) and init the process group when needed."""
        if device not in DEVICES:
            raise ConfigError(f"train: device must be one of {', '.join(DEVICES)}; got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("train: device is 'cuda' but torch.cuda.is_available() is False")
        use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        name = f"cuda:{local}" if use_cuda else "cpu"
        if use_cuda:
            torch.cuda.set_device(local)
        if world > 1 and not dist.is_initialized():
            backend = "nccl" if use_cuda else "gloo"
            dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(minutes=30))
        return cls(rank=rank, world_size=world, local_rank=local, device=name)

    def rows(self, global_batch: int) -> slice:
        """The rows of a global batch this rank trains on (contiguous blocks, rank order)."""
        if global_batch % self.world_size:
            raise ConfigError(
                f"train: batch_size {global_batch} must divide by the number of processes {self.world_size}"
            )
        per = global_batch // self.world_size
        return slice(self.rank * per, (self.rank + 1) * per)

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        if self.distributed:
            dist.barrier()

    def any_true(self, flag: bool) -> bool:
        """True when ``flag`` is true on any rank (so every rank stops at the same step)."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())
