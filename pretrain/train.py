"""The ``train`` stage: pretrain a Llama preset on one tokenized variant, token budget fixed by config.

Inputs: ``tokenize`` (a folder with ``tokens/*.ds``) and ``tokenizer``. Writes ``model/`` (HF
``config.json``, ``model.safetensors`` and the tokenizer files, loadable with ``AutoModelForCausalLM`` and
``AutoTokenizer``), ``checkpoints/`` (the latest resumable checkpoint) and ``log.jsonl``. Re-entering the
stage folder after a crash resumes from the latest checkpoint, bit-identically on CPU. torch runs
``ctx.workers`` threads during training (restored afterwards).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from propensity.errors import ConfigError, InputDataError
from propensity.stage import StageContext

from ._config import check_keys, require_choice, require_float, require_int
from .data import PACKINGS, TokenFolder, WindowLoader
from .model import ModelSpec, build_model
from .tokenizer import TOKENIZER_FILES
from .trainer import TrainConfig, train

DEFAULTS: dict[str, Any] = {
    "model": "quickstart",
    "model_overrides": {},
    "tokens": 2_000_000,
    "seq_len": 128,
    "batch_size": 32,
    "lr": 3e-3,
    "warmup_steps": 100,
    "min_lr_ratio": 0.1,
    "weight_decay": 0.1,
    "grad_clip": 1.0,
    "packing": "document_aligned",
    "checkpoint_every": 200,
    "log_every": 10,
    "allow_repeat": False,
}


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
    )


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


def run(ctx: StageContext) -> dict[str, Any]:
    """Stage entry: build the model, train it on ``ctx.inputs['tokenize']/tokens`` and save ``model/``."""
    import torch

    cfg = check_keys(ctx.config, DEFAULTS, "train")
    if not isinstance(cfg["model_overrides"], dict):
        raise ConfigError(f"train: model_overrides must be a mapping, got {cfg['model_overrides']!r}")
    packing = require_choice(cfg["packing"], "packing", "train", PACKINGS)
    spec = ModelSpec.preset(cfg["model"], cfg["model_overrides"])
    tcfg = train_config(cfg)
    if tcfg.seq_len > spec.max_position_embeddings:
        raise ConfigError(
            f"train: seq_len {tcfg.seq_len} exceeds the model's max_position_embeddings "
            f"{spec.max_position_embeddings}"
        )
    vocab, eos_id, pad_id = _tokenizer_info(ctx.inputs["tokenizer"])
    data = TokenFolder(ctx.inputs["tokenize"] / "tokens")
    loader = WindowLoader(data, tcfg.seq_len, tcfg.batch_size, packing, pad_id, ctx.seed)
    epochs = loader.check_budget(tcfg.steps, bool(cfg["allow_repeat"]))
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, ctx.workers))  # 2 threads on 2 busy cores run ~5x slower than 1
    torch.manual_seed(ctx.seed)
    model = build_model(spec, vocab, ctx.seed, eos_id=eos_id, pad_id=pad_id)
    ctx.log.info(
        "train: %s (%d params), %d steps, %.2f epochs",
        cfg["model"],
        spec.param_count(vocab),
        tcfg.steps,
        epochs,
    )
    try:
        summary = train(model, loader, tcfg, ctx.out, progress=ctx.progress)
    finally:
        torch.set_num_threads(threads)
    save_final(model, ctx.inputs["tokenizer"], ctx.out / "model")
    summary.pop("config")
    return {
        **summary,
        "parameters": spec.param_count(vocab),
        "vocab_size": vocab,
        "epochs": round(epochs, 4),
        "packing": packing,
        "torch_threads": max(1, ctx.workers),
        "tokens_available": data.tokens_available(packing, tcfg.seq_len),
        "model_spec": json.loads(json.dumps(spec.__dict__)),
    }
