"""DDP on CPU: 2 gloo processes train like 1 process with the same global batch (float tolerance)."""

from __future__ import annotations

import json
import socket
from dataclasses import asdict
from pathlib import Path

import torch
import torch.multiprocessing as mp
from ddp_worker import run_rank

from pretrain.data import TokenFolder, WindowLoader
from pretrain.distributed import Dist
from pretrain.model import ModelSpec, build_model
from pretrain.trainer import TrainConfig, train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one(tmp_path: Path, tokenized_dir: Path) -> None:
    cfg = TrainConfig(
        steps=6,
        batch_size=8,
        seq_len=32,
        lr=1e-2,
        warmup_steps=2,
        checkpoint_every=0,
        log_every=1,
        grad_accum=2,
    )
    tokens = tokenized_dir / "tokens"
    args = (2, _free_port(), str(tokens), str(tmp_path / "ddp"), json.dumps(asdict(cfg)))
    mp.start_processes(run_rank, args=args, nprocs=2, join=True, start_method="fork")  # fork: no re-import

    single_cfg = TrainConfig(**{**asdict(cfg), "grad_accum": 1})
    model = build_model(ModelSpec.tiny(), 512, seed=1)
    loader = WindowLoader(TokenFolder(tokens), 32, 8, "document_aligned", 1, seed=1)
    single = train(model, loader, single_cfg, tmp_path / "one", dist=Dist())

    ddp = json.loads((tmp_path / "ddp/result.json").read_text())
    assert ddp["world_size"] == 2 and ddp["steps"] == 6 and ddp["tokens_seen"] == single["tokens_seen"]
    logs = [
        [json.loads(x)["loss"] for x in (tmp_path / d / "log.jsonl").read_text().splitlines()]
        for d in ("ddp", "one")
    ]
    assert len(logs[0]) == 6
    assert torch.allclose(torch.tensor(logs[0]), torch.tensor(logs[1]), rtol=1e-5, atol=1e-5)
    assert logs[0][-1] < logs[0][0] - 0.3  # it actually trained
    ddp_weights = torch.load(next((tmp_path / "ddp/checkpoints").glob("*.pt")), weights_only=True)["model"]
    for name, tensor in model.state_dict().items():
        assert torch.allclose(ddp_weights[name], tensor, rtol=1e-4, atol=1e-5), name
