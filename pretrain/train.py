"""The ``train`` stage: pretrain a Llama preset on one tokenized variant, token budget fixed by config.

Inputs: ``tokenize`` (a folder with ``tokens/*.ds``) and ``tokenizer``. Writes ``model/`` (HF
``config.json``, ``model.safetensors`` and the tokenizer files, loadable with ``AutoModelForCausalLM`` and
``AutoTokenizer``), ``checkpoints/`` (the latest resumable checkpoint) and ``log.jsonl``. Re-entering the
stage folder after a crash resumes from the latest checkpoint, bit-identically on CPU. torch runs
``ctx.workers`` threads during training (restored afterwards).

Preemption: SIGTERM or SIGUSR1 (Slurm's ``--signal``) makes the loop write a checkpoint at the next step
boundary and raise ``TrainingPreempted`` (the stage exits non-zero; a requeued job resumes). Under
``torchrun`` the stage trains data-parallel (``pretrain.distributed``) and rank 0 writes the artifact.
``backend: nanotron`` hands the run to nanotron on a GPU cluster instead (``pretrain.nanotron_backend``); both
backends leave the same ``model/`` folder (HF weights + tokenizer) for ``eval_gpe``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import ConfigError, InputDataError
from core.names import TOKEN_COUNTS
from core.stage import StageContext

from ._config import check_keys, require_choice, require_float, require_int
from .build_tokenizer import TOKENIZER_FILES
from .checks import backend_refusal, inject_plan
from .data import PACKINGS, TokenFolder, WindowLoader, window_steps
from .distributed import Dist
from .metrics import Sink, TensorBoardSink, WandbSink, flops_per_token
from .model import ModelSpec, build_model
from .settings import TRAIN_DEFAULTS
from .trainer import PRECISIONS, SCHEDULES, TrainConfig, train

BACKENDS = ("torch", "nanotron")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

DEFAULTS: dict[str, Any] = {"model": "quickstart", "model_overrides": {}, **TRAIN_DEFAULTS}
"""A stage config's missing keys: the model preset and ``pretrain.settings.TrainSettings``' defaults."""


def train_config(cfg: dict[str, Any]) -> TrainConfig:
    """Validate the stage config and derive ``steps = tokens // (batch_size * seq_len)``."""
    seq_len = require_int(cfg["seq_len"], "seq_len", "train", minimum=1)
    batch_size = require_int(cfg["batch_size"], "batch_size", "train", minimum=1)
    tokens = require_int(cfg["tokens"], "tokens", "train", minimum=batch_size * seq_len)
    if not 0 <= require_float(cfg["min_lr_ratio"], "min_lr_ratio", "train") <= 1:
        raise ConfigError(f"train: min_lr_ratio must be in [0, 1], got {cfg['min_lr_ratio']!r}")
    return TrainConfig(
        steps=tokens // (batch_size * seq_len),
        batch_size=batch_size,
        seq_len=seq_len,
        lr=require_float(cfg["lr"], "lr", "train"),
        warmup_steps=require_int(cfg["warmup_steps"], "warmup_steps", "train"),
        min_lr_ratio=float(cfg["min_lr_ratio"]),
        weight_decay=require_float(cfg["weight_decay"], "weight_decay", "train"),
        grad_clip=require_float(cfg["grad_clip"], "grad_clip", "train"),
        checkpoint_every=require_int(cfg["checkpoint_every"], "checkpoint_every", "train"),
        log_every=require_int(cfg["log_every"], "log_every", "train", minimum=1),
        grad_accum=require_int(cfg["grad_accum"], "grad_accum", "train", minimum=1),
        schedule=require_choice(cfg["schedule"], "schedule", "train", SCHEDULES),
        decay_fraction=require_float(cfg["decay_fraction"], "decay_fraction", "train"),
        precision=require_choice(cfg["precision"], "precision", "train", PRECISIONS),
        peak_flops=None
        if cfg["peak_flops"] is None
        else require_float(cfg["peak_flops"], "peak_flops", "train"),
        compile=_require_bool(cfg["compile"], "compile"),
        document_mask=_require_bool(cfg["document_mask"], "document_mask"),
    )


