"""Convert a nanotron Llama checkpoint to a Hugging Face model folder, on CPU, with safetensors only.

Layout read (nanotron main, ``serialize/weights.py`` + ``serialize/utils.py:get_path``; nanotron is never
imported)::

    <checkpoints_path>/latest.txt                 last saved step
    <checkpoints_path>/<step>/config.yaml         the run's config
    <checkpoints_path>/<step>/model_config.json   asdict(LlamaConfig)
    <checkpoints_path>/<step>/checkpoint_metadata.json
    <checkpoints_path>/<step>/model/model/decoder/<i>/pp_block/attn/qkv_proj/
        model_weight_pp-rank-<p>-of-<P>_tp-rank-<t>-of-<T>.safetensors      (a TP-sharded parameter)
    <checkpoints_path>/<step>/model/model/decoder/<i>/pp_block/input_layernorm/model_weight.safetensors

Each file holds one tensor under the key ``data``; a sharded file's safetensors metadata gives
``unsharded_shape`` and ``local_global_slices_pairs`` (``"start,stop,step|...#start,stop,step|...;..."``),
which we use to reassemble tensor-parallel shards. Tied embeddings are stored once, under the token embedding.
``qkv_proj`` is ``[q; k; v]`` along the output dimension and ``gate_up_proj`` is ``[gate; up]``; with
``rope_interleaved: true`` the q and k rows of each head are permuted from GPT-J to GPT-NeoX order (as
nanotron's own ``convert_nanotron_to_hf.py`` does). Anything else (an unknown or missing parameter, an expert
shard, attention biases, rope scaling) is an ``InputDataError`` naming the file or field.

Usage: ``python -m pretrain.nanotron_convert CHECKPOINT OUT [--tokenizer DIR] [--dtype float32]``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from core.errors import ConfigError, InputDataError

from .build_tokenizer import TOKENIZER_FILES
from .nanotron_config import LlamaConfig, from_dict

SHARD_FILE = re.compile(
    r"^model_(?P<param>weight|bias)(?:_pp-rank-(?P<pp>\d+)-of-\d+_tp-rank-(?P<tp>\d+)-of-(?P<tps>\d+))?"
    r"\.safetensors$"
)
EMBED = "model.token_position_embeddings.pp_block.token_embedding.weight"
LAYER_PARAMS = (
    "input_layernorm",
    "attn.qkv_proj",
    "attn.o_proj",
    "post_attention_layernorm",
    "mlp.gate_up_proj",
    "mlp.down_proj",
)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_checkpoint(path: Path) -> Path:
    """The step folder: ``path`` itself, or ``path/<latest.txt>`` for a ``checkpoints_path``."""
    path = Path(path)
    if (path / "latest.txt").is_file():
        step = (path / "latest.txt").read_text().strip()
        path = path / step
    for name in ("model_config.json", "checkpoint_metadata.json", "model"):
        if not (path / name).exists():
            raise InputDataError(
                f"nanotron checkpoint {path}: {name} is missing; expected a nanotron step folder "
                "(model_config.json, checkpoint_metadata.json, model/) or a folder with latest.txt"
            )
    return path


def read_model_config(step_dir: Path) -> LlamaConfig:
    """``model_config.json`` as a strict ``LlamaConfig``; unsupported features are errors."""
    try:
        cfg = from_dict(LlamaConfig, json.loads((step_dir / "model_config.json").read_text()), "model_config")
    except ConfigError as err:
        raise InputDataError(f"nanotron checkpoint {step_dir}: {err}") from err
    for name, bad in (
        ("is_llama_config", not cfg.is_llama_config),
        ("attention_bias", cfg.attention_bias),
        ("rope_scaling", cfg.rope_scaling is not None),
        ("pretraining_tp", cfg.pretraining_tp != 1),
    ):
        if bad:
            raise InputDataError(
                f"nanotron checkpoint {step_dir}: model_config {name}={getattr(cfg, name)!r} is not "
                "supported "
                "by this converter (Llama, no attention bias, no rope scaling, pretraining_tp 1)"
            )
    return cfg


def expected_parameters(cfg: LlamaConfig) -> list[str]:
    """nanotron parameter names of a ``LlamaForTraining`` with this config (tied lm_head stored once)."""
    names = [EMBED, "model.final_layer_norm.pp_block.weight"]
    for i in range(cfg.num_hidden_layers):
        names += [f"model.decoder.{i}.pp_block.{p}.weight" for p in LAYER_PARAMS]
    if not cfg.tie_word_embeddings:
        names.append("model.lm_head.pp_block.weight")
    return names


def _parse_slices(text: str) -> tuple[slice, ...]:
    return tuple(
        slice(*(None if x == "None" else int(x) for x in part.split(","))) for part in text.split("|")
    )


def _read_parameter(name: str, files: list[Path]) -> torch.Tensor:
    """One parameter from its file (replicated) or its TP shards (placed by their slice metadata)."""
    if len(files) == 1 and "_tp-rank-" not in files[0].name:
        with safe_open(str(files[0]), framework="pt") as f:
            return f.get_tensor("data")
    full: torch.Tensor | None = None
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            meta, shard = f.metadata() or {}, f.get_tensor("data")
        if "unsharded_shape" not in meta or "local_global_slices_pairs" not in meta:
            raise InputDataError(
                f"nanotron checkpoint: {path} lacks unsharded_shape / local_global_slices_pairs"
            )
        shape = tuple(int(x) for x in meta["unsharded_shape"].strip("()[] ").split(",") if x.strip())
        full = torch.empty(shape, dtype=shard.dtype) if full is None else full
        if tuple(full.shape) != shape:
            raise InputDataError(
                f"nanotron checkpoint: {path} says unsharded_shape {shape}, others {full.shape}"
            )
        for pair in meta["local_global_slices_pairs"].split(";"):
            local, glob = pair.split("#")
            full[_parse_slices(glob)] = shard[_parse_slices(local)]
    assert full is not None
    return full


def read_parameters(step_dir: Path, cfg: LlamaConfig) -> dict[str, torch.Tensor]:
    """Every parameter under ``step_dir/model`` by nanotron name; unknown, missing or odd files are errors."""
    root = step_dir / "model"
    found: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*.safetensors")):
        match = SHARD_FILE.match(path.name)
        if match is None:
            raise InputDataError(
                f"nanotron checkpoint: unexpected file {path.relative_to(step_dir)}; expected "
                "model_<weight|bias>[_pp-rank-P-of-N_tp-rank-T-of-M].safetensors (expert shards unsupported)"
            )
        name = ".".join([*path.relative_to(root).parent.parts, match["param"]])
        found.setdefault(name, []).append(path)
    expected = expected_parameters(cfg)
    unknown = sorted(set(found) - set(expected))
    missing = [n for n in expected if n not in found]
    if unknown or missing:
        raise InputDataError(
            f"nanotron checkpoint {step_dir}: unexpected parameters {unknown[:5]}, missing {missing[:5]} "
            f"(expected {len(expected)} Llama parameters under model/, e.g. {expected[2]})"
        )
    return {name: _read_parameter(name, found[name]) for name in expected}


def _deinterleave(w: torch.Tensor, head_dim: int) -> torch.Tensor:
    """GPT-J (interleaved) rotary row order -> GPT-NeoX (half-split) order, per head."""
    heads = [h.view(head_dim // 2, 2, -1).transpose(0, 1).reshape(head_dim, -1) for h in w.split(head_dim)]
    return torch.cat(heads)


def to_hf_state_dict(params: dict[str, torch.Tensor], cfg: LlamaConfig) -> dict[str, torch.Tensor]:
    """nanotron parameters -> ``LlamaForCausalLM`` state dict: split fused qkv / gate_up, trim vocab pad."""
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    kv_heads = cfg.num_key_value_heads or cfg.num_attention_heads
    q_rows, kv_rows = cfg.num_attention_heads * head_dim, kv_heads * head_dim
    out = {
        "model.embed_tokens.weight": params[EMBED][: cfg.vocab_size],
        "model.norm.weight": params["model.final_layer_norm.pp_block.weight"],
    }
    for i in range(cfg.num_hidden_layers):
        nt, hf = f"model.decoder.{i}.pp_block", f"model.layers.{i}"
        qkv = params[f"{nt}.attn.qkv_proj.weight"]
        if qkv.shape[0] != q_rows + 2 * kv_rows:
            raise InputDataError(
                f"nanotron checkpoint: {nt}.attn.qkv_proj has {qkv.shape[0]} rows, expected "
                f"{q_rows} + 2 x {kv_rows}"
            )
        q, k, v = qkv.split([q_rows, kv_rows, kv_rows])
        if cfg.rope_interleaved:
            q, k = _deinterleave(q, head_dim), _deinterleave(k, head_dim)
        gate, up = params[f"{nt}.mlp.gate_up_proj.weight"].chunk(2)
        out.update(
            {
                f"{hf}.self_attn.q_proj.weight": q,
                f"{hf}.self_attn.k_proj.weight": k,
                f"{hf}.self_attn.v_proj.weight": v,
                f"{hf}.self_attn.o_proj.weight": params[f"{nt}.attn.o_proj.weight"],
                f"{hf}.mlp.gate_proj.weight": gate,
                f"{hf}.mlp.up_proj.weight": up,
                f"{hf}.mlp.down_proj.weight": params[f"{nt}.mlp.down_proj.weight"],
                f"{hf}.input_layernorm.weight": params[f"{nt}.input_layernorm.weight"],
                f"{hf}.post_attention_layernorm.weight": params[f"{nt}.post_attention_layernorm.weight"],
            }
        )
    lm_head = params[EMBED if cfg.tie_word_embeddings else "model.lm_head.pp_block.weight"]
    out["lm_head.weight"] = lm_head[: cfg.vocab_size]
    return out


def hf_config(cfg: LlamaConfig, dtype: str) -> Any:
    """The ``transformers.LlamaConfig`` equivalent of nanotron's config."""
    from transformers import LlamaConfig as HFLlamaConfig

    return HFLlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads or cfg.num_attention_heads,
        hidden_act=cfg.hidden_act,
        max_position_embeddings=cfg.max_position_embeddings,
        rms_norm_eps=cfg.rms_norm_eps,
        initializer_range=cfg.initializer_range,
        tie_word_embeddings=cfg.tie_word_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        bos_token_id=cfg.bos_token_id,
        eos_token_id=cfg.eos_token_id,
        pad_token_id=cfg.pad_token_id,
        use_cache=True,
        dtype=dtype,
    )


