"""A stage implementation for the torchrun store test: all ranks all-reduce, rank 0 alone writes."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from core.stage import StageContext


def run(ctx: StageContext) -> dict:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    total = torch.tensor([float(rank + 1)])
    dist.all_reduce(total)
    (ctx.out / f"seen_by_rank{rank}").write_text(str(ctx.out.name))  # where each rank was told to work
    if rank == 0:
        (ctx.out / "data.txt").write_text(f"{total.item():.0f}\n")
    dist.barrier()
    dist.destroy_process_group()
    return {"sum": total.item(), "world": int(os.environ["WORLD_SIZE"])}
