"""``backend: nanotron``: the train stage as a thin adapter that writes nanotron's config and launches it.

Nothing here imports nanotron (it needs CUDA, flash-attn and numpy<2; it lives in its own environment, see
docs/pretrain.md). The stage:

1. links the ``.ds`` files of ``tokenize/tokens`` into ``nanotron/data/`` with a ``.ds.metadata`` that
   names the tokenizer folder by absolute path (nanotron checks that it equals
   ``tokenizer.tokenizer_name_or_path``);
2. writes ``nanotron/config.yaml`` from the same ``ModelSpec`` and ``TrainConfig`` the torch trainer uses
   (``build_config``; round-trips through ``pretrain.nanotron_config``);
3. runs ``<command> nanotron/config.yaml`` (default ``bash scripts/nanotron/launch.sh``: torchrun, or
   srun + torchrun across nodes), unless ``nanotron/checkpoints/latest.txt`` already says the last step:
   a requeued job resumes from nanotron's own checkpoints (``resume_checkpoint_path``);
4. converts the last checkpoint to ``model/`` (HF + tokenizer) with ``pretrain.nanotron_convert``.

Differences from the torch backend: only ``packing: fixed`` (nanotron reads consecutive windows), no loss
masks (nanotron ignores ``.ds.loss``, so a variant whose mask drops any token is refused rather than silently
trained on the masked tokens; the config check refuses mask variants and windowed injection up front),
nanotron's own data order, and its AdamW / schedule implementation.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError, StageError
from core.stage import StageContext

from . import nanotron_config as nc
from ._config import check_keys, require_int
from .model import ModelSpec
from .nanotron_convert import convert_checkpoint
from .trainer import TrainConfig

LAUNCH_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "nanotron" / "launch.sh"
OPTIONS: dict[str, Any] = {
    "dp": 1,
    "tp": 1,
    "pp": 1,
    "nodes": 1,
    "micro_batch_size": None,
    "dtype": "bfloat16",
    "zero_stage": 0,
    "attn_implementation": "flash_attention_2",
    "use_old_brrr_dataloader": True,
    "command": None,
}


def data_view(tokens: Path, tokenizer_dir: Path, view: Path) -> int:
    """Link each ``*.ds`` (+ index, loss) into ``view``, metadata naming ``tokenizer_dir``; -> token bytes."""
    view.mkdir(parents=True, exist_ok=True)
    size = 2
    for ds in sorted(tokens.glob("*.ds")):
        for suffix in ("", ".index", ".loss"):
            src, dst = ds.with_name(ds.name + suffix), view / (ds.name + suffix)
            if src.is_file() and not dst.exists():
                dst.symlink_to(src.resolve())
        lines = ds.with_name(ds.name + ".metadata").read_text().splitlines()
        size = int(lines[0].rpartition("|")[2])
        (view / f"{ds.name}.metadata").write_text(
            "\n".join([f"{tokenizer_dir.resolve()}|{size}", *lines[1:]]) + "\n"
        )
    return size


def _schedule(tcfg: TrainConfig) -> nc.LRSchedulerArgs:
    """nanotron's scheduler fields for our cosine or WSD schedule (same warmup, decay window and floor)."""
    start, style = tcfg.warmup_steps, "cosine"
    if tcfg.schedule == "wsd":
        start = max(tcfg.warmup_steps, tcfg.steps - max(1, round(tcfg.decay_fraction * tcfg.steps)))
        style = "linear"
    return nc.LRSchedulerArgs(
        learning_rate=tcfg.lr,
        lr_warmup_steps=tcfg.warmup_steps,
        lr_warmup_style="linear",
        lr_decay_style=style,
        lr_decay_steps=max(tcfg.steps - start, 1),
        lr_decay_starting_step=start,
        min_decay_lr=tcfg.lr * tcfg.min_lr_ratio,
    )


