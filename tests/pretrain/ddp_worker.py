"""A DDP worker for ``test_pretrain_ddp``: one rank of a gloo run (``torch.multiprocessing``, fork)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch


def run_rank(rank: int, world: int, port: int, tokens: str, out: str, cfg_json: str) -> None:
    """Train the tiny model as rank ``rank`` of ``world`` and let rank 0 write ``out`` (log + checkpoint)."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from pretrain.data import TokenFolder, WindowLoader
    from pretrain.distributed import Dist
    from pretrain.model import ModelSpec, build_model
    from pretrain.trainer import TrainConfig, train

    cfg = TrainConfig(**json.loads(cfg_json))
    dist = Dist.from_env("cpu")
    model = build_model(ModelSpec.tiny(), 512, seed=1)
    loader = WindowLoader(
        TokenFolder(Path(tokens)), cfg.seq_len, cfg.batch_size, "document_aligned", 1, seed=1
    )
    try:
        result = train(model, loader, cfg, Path(out), dist=dist)
        if dist.is_main:
            Path(out, "result.json").write_text(
                json.dumps({k: v for k, v in result.items() if k != "config"})
            )
    finally:
        torch.distributed.destroy_process_group()