def _require_bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"train: {key} must be true or false, got {value!r}")
    return value


def _tokenizer_info(folder: Path) -> tuple[int, int, int]:
    """``len(tokenizer)``, eos id and pad id of the tokenizer folder (via transformers, as users load it)."""
    from transformers import AutoTokenizer

    if not (folder / "tokenizer.json").is_file():
        raise InputDataError(f"train: input 'tokenizer' has no tokenizer.json: {folder}")
    tok = AutoTokenizer.from_pretrained(str(folder))
    if tok.eos_token_id is None or tok.pad_token_id is None:
        raise InputDataError(
            f"train: tokenizer {folder} needs eos and pad tokens (eos={tok.eos_token}, pad={tok.pad_token})"
        )
    return len(tok), tok.eos_token_id, tok.pad_token_id


def save_final(model: Any, tokenizer_dir: Path, out: Path) -> None:
    """``save_pretrained`` (safetensors) into ``out`` and copy the tokenizer files beside it."""
    model.save_pretrained(str(out))
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copyfile(tokenizer_dir / name, out / name)


class StopFlag:
    """Set by a signal handler; the training loop polls ``requested`` at every step boundary."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None


@contextmanager
def stop_on_signals(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[StopFlag]:
    """Within the block, ``signals`` set the flag instead of killing the process (main thread only)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        flag.requested, flag.signal = True, signum

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def resolve(ctx: StageContext) -> tuple[dict[str, Any], ModelSpec, TrainConfig, str]:
    """The checked config (defaults filled), model spec, ``TrainConfig`` and packing of a train stage."""
    cfg = check_keys(ctx.config, DEFAULTS, "train")
    for key in ("model_overrides", "nanotron"):
        if not isinstance(cfg[key], dict):
            raise ConfigError(f"train: {key} must be a mapping, got {cfg[key]!r}")
    require_choice(cfg["backend"], "backend", "train", BACKENDS)
    _require_bool(cfg["tensorboard"], "tensorboard")
    if cfg["wandb_project"] is not None and not (
        isinstance(cfg["wandb_project"], str) and cfg["wandb_project"]
    ):
        raise ConfigError(
            f"train: wandb_project must be a non-empty string or null, got {cfg['wandb_project']!r}"
        )
    packing = require_choice(cfg["packing"], "packing", "train", PACKINGS)
    spec = ModelSpec.preset(cfg["model"], cfg["model_overrides"])
    tcfg = train_config(cfg)
    tcfg.validate()
    if tcfg.seq_len > spec.max_position_embeddings:
        raise ConfigError(
            f"train: seq_len {tcfg.seq_len} exceeds the model's max_position_embeddings "
            f"{spec.max_position_embeddings}"
        )
    return cfg, spec, tcfg, packing


def injection_report(loader: WindowLoader, steps: int) -> dict[str, Any]:
    """What the run's windowed injection achieves: rows and real target tokens injected, the steps."""
    plan = loader.inject
    assert plan is not None
    first, end = window_steps(plan.window, steps)
    rows_total = steps * loader.batch_size
    rows = loader.injected_total(steps)
    base_targets, inj_targets = loader.target_totals(steps)
    return {
        "window": list(plan.window),
        "steps": [first, end],
        "share_target": plan.share,
        "rows_injected": rows,
        "rows_total": rows_total,
        "share_rows": round(rows / rows_total, 6),
        "targets_injected": inj_targets,
        "targets_total": base_targets + inj_targets,
        "share_tokens": round(inj_targets / max(base_targets + inj_targets, 1), 6),
        "injected_windows_available": len(loader.inject_table),
    }


