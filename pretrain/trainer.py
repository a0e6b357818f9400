"""One readable training loop (nanoGPT style): AdamW, warmup + cosine or WSD, accumulation, DDP, resume.

Reads top to bottom: ``TrainConfig`` -> ``lr_at`` (pure) -> ``make_optimizer`` -> ``train_step`` -> ``train``.
The data position is the step number (``WindowLoader.batch(step)`` is a pure function of it), so a checkpoint
holds model + optimizer + RNG states + step (``pretrain.checkpoint``), and a resumed run is bit-identical to a
straight one on CPU. Under DDP every rank builds the same global batch and trains on its own rows; the loss is
normalised by the target count of the *global* batch, so 1 process and N processes compute the same gradient
(up to float summation order). On CUDA the forward runs under bf16 autocast (``precision``); on CPUs with AMX
``precision: bf16`` trains ~1.45x faster (matmuls in bf16 on AMX tiles, attention kept in fp32).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from core.errors import ConfigError, PropensityError

from .checkpoint import CHECKPOINT_PREFIX, latest_checkpoint, load_checkpoint, save_checkpoint
from .data import IGNORE_INDEX, WindowLoader
from .distributed import Dist
from .metrics import IntervalLog, Sink, peak_flops, truncate_log
from .model import fp32_attention
from .settings import TRAIN_DEFAULTS

__all__ = ["CHECKPOINT_PREFIX", "TrainConfig", "TrainingPreempted", "latest_checkpoint", "lr_at", "train"]

RECENT = 10  # final_loss is the mean of the last RECENT steps
SCHEDULES = ("cosine", "wsd")
PRECISIONS = ("auto", "fp32", "bf16")


class TrainingPreempted(PropensityError):
    """A stop signal arrived; a checkpoint was written at the step boundary. Re-running resumes from it."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one run."""

    steps: int
    """Optimizer steps (one global batch each)."""
    batch_size: int = TRAIN_DEFAULTS["batch_size"]
    """Windows per optimizer step, over all processes and accumulation steps (the global batch)."""
    seq_len: int = TRAIN_DEFAULTS["seq_len"]
    """Tokens per window (inputs; targets are shifted by one)."""
    lr: float = TRAIN_DEFAULTS["lr"]
    """Peak learning rate."""
    warmup_steps: int = TRAIN_DEFAULTS["warmup_steps"]
    """Linear warmup from lr / warmup_steps to lr."""
    min_lr_ratio: float = TRAIN_DEFAULTS["min_lr_ratio"]
    """The schedule ends at lr * min_lr_ratio at the last step."""
    weight_decay: float = TRAIN_DEFAULTS["weight_decay"]
    """AdamW decoupled weight decay, on matrices (dim >= 2) only."""
    grad_clip: float = TRAIN_DEFAULTS["grad_clip"]
    """Max global gradient norm (0 = no clipping)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    checkpoint_every: int = TRAIN_DEFAULTS["checkpoint_every"]
    """Save a resumable checkpoint every this many steps (0 = only at the end)."""
    log_every: int = TRAIN_DEFAULTS["log_every"]
    """Write a log.jsonl line every this many steps."""
    grad_accum: int = TRAIN_DEFAULTS["grad_accum"]
    """Micro-batches per optimizer step on each process (batch_size must divide by processes x grad_accum)."""
    schedule: str = TRAIN_DEFAULTS["schedule"]
    """``cosine``: warmup then cosine decay; ``wsd``: warmup, constant, then linear decay (decay_fraction)."""
    decay_fraction: float = TRAIN_DEFAULTS["decay_fraction"]
    """WSD only: the fraction of all steps spent in the final linear decay."""
    precision: str = TRAIN_DEFAULTS["precision"]
    """``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``fp32`` or ``bf16`` (autocast on any device)."""
    peak_flops: float | None = TRAIN_DEFAULTS["peak_flops"]
    """Peak FLOP/s of one device for the MFU estimate (None: a table of known GPUs; unknown on CPU)."""
    document_mask: bool = TRAIN_DEFAULTS["document_mask"]
    """Attend within documents only: positions restart at every end-of-document token (which leads each
    document in a window), and transformers turns the restarts into a block-diagonal causal mask. Without it a
    packed window's later documents see the earlier ones (their text and tags)."""
    compile: bool = TRAIN_DEFAULTS["compile"]
    """``torch.compile`` the model with its loss (inductor). On CPU it needs a C++ compiler and the Python
    headers; the quickstart model trains 1.2-1.3x faster after 25-60 s of compiling (docs/pretrain.md).
    Deterministic, but not the same bytes as an eager run (fused kernels round differently), so it is part
    of the run's identity."""

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the field when a value is outside what the loop supports."""
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"train: schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"train: precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}"
            )
        if not 0 < self.decay_fraction <= 1:
            raise ConfigError(f"train: decay_fraction must be in (0, 1], got {self.decay_fraction!r}")
        if self.grad_accum < 1 or self.batch_size % self.grad_accum:
            raise ConfigError(
                f"train: batch_size {self.batch_size} must divide by grad_accum {self.grad_accum} (>= 1)"
            )


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate at ``step`` (0-based): linear warmup, then cosine or WSD decay to lr * min_lr_ratio."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    floor = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "wsd":
        decay_start = max(cfg.warmup_steps, cfg.steps - max(1, round(cfg.decay_fraction * cfg.steps)))
        if step < decay_start:
            return cfg.lr
        progress = min((step - decay_start) / max(cfg.steps - 1 - decay_start, 1), 1.0)
        return cfg.lr - (cfg.lr - floor) * progress
    span = max(cfg.steps - 1 - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (embeddings, projections) and none on norms and biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # fused: one kernel per step on CUDA and CPU (3x faster than foreach on CPU, still deterministic)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=1e-8, fused=True)


def document_positions(inputs: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Position ids that restart at 0 on every ``eos_id`` token (a document's leading separator); tokens
    before a window's first separator count from the window start."""
    idx = torch.arange(inputs.shape[-1], device=inputs.device).expand_as(inputs)
    starts = torch.where(inputs == eos_id, idx, torch.zeros_like(idx)).cummax(dim=-1).values
    return idx - starts