def _model_args(spec: ModelSpec, tok: tuple[int, int, int], options: dict[str, Any]) -> nc.ModelArgs:
    vocab, eos_id, pad_id = tok
    llama = nc.LlamaConfig(
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        hidden_size=spec.hidden_size,
        initializer_range=spec.init_std,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        num_attention_heads=spec.num_heads,
        num_hidden_layers=spec.num_layers,
        num_key_value_heads=spec.num_kv_heads or spec.num_heads,
        pad_token_id=pad_id,
        rms_norm_eps=spec.rms_norm_eps,
        rope_theta=spec.rope_theta,
        tie_word_embeddings=spec.tie_embeddings,
        vocab_size=vocab,
        _attn_implementation=options["attn_implementation"],
    )
    return nc.ModelArgs(
        llama, nc.RandomInit(std=spec.init_std, scaling_method="NONE"), dtype=options["dtype"]
    )


def _micro_batch(tcfg: TrainConfig, dp: int, configured: int | None) -> int:
    """Per-GPU micro batch so that micro x grad_accum x dp = batch_size (the same global batch as torch)."""
    if configured is not None:
        require_int(configured, "nanotron.micro_batch_size", "train", minimum=1)
    micro = configured or tcfg.batch_size // (dp * tcfg.grad_accum)
    if micro < 1 or micro * tcfg.grad_accum * dp != tcfg.batch_size:
        raise ConfigError(
            f"train: batch_size {tcfg.batch_size} must equal nanotron.dp {dp} x grad_accum {tcfg.grad_accum} "
            f"x nanotron.micro_batch_size ({configured})"
        )
    return micro


def _optimizer_args(tcfg: TrainConfig, zero_stage: int) -> nc.OptimizerArgs:
    """AdamW as the torch trainer runs it: same betas, decay (not on norms), clipping and schedule."""
    adam = nc.AdamWOptimizerArgs(
        adam_eps=1e-8, adam_beta1=tcfg.betas[0], adam_beta2=tcfg.betas[1], torch_adam_is_fused=True
    )
    return nc.OptimizerArgs(
        optimizer_factory=adam,
        zero_stage=zero_stage,
        weight_decay=tcfg.weight_decay,
        clip_grad=tcfg.grad_clip or None,
        accumulate_grad_in_fp32=True,
        learning_rate_scheduler=_schedule(tcfg),
        weight_decay_exclude_named_params=[".*layernorm.*", ".*layer_norm.*"],
    )


def build_config(
    spec: ModelSpec,
    tcfg: TrainConfig,
    tok: tuple[int, int, int],
    paths: dict[str, Path],
    seed: int,
    options: dict[str, Any],
    run: str = "propensity",
    token_size: int = 2,
) -> nc.Config:
    """nanotron's config for the run the torch trainer would do (``paths``: data, tokenizer, checkpoints)."""
    dp, tp, pp = (require_int(options[k], f"nanotron.{k}", "train", minimum=1) for k in ("dp", "tp", "pp"))
    micro = _micro_batch(tcfg, dp, options["micro_batch_size"])
    dataset = nc.NanosetDatasetsArgs(
        dataset_folder=str(paths["data"]),
        tokenizer_name=str(paths["tokenizer"]),
        vocab_size=tok[0],
        token_size_in_bytes=token_size,
        use_old_brrr_dataloader=options["use_old_brrr_dataloader"],
    )
    ckpts = str(paths["checkpoints"])
    tp_mode = "REDUCE_SCATTER" if tp > 1 else "ALL_REDUCE"
    return nc.Config(
        general=nc.GeneralArgs(project="propensity", run=run, seed=seed),
        parallelism=nc.ParallelismArgs(
            dp=dp, pp=pp, tp=tp, tp_mode=tp_mode, tp_linear_async_communication=tp > 1
        ),
        model=_model_args(spec, tok, options),
        tokenizer=nc.TokenizerArgs(tokenizer_name_or_path=str(paths["tokenizer"])),
        checkpoints=nc.CheckpointsArgs(
            checkpoints_path=ckpts,
            checkpoint_interval=tcfg.checkpoint_every or tcfg.steps,
            resume_checkpoint_path=ckpts,
        ),
        logging=nc.LoggingArgs(iteration_step_info_interval=tcfg.log_every),
        tokens=nc.TokensArgs(
            sequence_length=tcfg.seq_len,
            train_steps=tcfg.steps,
            micro_batch_size=micro,
            batch_accumulation_per_replica=tcfg.grad_accum,
        ),
        optimizer=_optimizer_args(tcfg, options["zero_stage"]),
        data_stages=[
            nc.DatasetStageArgs(
                name="stable",
                start_training_step=1,
                data=nc.DataArgs(dataset=dataset, seed=seed, num_loading_workers=1),
            )
        ],
    )