def make_sinks(ctx: StageContext, cfg: dict[str, Any]) -> list[Sink]:
    """TensorBoard (``out/tensorboard``) and W&B sinks as configured; missing packages are ConfigErrors."""
    sinks: list[Sink] = []
    if cfg["tensorboard"]:
        sinks.append(TensorBoardSink(ctx.out / "tensorboard"))
    if cfg["wandb_project"]:
        key = json.dumps({"config": ctx.config, "seed": ctx.seed, "name": ctx.name}, sort_keys=True)
        run_id = f"{ctx.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
        sinks.append(
            WandbSink(cfg["wandb_project"], run_id, f"{ctx.stage}/{ctx.name}", ctx.out / "wandb", ctx.config)
        )
    return sinks


def run(ctx: StageContext) -> dict[str, Any]:
    """Stage entry: check the budget, then train with the torch loop (or nanotron) and save ``model/``."""
    import torch

    cfg, spec, tcfg, packing = resolve(ctx)
    vocab, eos_id, pad_id = _tokenizer_info(ctx.inputs["tokenizer"])
    data = TokenFolder(ctx.inputs["tokenize"] / "tokens")
    plan = inject_plan(ctx.inputs["tokenize"], tcfg.steps)
    refusal = backend_refusal(cfg["backend"], document_mask=tcfg.document_mask,
                              window=None if plan is None else plan.window)
    if refusal:
        raise ConfigError(f"train: {refusal}")
    loader = WindowLoader(data, tcfg.seq_len, tcfg.batch_size, packing, pad_id, ctx.seed, plan)
    epochs = loader.check_budget(tcfg.steps, bool(cfg["allow_repeat"]))
    budget = {
        "backend": cfg["backend"],
        "tokens_budget": tcfg.steps * tcfg.batch_size * tcfg.seq_len,
        "count_legend": {
            "tokens_budget": TOKEN_COUNTS["positions trained"], "tokens_seen": TOKEN_COUNTS["tokens trained"],
            "tokens_available": TOKEN_COUNTS["window positions"],
        },
        "tokens_available": data.tokens_available(packing, tcfg.seq_len),
        "padding_share": round(1 - data.target_tokens(packing, tcfg.seq_len)
                               / max(data.tokens_available(packing, tcfg.seq_len), 1), 4),
        "epochs": round(epochs, 4),
        "packing": packing,
        "parameters": spec.param_count(vocab),
        "vocab_size": vocab,
        "model_spec": json.loads(json.dumps(spec.__dict__)),
    }
    if plan is not None:
        budget["inject"] = injection_report(loader, tcfg.steps)
    if cfg["backend"] == "nanotron":
        from .nanotron_backend import run_nanotron

        return {**run_nanotron(ctx, cfg, spec, tcfg, packing, (vocab, eos_id, pad_id)), **budget}
    dist = Dist.from_env(cfg["device"])
    sinks = make_sinks(ctx, cfg) if dist.is_main else []
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, ctx.workers))  # 2 threads on 2 busy cores run ~5x slower than 1
    torch.manual_seed(ctx.seed)
    model = build_model(spec, vocab, ctx.seed, eos_id=eos_id, pad_id=pad_id)
    ctx.log.info(
        "train: %s (%d params), %d steps, %.2f epochs", cfg["model"], budget["parameters"], tcfg.steps, epochs
    )
    fpt = flops_per_token(spec, vocab, tcfg.seq_len)
    try:
        with stop_on_signals() as stop:
            summary = train(model, loader, tcfg, ctx.out, ctx.progress, dist, stop, sinks, fpt)
    finally:
        torch.set_num_threads(threads)
    if dist.is_main:
        save_final(model.to("cpu"), ctx.inputs["tokenizer"], ctx.out / "model")
    dist.barrier()
    summary.pop("config")
    return {
        **summary,
        **budget,
        "torch_threads": max(1, ctx.workers),
        "flops_per_token": fpt,
        "grad_accum": tcfg.grad_accum,
        "schedule": tcfg.schedule,
        "compile": tcfg.compile,
        "document_mask": tcfg.document_mask,
    }
