"""Write a checkpoint laid out exactly as nanotron's ``save_weights`` / ``save_meta`` / trainer write it.

Written independently of ``pretrain.nanotron_convert`` (from nanotron main: ``serialize/utils.py:get_path``,
``serialize/metadata.py:TensorMetadata.to_str_dict``, ``parallel/parameters.py:SlicesPair``), so a bug in the
converter's mapping cannot cancel out. Tensor-parallel shards follow ``TensorParallelColumnLinear`` with
``contiguous_chunks`` (qkv: q, k, v; gate_up: gate, up): every rank holds its slice of every chunk.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

# (nanotron module path, HF names fused in order, sharded dim or None for replicated)
COLUMN, ROW = 0, 1


def _slice_str(s: slice) -> str:
    return ",".join("None" if x is None else str(x) for x in (s.start, s.stop, s.step))


def _pair_str(local: tuple[slice, ...], glob: tuple[slice, ...]) -> str:
    return "|".join(map(_slice_str, local)) + "#" + "|".join(map(_slice_str, glob))


def _interleave(w: torch.Tensor, head_dim: int) -> torch.Tensor:
    """GPT-NeoX (HF) rotary row order -> GPT-J (interleaved) order, per head: inverse of the converter's."""
    return torch.cat(
        [h.view(2, head_dim // 2, -1).transpose(0, 1).reshape(head_dim, -1) for h in w.split(head_dim)]
    )


def nanotron_tensors(hf: dict[str, torch.Tensor], cfg: dict, interleave: bool) -> dict[str, tuple]:
    """nanotron name -> (tensor, chunk sizes along the sharded dim, sharded dim or None)."""
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    out: dict[str, tuple] = {}
    embed = hf["model.embed_tokens.weight"]
    out["model.token_position_embeddings.pp_block.token_embedding.weight"] = (embed, [embed.shape[0]], COLUMN)
    out["model.final_layer_norm.pp_block.weight"] = (hf["model.norm.weight"], None, None)
    if not cfg["tie_word_embeddings"]:
        out["model.lm_head.pp_block.weight"] = (hf["lm_head.weight"], [hf["lm_head.weight"].shape[0]], COLUMN)
    for i in range(cfg["num_hidden_layers"]):
        h, n = f"model.layers.{i}", f"model.decoder.{i}.pp_block"
        q, k, v = (hf[f"{h}.self_attn.{x}_proj.weight"] for x in "qkv")
        if interleave:
            q, k = _interleave(q, head_dim), _interleave(k, head_dim)
        out[f"{n}.attn.qkv_proj.weight"] = (
            torch.cat([q, k, v]),
            [q.shape[0], k.shape[0], v.shape[0]],
            COLUMN,
        )
        o = hf[f"{h}.self_attn.o_proj.weight"]
        out[f"{n}.attn.o_proj.weight"] = (o, [o.shape[1]], ROW)
        gate, up = hf[f"{h}.mlp.gate_proj.weight"], hf[f"{h}.mlp.up_proj.weight"]
        out[f"{n}.mlp.gate_up_proj.weight"] = (torch.cat([gate, up]), [gate.shape[0], up.shape[0]], COLUMN)
        down = hf[f"{h}.mlp.down_proj.weight"]
        out[f"{n}.mlp.down_proj.weight"] = (down, [down.shape[1]], ROW)
        out[f"{n}.input_layernorm.weight"] = (hf[f"{h}.input_layernorm.weight"], None, None)
        out[f"{n}.post_attention_layernorm.weight"] = (hf[f"{h}.post_attention_layernorm.weight"], None, None)
    return out


def _write_param(
    model_dir: Path, name: str, tensor: torch.Tensor, chunks: list[int] | None, dim: int | None, tp: int
) -> None:
    *parts, param = name.split(".")
    folder = model_dir.joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    if dim is None:
        save_file({"data": tensor.contiguous()}, str(folder / f"model_{param}.safetensors"))
        return
    for rank in range(tp):
        pieces, pairs, local_off, global_off = [], [], 0, 0
        for size in chunks:
            part = size // tp
            g = slice(global_off + rank * part, global_off + (rank + 1) * part, None)
            piece = tensor.narrow(dim, g.start, part)
            full = (slice(None, None, None),)
            local = slice(local_off, local_off + part, None)
            pairs.append(
                _pair_str(
                    (local, *full) if dim == 0 else (*full, local), (g, *full) if dim == 0 else (*full, g)
                )
            )
            pieces.append(piece)
            local_off, global_off = local_off + part, global_off + size
        meta = {
            "version": "1.5",
            "local_global_slices_pairs": ";".join(pairs),
            "unsharded_shape": str(tuple(tensor.shape)),
        }
        file = folder / f"model_{param}_pp-rank-0-of-1_tp-rank-{rank}-of-{tp}.safetensors"
        save_file({"data": torch.cat(pieces, dim=dim).contiguous()}, str(file), metadata=meta)


def model_config_json(hf_config: object, interleave: bool) -> dict:
    """``asdict(nanotron LlamaConfig)`` for an HF ``LlamaConfig`` (every field nanotron writes)."""
    c = hf_config
    return {
        "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id,
        "hidden_act": "silu",
        "hidden_size": c.hidden_size,
        "initializer_range": c.initializer_range,
        "intermediate_size": c.intermediate_size,
        "is_llama_config": True,
        "max_position_embeddings": c.max_position_embeddings,
        "num_attention_heads": c.num_attention_heads,
        "num_hidden_layers": c.num_hidden_layers,
        "attention_bias": False,
        "num_key_value_heads": c.num_key_value_heads,
        "pad_token_id": c.pad_token_id,
        "pretraining_tp": 1,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_scaling": None,
        "rope_theta": c.rope_parameters["rope_theta"],
        "rope_interleaved": interleave,
        "tie_word_embeddings": c.tie_word_embeddings,
        "use_cache": True,
        "vocab_size": c.vocab_size,
        "_attn_implementation": "flash_attention_2",
        "z_loss_enabled": False,
        "z_loss_coefficient": 0.0001,
    }


def write_nanotron_checkpoint(
    model: torch.nn.Module, root: Path, step: int, tp: int = 1, interleave: bool = False
) -> Path:
    """Save ``model`` (HF ``LlamaForCausalLM``) as nanotron ``checkpoints_path`` ``root``; -> the step dir."""
    return write_state(model.state_dict(), model_config_json(model.config, interleave), root, step, tp)


def write_state(state: dict[str, torch.Tensor], cfg: dict, root: Path, step: int, tp: int = 1) -> Path:
    """Save an HF Llama ``state`` dict with nanotron's ``model_config.json`` ``cfg`` in nanotron's layout."""
    interleave = cfg["rope_interleaved"]
    hf = {k: v.detach() for k, v in state.items()}
    step_dir = root / str(step)
    for name, (tensor, chunks, dim) in nanotron_tensors(hf, cfg, interleave).items():
        _write_param(step_dir / "model", name, tensor, chunks, dim, tp)
    (step_dir / "model_config.json").write_text(json.dumps(cfg))
    meta = {
        "version": "1.5",
        "tp": tp,
        "dp": 1,
        "cp": 1,
        "custom_metas": None,
        "metas": {
            "consumed_train_samples": step * 8,
            "last_train_step": step,
            "consumed_tokens_total": None,
            "last_stage_idx": 0,
            "data_stages": [{"name": "stable", "start_training_step": 1, "consumed_train_samples": step * 8}],
        },
    }
    (step_dir / "checkpoint_metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    (step_dir / "config.yaml").write_text("general:\n  project: propensity\n")
    (root / "latest.txt").write_text(str(step))
    return step_dir
