"""One readable CPU/GPU training loop (nanoGPT style): AdamW, warmup + cosine, clipping, checkpoints, resume.

Reads top to bottom: ``TrainConfig`` -> ``lr_at`` (pure) -> ``make_optimizer`` -> checkpoint helpers ->
``train``. The data position is the step number (``WindowLoader.batch(step)`` is a pure function of it), so a
checkpoint holds model + optimizer + RNG state + step, and a resumed run is bit-identical to a straight one.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .data import IGNORE_INDEX, WindowLoader

CHECKPOINT_PREFIX = "step-"
RECENT = 10  # final_loss is the mean of the last RECENT steps


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one run."""

    steps: int
    """Optimizer steps (one global batch each)."""
    batch_size: int = 32
    """Windows per step."""
    seq_len: int = 128
    """Tokens per window (inputs; targets are shifted by one)."""
    lr: float = 3e-3
    """Peak learning rate."""
    warmup_steps: int = 100
    """Linear warmup from lr / warmup_steps to lr."""
    min_lr_ratio: float = 0.1
    """The cosine decays to lr * min_lr_ratio at the last step."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay, on matrices (dim >= 2) only."""
    grad_clip: float = 1.0
    """Max global gradient norm (0 = no clipping)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    checkpoint_every: int = 200
    """Save a resumable checkpoint every this many steps (0 = only at the end)."""
    log_every: int = 10
    """Write a log.jsonl line every this many steps."""


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate at ``step`` (0-based): linear warmup, then cosine decay to ``lr * min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - 1 - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (embeddings, projections) and none on norms and biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=1e-8, foreach=True)


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint with the highest step in ``folder`` (None when there is none)."""
    found = sorted(folder.glob(f"{CHECKPOINT_PREFIX}*.pt")) if folder.is_dir() else []
    return found[-1] if found else None


def save_checkpoint(
    folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any]
) -> Path:
    """Write ``step-<step>.pt`` atomically (tmp + rename), then delete older checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{CHECKPOINT_PREFIX}{state['step']:08d}.pt"
    tmp = path.with_suffix(".tmp")
    payload = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": torch.get_rng_state(),
        **state,
    }
    torch.save(payload, tmp)
    os.replace(tmp, path)
    for old in folder.glob(f"{CHECKPOINT_PREFIX}*.pt"):
        if old != path:
            old.unlink()
    return path


def load_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model, optimizer and RNG from ``path`` (``weights_only=True``); return the other state."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(payload.pop("model"))
    opt.load_state_dict(payload.pop("optimizer"))
    torch.set_rng_state(payload.pop("rng"))
    return payload


def _truncate_log(log_path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from, so the log reads as one run."""
    if log_path.is_file():
        lines = [ln for ln in log_path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        log_path.write_text("".join(ln + "\n" for ln in lines))


def batch_loss(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the targets that are not ``IGNORE_INDEX`` (0 when all are)."""
    logits = model(input_ids=inputs, use_cache=False).logits
    losses = F.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return losses / (targets != IGNORE_INDEX).sum().clamp(min=1)


def train_step(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    clip: float,
) -> float:
    """One optimizer step at ``lr``, gradient norm clipped to ``clip`` when > 0; returns the loss."""
    for group in opt.param_groups:
        group["lr"] = lr
    loss = batch_loss(model, x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss.item()


class IntervalLog:
    """Writes one ``log.jsonl`` line per ``log_every`` steps: mean loss, lr, tokens so far and tokens/s."""

    def __init__(self, path: Path, cfg: TrainConfig, bar: Any) -> None:
        self.file, self.cfg, self.bar = path.open("a"), cfg, bar
        self.window_tokens = cfg.batch_size * cfg.seq_len
        self.loss_sum, self.steps, self.clock = 0.0, 0, time.perf_counter()

    def add(self, step: int, loss: float, lr: float) -> None:
        """Record the loss of the step that just finished (``step`` = steps done so far)."""
        self.loss_sum, self.steps = self.loss_sum + loss, self.steps + 1
        if self.bar is not None:
            self.bar.update(1)
        if step % self.cfg.log_every and step != self.cfg.steps:
            return
        now = time.perf_counter()
        record = {
            "step": step,
            "loss": round(self.loss_sum / self.steps, 6),
            "lr": lr,
            "tokens": step * self.window_tokens,
            "tokens_per_s": round(self.steps * self.window_tokens / max(now - self.clock, 1e-9), 1),
        }
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['loss']:.3f}")
        self.loss_sum, self.steps, self.clock = 0.0, 0, now

    def restart_clock(self) -> None:
        """Exclude time spent outside training (checkpoint I/O) from the next tokens/s."""
        self.clock = time.perf_counter()

    def close(self) -> None:
        """Close the log file and the progress bar."""
        self.file.close()
        if self.bar is not None:
            self.bar.close()


def train(
    model: torch.nn.Module,
    loader: WindowLoader,
    cfg: TrainConfig,
    out: Path,
    progress: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` for ``cfg.steps`` batches of ``loader``, resuming from ``out/checkpoints`` if present.

    Writes ``out/log.jsonl`` (see ``IntervalLog``) and checkpoints; returns the run's totals.
    """
    opt = make_optimizer(model, cfg)
    ckpt_dir, log_path = out / "checkpoints", out / "log.jsonl"
    state: dict[str, Any] = {"step": 0, "tokens_seen": 0, "recent_losses": [], "initial_loss": None}
    state["train_seconds"] = 0.0
    if (ckpt := latest_checkpoint(ckpt_dir)) is not None:
        state.update(load_checkpoint(ckpt, model, opt))
        _truncate_log(log_path, state["step"])
    model.train()
    bar = progress(total=cfg.steps, desc="train") if progress else None
    if bar is not None:
        bar.update(state["step"])
    log = IntervalLog(log_path, cfg, bar)
    t0 = time.perf_counter()
    try:
        for step in range(state["step"], cfg.steps):
            x, y = (torch.from_numpy(a) for a in loader.batch(step))
            lr = lr_at(step, cfg)
            loss = train_step(model, opt, x, y, lr, cfg.grad_clip)
            state["initial_loss"] = loss if state["initial_loss"] is None else state["initial_loss"]
            state["recent_losses"] = (state["recent_losses"] + [loss])[-RECENT:]
            state["tokens_seen"] += int((y != IGNORE_INDEX).sum())
            state["step"] = step + 1
            log.add(state["step"], loss, lr)
            if (
                cfg.checkpoint_every
                and state["step"] % cfg.checkpoint_every == 0
                and state["step"] < cfg.steps
            ):
                state["train_seconds"] += time.perf_counter() - t0
                save_checkpoint(ckpt_dir, model, opt, state)
                t0 = time.perf_counter()
                log.restart_clock()
    finally:
        log.close()
    state["train_seconds"] += time.perf_counter() - t0
    save_checkpoint(ckpt_dir, model, opt, state)
    return _summary(state, cfg)


def _summary(state: dict[str, Any], cfg: TrainConfig) -> dict[str, Any]:
    recent = state["recent_losses"]
    window_tokens = state["step"] * cfg.batch_size * cfg.seq_len
    return {
        "steps": state["step"],
        "window_tokens": window_tokens,
        "tokens_seen": state["tokens_seen"],
        "initial_loss": state["initial_loss"],
        "final_loss": sum(recent) / len(recent) if recent else None,
        "train_seconds": round(state["train_seconds"], 3),
        "tokens_per_s": round(window_tokens / state["train_seconds"], 1) if state["train_seconds"] else None,
        "config": asdict(cfg),
    }
