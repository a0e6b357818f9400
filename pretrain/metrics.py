"""Training metrics: ``log.jsonl`` lines, optional TensorBoard and W&B sinks, FLOP/s and MFU estimates.

Every ``log_every`` steps one record ``{step, loss, lr, tokens, tokens_per_s, flops_per_s[, mfu]}`` goes to
``log.jsonl`` and to each configured sink. FLOPs per token follow the PaLM/nanoGPT estimate
``6 * N + 12 * layers * hidden * seq_len`` where N counts the parameters that take part in a matmul (the
input embedding lookup excluded, the output projection included). MFU = FLOP/s / peak FLOP/s; the peak comes
from the config or from a small table of bf16 dense peaks for known GPUs, and is unknown on CPU (MFU then
omitted, FLOP/s still logged).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol

from core.errors import ConfigError

from .model import ModelSpec

# bf16 dense peak FLOP/s per GPU, by a substring of torch.cuda.get_device_name().
GPU_PEAK_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "L4": 121e12,
}


def flops_per_token(spec: ModelSpec, vocab_size: int, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward) of ``spec`` at ``seq_len``."""
    lookup = 0 if spec.tie_embeddings else vocab_size * spec.hidden_size
    matmul_params = spec.param_count(vocab_size) - lookup
    return 6.0 * matmul_params + 12.0 * spec.num_layers * spec.hidden_size * seq_len


def peak_flops(device: str, configured: float | None) -> float | None:
    """The peak FLOP/s to compute MFU against: ``configured`` if given, else the GPU table, else None."""
    if configured:
        return float(configured)
    if not device.startswith("cuda"):
        return None
    import torch

    name = torch.cuda.get_device_name(torch.device(device))
    return next((v for k, v in GPU_PEAK_FLOPS.items() if k in name), None)


class Sink(Protocol):
    """Something that receives the metrics records (TensorBoard, W&B)."""

    def write(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class TensorBoardSink:
    """Scalars to TensorBoard event files under ``folder`` (needs the ``tensorboard`` package)."""

    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ConfigError(
                "train: tensorboard: true needs the 'tensorboard' package (pip install tensorboard), "
                f"which is not importable here ({err}); install it or set tensorboard: false"
            ) from err
        self.writer = SummaryWriter(log_dir=str(folder))

    def write(self, record: dict[str, Any]) -> None:
        """One scalar per numeric field, at ``record['step']``."""
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(f"train/{key}", value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


class WandbSink:
    """Records to a Weights & Biases run (needs ``wandb``); the run id is stable so a resume continues it."""

    def __init__(self, project: str, run_id: str, name: str, folder: Path, config: dict[str, Any]) -> None:
        try:
            import wandb
        except ImportError as err:
            raise ConfigError(
                f"train: wandb_project {project!r} needs the 'wandb' package (pip install wandb), which is "
                f"not importable here ({err}); install it or set wandb_project: null"
            ) from err
        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project, id=run_id, name=name, dir=str(folder), config=config, resume="allow"
        )

    def write(self, record: dict[str, Any]) -> None:
        """Log the record at its step."""
        self.run.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    def close(self) -> None:
        """Finish the run."""
        self.run.finish()


class IntervalLog:
    """Appends one record per ``log_every`` steps to ``log.jsonl`` and the sinks; drives the progress bar."""

    def __init__(
        self,
        path: Path | None,
        log_every: int,
        total_steps: int,
        window_tokens: int,
        flops_per_token: float,
        peak: float | None = None,
        sinks: list[Sink] | None = None,
        bar: Any = None,
    ) -> None:
        self.file = path.open("a") if path is not None else None
        self.log_every, self.total_steps, self.window_tokens = log_every, total_steps, window_tokens
        self.flops_per_token, self.peak, self.sinks, self.bar = flops_per_token, peak, sinks or [], bar
        self.loss_sum, self.steps, self.clock = 0.0, 0, time.perf_counter()

    def add(self, step: int, loss: float, lr: float) -> dict[str, Any] | None:
        """Record the loss of the step that just finished (``step`` = steps done); return a written record."""
        self.loss_sum, self.steps = self.loss_sum + loss, self.steps + 1
        if step % self.log_every and step != self.total_steps:
            return None
        now = time.perf_counter()
        tokens_per_s = self.steps * self.window_tokens / max(now - self.clock, 1e-9)
        record: dict[str, Any] = {
            "step": step,
            "loss": round(self.loss_sum / self.steps, 6),
            "lr": lr,
            "tokens": step * self.window_tokens,
            "tokens_per_s": round(tokens_per_s, 1),
            "flops_per_s": float(f"{tokens_per_s * self.flops_per_token:.4g}"),
        }
        if self.peak:
            record["mfu"] = round(tokens_per_s * self.flops_per_token / self.peak, 4)
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        for sink in self.sinks:
            sink.write(record)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['loss']:.3f}")
        self.loss_sum, self.steps, self.clock = 0.0, 0, now
        return record

    def tick(self, n: int = 1) -> None:
        """Advance the progress bar by ``n`` steps (no device sync needed)."""
        if self.bar is not None:
            self.bar.update(n)

    def restart_clock(self) -> None:
        """Exclude time spent outside training (checkpoint I/O) from the next tokens/s."""
        self.clock = time.perf_counter()

    def close(self) -> None:
        """Close the log file, the sinks and the progress bar."""
        if self.file is not None:
            self.file.close()
        for sink in self.sinks:
            sink.close()
        if self.bar is not None:
            self.bar.close()


def truncate_log(log_path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from, so the log reads as one run."""
    if log_path.is_file():
        lines = [ln for ln in log_path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        log_path.write_text("".join(ln + "\n" for ln in lines))