def sum_loss(
    model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, eos_id: int | None = None
) -> torch.Tensor:
    """Summed next-token cross-entropy (fp32) over the targets that are not ``IGNORE_INDEX``; with ``eos_id``,
    attention stays within documents (``document_positions``)."""
    extra = {} if eos_id is None else {"position_ids": document_positions(inputs, eos_id)}
    logits = model(input_ids=inputs, use_cache=False, **extra).logits
    return F.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )


class LossModule(torch.nn.Module):
    """The model and its summed loss as one module, so DDP and ``torch.compile`` see both (compiling the
    cross-entropy with the model fuses the log-softmax into the LM head's output: ~5% more tokens/s on
    CPU). ``eos_id``: mask attention at document boundaries (``TrainConfig.document_mask``)."""

    def __init__(self, model: torch.nn.Module, eos_id: int | None = None) -> None:
        super().__init__()
        self.model, self.eos_id = model, eos_id

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return sum_loss(self.model, inputs, targets, self.eos_id)


def batch_loss(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the targets that are not ``IGNORE_INDEX`` (0 when all are)."""
    return sum_loss(model, inputs, targets) / (targets != IGNORE_INDEX).sum().clamp(min=1)


def train_step(
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    cfg: TrainConfig,
    n_targets: int,
    world_size: int = 1,
    autocast: Any = nullcontext,
) -> torch.Tensor:
    """One optimizer step on this rank's rows ``x, y`` in ``cfg.grad_accum`` micro-batches; ``net(x, y)`` is
    the summed loss (a ``LossModule``, maybe wrapped in DDP and compiled).

    Each micro-batch's summed loss is divided by ``n_targets / world_size`` (``n_targets``: the global batch's
    target count), so after DDP averages over ranks the gradient is that of the global mean loss. Returns
    this rank's summed loss / ``n_targets`` (detached; sum over ranks for the global mean).
    """
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    denom = max(n_targets, 1) / world_size
    total = torch.zeros((), device=x.device)
    chunks = list(zip(x.chunk(cfg.grad_accum), y.chunk(cfg.grad_accum), strict=True))
    for i, (xm, ym) in enumerate(chunks):
        last = i == len(chunks) - 1
        sync = nullcontext() if last or not hasattr(net, "no_sync") else net.no_sync()
        with sync:
            with autocast():
                loss = net(xm, ym)
            (loss / denom).backward()
        total += loss.detach()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
    opt.step()
    return total / max(n_targets, 1)


def _autocast(cfg: TrainConfig, device: str) -> Any:
    """A zero-argument context factory: bf16 autocast when ``precision`` asks for it, else a no-op."""
    if _bf16(cfg, device):
        return lambda: torch.autocast(device_type=_device_kind(device), dtype=torch.bfloat16)
    return nullcontext


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AMX tiles or AVX512-BF16)."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _device_kind(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


def _bf16(cfg: TrainConfig, device: str) -> bool:
    return cfg.precision == "bf16" or (cfg.precision == "auto" and _device_kind(device) == "cuda")


def _wrap_ddp(model: torch.nn.Module, dist: Dist) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    ids = [dist.local_rank] if dist.device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)


def _resume(model: torch.nn.Module, opt: torch.optim.Optimizer, out: Path, dist: Dist) -> dict[str, Any]:
    """Fresh trainer state, or that of the latest checkpoint in ``out/checkpoints`` (log truncated to it)."""
    state: dict[str, Any] = {"step": 0, "tokens_seen": 0, "recent_losses": [], "initial_loss": None}
    state["train_seconds"] = 0.0
    if (ckpt := latest_checkpoint(out / "checkpoints")) is not None:
        state.update(load_checkpoint(ckpt, model, opt))
        if dist.is_main:
            truncate_log(out / "log.jsonl", state["step"])
    dist.barrier()
    return state


def _open_log(
    cfg: TrainConfig, out: Path, dist: Dist, progress: Any, sinks: list[Sink] | None, fpt: float
) -> IntervalLog:
    """The interval log: rank 0 writes ``log.jsonl``, the sinks and the progress bar; other ranks nothing."""
    main = dist.is_main
    peak = peak_flops(dist.device, cfg.peak_flops)
    return IntervalLog(
        out / "log.jsonl" if main else None,
        cfg.log_every,
        cfg.steps,
        cfg.batch_size * cfg.seq_len,
        fpt,
        peak * dist.world_size if peak else None,
        sinks if main else None,
        progress(total=cfg.steps, desc="train") if progress and main else None,
    )


def _flush(pending: list[tuple[int, torch.Tensor, float]], state: dict[str, Any], log: IntervalLog) -> None:
    """Move the pending per-step losses to the host (one device sync), into ``state`` and the log."""
    values = torch.stack([loss for _, loss, _ in pending]).tolist() if pending else []
    for (step, _, lr), value in zip(pending, values, strict=True):
        state["initial_loss"] = value if state["initial_loss"] is None else state["initial_loss"]
        state["recent_losses"] = (state["recent_losses"] + [value])[-RECENT:]
        log.add(step, value, lr)
    pending.clear()


def train(
    model: torch.nn.Module,
    loader: WindowLoader,
    cfg: TrainConfig,
    out: Path,
    progress: Callable[..., Any] | None = None,
    dist: Dist | None = None,
    stop: Any = None,
    sinks: list[Sink] | None = None,
    flops_per_token: float = 0.0,
) -> dict[str, Any]:
    """Train ``model`` for ``cfg.steps`` batches of ``loader``, resuming from ``out/checkpoints`` if present.

    ``dist``: rank/world/device (default: one CPU process). ``stop``: an object whose ``requested`` turns
    true on a signal; the loop then checkpoints at the step boundary and raises ``TrainingPreempted``. Rank 0
    writes ``out/log.jsonl`` (see ``metrics.IntervalLog``), the sinks and the checkpoints; returns the totals.
    """
    cfg.validate()
    dist = dist or Dist()
    rows = dist.rows(cfg.batch_size)
    if (rows.stop - rows.start) % cfg.grad_accum:
        raise ConfigError(
            f"train: batch_size {cfg.batch_size} must divide by processes x grad_accum "
            f"({dist.world_size} x {cfg.grad_accum})"
        )
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    opt = make_optimizer(model.to(dist.device), cfg)
    state = _resume(model, opt, out, dist)
    restore = ExitStack()  # CPU bf16: attention in fp32, restored before the model is saved
    cpu_bf16 = _bf16(cfg, dist.device) and _device_kind(dist.device) == "cpu"
    if cpu_bf16 and not cpu_has_bf16():
        logging.getLogger("propensity").warning(
            "train: precision bf16 on a CPU without AMX or AVX512-BF16: bf16 is emulated there and slower "
            "than fp32; set train.precision: fp32"
        )
    restore.enter_context(fp32_attention(model, cpu_bf16))
    net: torch.nn.Module = LossModule(model, _document_eos(model, cfg)).train()
    net = _wrap_ddp(net, dist) if dist.distributed else net
    if cfg.compile:
        if _device_kind(dist.device) == "cpu":  # the same bytes on every run (see deterministic_algorithms)
            restore.enter_context(deterministic_algorithms())
        net = torch.compile(net)
    first = state["step"]
    autocast, log = _autocast(cfg, dist.device), _open_log(cfg, out, dist, progress, sinks, flops_per_token)
    log.tick(state["step"])
    pending: list[tuple[int, torch.Tensor, float]] = []

    def checkpoint(since: float) -> None:
        _flush(pending, state, log)
        state["train_seconds"] += time.perf_counter() - since
        if dist.is_main:
            save_checkpoint(out / "checkpoints", model, opt, state)
        dist.barrier()

    t0 = time.perf_counter()
    try:
        for step in range(state["step"], cfg.steps):
            x_np, y_np = loader.batch(step)
            n_targets = int((y_np != IGNORE_INDEX).sum())
            x, y = (torch.from_numpy(a[rows]).to(dist.device, non_blocking=True) for a in (x_np, y_np))
            lr = lr_at(step, cfg)
            try:
                loss = train_step(net, opt, x, y, lr, cfg, n_targets, dist.world_size, autocast)
            except Exception as e:
                if step == first and cfg.compile and _is_compile_error(e):
                    raise ConfigError(
                        f"train: torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:300]}). "
                        "On CPU it needs a C++ compiler and the Python headers (Debian: g++ python3-dev); "
                        "install them or set train.compile: false"
                    ) from e
                raise
            if dist.distributed:
                torch.distributed.all_reduce(loss)
            state["tokens_seen"], state["step"] = state["tokens_seen"] + n_targets, step + 1
            pending.append((step + 1, loss, lr))
            log.tick()
            if (step + 1) % cfg.log_every == 0:
                _flush(pending, state, log)
            if stop is not None and dist.any_true(bool(stop.requested)) and step + 1 < cfg.steps:
                checkpoint(t0)
                raise TrainingPreempted(f"train: stopped by a signal at step {step + 1}; checkpoint saved")
            if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
                checkpoint(t0)
                t0 = time.perf_counter()
                log.restart_clock()
        checkpoint(t0)
    finally:
        log.close()
        restore.close()
    return _summary(state, cfg, dist)


@contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` for the duration, then the caller's setting again.

    Compiled training needs it for the same bytes on every run: without it inductor may accumulate gradients
    of indexed writes (the embedding's, from many tokens) with parallel atomic adds, whose order depends on
    thread timing. With other processes loading the CPU, two runs of the quickstart's config differed (losses
    from the 6th decimal at step 40; 2 of 2 runs of 30 steps); under the same load, runs with it were
    identical, and on an idle CPU it changes neither the bytes nor the speed. Eager CPU training was already
    deterministic and is left as it was; on CUDA determinism would cost speed and is not promised."""
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def _document_eos(model: torch.nn.Module, cfg: TrainConfig) -> int | None:
    """The end-of-document id that bounds attention when ``document_mask`` is set (else None)."""
    if not cfg.document_mask:
        return None
    eos = getattr(getattr(model, "config", None), "eos_token_id", None)
    if not isinstance(eos, int):
        raise ConfigError(f"train: document_mask needs the model config's eos_token_id (one id), got {eos!r}")
    return eos


def _is_compile_error(e: BaseException) -> bool:
    """Whether ``e`` (or its cause) comes from torch.compile's tracing or code generation."""
    while e is not None:
        if type(e).__module__.startswith(("torch._dynamo", "torch._inductor")):
            return True
        e = e.__cause__
    return False


def _summary(state: dict[str, Any], cfg: TrainConfig, dist: Dist) -> dict[str, Any]:
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
        "world_size": dist.world_size,
        "device": dist.device,
        "config": asdict(cfg),
    }