def latest_step(checkpoints: Path) -> int | None:
    """The step in ``checkpoints/latest.txt`` (None before nanotron's first save)."""
    path = checkpoints / "latest.txt"
    return int(path.read_text().strip()) if path.is_file() else None


def launch(command: list[str], config_path: Path, gpus_per_node: int, log_path: Path) -> None:
    """Run the launcher on ``config_path`` (output to ``log_path``); a non-zero exit is a ``StageError``."""
    env = {**os.environ, "GPUS_PER_NODE": str(gpus_per_node)}
    with log_path.open("a") as log:
        rc = subprocess.run(
            [*command, str(config_path)],
            cwd=config_path.parent,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode
    if rc != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-20:])
        raise StageError(f"train: nanotron launcher {command} exited with {rc}; see {log_path}:\n{tail}")


def run_nanotron(
    ctx: StageContext,
    cfg: dict[str, Any],
    spec: ModelSpec,
    tcfg: TrainConfig,
    packing: str,
    tok: tuple[int, int, int],
) -> dict[str, Any]:
    """Write the config, launch nanotron unless its last step is saved, convert to ``model/``."""
    options = check_keys(cfg["nanotron"], OPTIONS, "train.nanotron")
    if packing != "fixed":
        raise ConfigError(
            f"train: backend nanotron reads consecutive windows; set packing: fixed (got {packing!r})"
        )
    masked = [f.name for f in sorted((ctx.inputs["tokenize"] / "tokens").glob("*.ds.loss"))
              if not np.fromfile(f, dtype=np.uint8).all()]
    if masked:
        raise ConfigError(
            f"train: backend nanotron ignores loss masks, but {', '.join(masked)} mask tokens out; "
            "train this variant with backend: torch"
        )
    command = options["command"] or ["bash", str(LAUNCH_SCRIPT)]
    if not (isinstance(command, list) and all(isinstance(c, str) for c in command)):
        raise ConfigError(f"train: nanotron.command must be a list of strings, got {command!r}")
    nodes = require_int(options["nodes"], "nanotron.nodes", "train", minimum=1)
    root = (ctx.out / "nanotron").resolve()
    size = data_view(ctx.inputs["tokenize"] / "tokens", ctx.inputs["tokenizer"], root / "data")
    paths = {"data": root / "data", "tokenizer": Path(ctx.inputs["tokenizer"]).resolve()}
    paths["checkpoints"] = root / "checkpoints"
    config = build_config(spec, tcfg, tok, paths, ctx.seed, options, run=ctx.name, token_size=size)
    config_path = nc.dump_yaml(config, root / "config.yaml")
    gpus = config.parallelism.dp * config.parallelism.tp * config.parallelism.pp
    if gpus % nodes:
        raise ConfigError(f"train: nanotron dp x tp x pp = {gpus} GPUs must divide by nanotron.nodes {nodes}")
    launched = latest_step(root / "checkpoints") != tcfg.steps
    if launched:
        launch(command, config_path, gpus // nodes, root / "launch.log")
    if (step := latest_step(root / "checkpoints")) != tcfg.steps:
        raise StageError(
            f"train: nanotron finished but {root}/checkpoints/latest.txt says {step}, not {tcfg.steps}"
        )
    converted = convert_checkpoint(root / "checkpoints", ctx.out / "model", ctx.inputs["tokenizer"])
    converted.pop("source")  # an absolute path: keep the result independent of where the store lives
    return {
        "steps": tcfg.steps,
        "nanotron_config": "nanotron/config.yaml",
        "launched": launched,
        "window_tokens": tcfg.steps * tcfg.batch_size * tcfg.seq_len,
        "converted": converted,
    }