def convert_checkpoint(
    checkpoint: Path, out: Path, tokenizer_dir: Path | None = None, dtype: str = "float32"
) -> dict[str, Any]:
    """Write an HF model folder (``config.json``, ``model.safetensors``, tokenizer files) into ``out``."""
    from transformers import LlamaForCausalLM

    if dtype not in DTYPES:
        raise ConfigError(f"nanotron convert: dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    step_dir = resolve_checkpoint(checkpoint)
    cfg = read_model_config(step_dir)
    state = to_hf_state_dict(read_parameters(step_dir, cfg), cfg)
    with torch.random.fork_rng(devices=[]):
        model = LlamaForCausalLM(hf_config(cfg, dtype)).to(DTYPES[dtype])
    missing, unexpected = model.load_state_dict(
        {k: v.to(DTYPES[dtype]) for k, v in state.items()}, strict=False
    )
    if missing or unexpected:
        raise InputDataError(f"nanotron convert: HF model keys missing {missing}, unexpected {unexpected}")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    if tokenizer_dir is not None:
        for name in TOKENIZER_FILES:
            if (Path(tokenizer_dir) / name).is_file():
                shutil.copyfile(Path(tokenizer_dir) / name, out / name)
    meta = json.loads((step_dir / "checkpoint_metadata.json").read_text())
    step = meta.get("metas", {}).get("last_train_step")
    return {
        "source": str(step_dir),
        "step": step,
        "dtype": dtype,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def main(argv: list[str] | None = None) -> None:
    """Command line: convert CHECKPOINT (a step folder or a checkpoints_path with latest.txt) into OUT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--tokenizer", type=Path, default=None, help="tokenizer folder to copy beside the model"
    )
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    args = parser.parse_args(argv)
    print(json.dumps(convert_checkpoint(args.checkpoint, args.out, args.tokenizer, args.dtype)))


if __name__ == "__main__":
    main()
