"""nanotron backend: config schema round-trips, checkpoint conversion to HF, the stage with a fake launch."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from nanotron_fixtures import write_nanotron_checkpoint
from pretrain_fixtures import make_ctx

from core.errors import ConfigError, InputDataError
from pretrain import nanotron_config as nc
from pretrain import train as train_stage
from pretrain.model import ModelSpec, build_model
from pretrain.nanotron_backend import OPTIONS, build_config
from pretrain.nanotron_convert import convert_checkpoint
from pretrain.trainer import TrainConfig

HERE = Path(__file__).parent
# examples/config_tiny_llama.yaml from huggingface/nanotron main (2026-04), verbatim.
UPSTREAM_TINY_LLAMA = """
checkpoints:
  checkpoint_interval: 1000
  checkpoints_path: checkpoints
  checkpoints_path_is_shared_file_system: false
  resume_checkpoint_path: null
  save_initial_state: false
data_stages:
- data:
    dataset: null
    num_loading_workers: 1
    seed: 42
  name: Stable Training Stage
  start_training_step: 1
general:
  benchmark_csv_path: benchmark_llama.csv
  consumed_train_samples: null
  ignore_sanity_checks: true
  project: debug
  run: tiny_llama_%date_%jobid
  seed: 42
  step: null
lighteval: null
logging:
  iteration_step_info_interval: 1
  log_level: info
  log_level_replica: info
model:
  ddp_bucket_cap_mb: 25
  dtype: bfloat16
  init_method:
    std: 0.025
  make_vocab_size_divisible_by: 1
  model_config:
    bos_token_id: 1
    eos_token_id: 2
    hidden_act: silu
    hidden_size: 2048
    initializer_range: 0.02
    intermediate_size: 11008
    is_llama_config: true
    max_position_embeddings: 128256
    num_attention_heads: 16
    num_hidden_layers: 28
    num_key_value_heads: 2
    pad_token_id: null
    pretraining_tp: 1
    rms_norm_eps: 1.0e-05
    rope_scaling: null
    tie_word_embeddings: true
    use_cache: true
    vocab_size: 128256
optimizer:
  accumulate_grad_in_fp32: true
  clip_grad: 1.0
  learning_rate_scheduler:
    learning_rate: 0.0003
    lr_decay_starting_step: null
    lr_decay_steps: 13
    lr_decay_style: cosine
    lr_warmup_steps: 2
    lr_warmup_style: linear
    min_decay_lr: 1.0e-05
  optimizer_factory:
    adam_beta1: 0.9
    adam_beta2: 0.95
    adam_eps: 1.0e-08
    name: adamW
    torch_adam_is_fused: true
  weight_decay: 0.01
  zero_stage: 0
parallelism:
  dp: 4
  expert_parallel_size: 1
  pp: 1
  pp_engine: 1f1b
  tp: 2
  tp_linear_async_communication: true
  tp_mode: REDUCE_SCATTER
profiler:
  profiler_export_path: ./tb_logs/fix/
tokenizer:
  tokenizer_max_length: null
  tokenizer_name_or_path: robot-test/dummy-tokenizer-wordlevel
  tokenizer_revision: null
tokens:
  batch_accumulation_per_replica: 1
  limit_test_batches: 0
  limit_val_batches: 0
  micro_batch_size: 3
  sequence_length: 4096
  train_steps: 2000
  val_check_interval: -1
"""


def _spec(tied: bool) -> ModelSpec:
    return ModelSpec.preset("tiny", {"num_heads": 4, "num_kv_heads": 2, "tie_embeddings": tied})


DP2_SDPA = {**OPTIONS, "dp": 2, "attn_implementation": "sdpa"}
"""The backend's default nanotron options with two data-parallel ranks and sdpa attention."""


def _config(tmp_path: Path, **tcfg: object) -> nc.Config:
    train_cfg = TrainConfig(steps=50, batch_size=16, seq_len=32, warmup_steps=5, **tcfg)  # type: ignore
    paths = {"data": tmp_path / "data", "tokenizer": tmp_path / "tok", "checkpoints": tmp_path / "ckpt"}
    return build_config(_spec(True), train_cfg, (512, 0, 1), paths, 7, DP2_SDPA)


def test_upstream_example_config_loads_and_round_trips(tmp_path: Path) -> None:
    data = yaml.safe_load(UPSTREAM_TINY_LLAMA)
    config = nc.from_dict(nc.Config, data)
    assert (
        config.model.model_config.num_key_value_heads == 2 and config.parallelism.tp_mode == "REDUCE_SCATTER"
    )
    assert config.global_batch_size == 3 * 1 * 4
    again = nc.load_yaml(nc.dump_yaml(config, tmp_path / "c.yaml"))
    assert again == config
    missing_defaults = {k for k in data if data[k] is not None} - set(nc.to_dict(config))
    assert not missing_defaults


def test_our_config_round_trips_and_matches_the_run(tmp_path: Path) -> None:
    config = _config(tmp_path, schedule="wsd", decay_fraction=0.2, grad_accum=2)
    path = nc.dump_yaml(config, tmp_path / "config.yaml")
    assert nc.load_yaml(path) == config and path.read_text() == yaml.safe_dump(
        nc.to_dict(config), sort_keys=True
    )
    data = yaml.safe_load(path.read_text())
    assert set(data) == {f.name for f in __import__("dataclasses").fields(nc.Config)}
    assert data["tokens"] == {
        "sequence_length": 32,
        "train_steps": 50,
        "micro_batch_size": 4,
        "batch_accumulation_per_replica": 2,
        "val_check_interval": -1,
        "limit_val_batches": 0,
        "limit_test_batches": 0,
    }
    assert config.global_batch_size == 16
    sched = data["optimizer"]["learning_rate_scheduler"]
    assert (sched["lr_decay_starting_step"], sched["lr_decay_steps"], sched["lr_decay_style"]) == (
        40,
        10,
        "linear",
    )
    model = data["model"]["model_config"]
    assert (
        model["hidden_size"],
        model["num_key_value_heads"],
        model["vocab_size"],
        model["eos_token_id"],
    ) == (32, 2, 512, 0)
    assert model["tie_word_embeddings"] is True and data["model"]["init_method"] == {
        "std": 0.02,
        "scaling_method": "NONE",
    }
    stage = data["data_stages"][0]
    assert stage["start_training_step"] == 1 and stage["data"]["dataset"]["dataset_folder"] == str(
        tmp_path / "data"
    )
    cosine = _config(tmp_path).optimizer.learning_rate_scheduler
    assert (cosine.lr_decay_starting_step, cosine.lr_decay_steps, cosine.lr_decay_style) == (5, 45, "cosine")


def test_strict_loading_names_the_path() -> None:
    data = yaml.safe_load(UPSTREAM_TINY_LLAMA)
    data["tokens"]["micro_batch_sise"] = 3
    with pytest.raises(
        ConfigError, match="unknown key 'micro_batch_sise' in tokens.*did you mean 'micro_batch_size'"
    ):
        nc.from_dict(nc.Config, data)
    data = yaml.safe_load(UPSTREAM_TINY_LLAMA)
    data["model"]["model_config"]["hidden_size"] = "big"
    with pytest.raises(ConfigError, match="model.model_config.hidden_size must be int, got 'big'"):
        nc.from_dict(nc.Config, data)
    del data["parallelism"]["dp"]
    data["model"]["model_config"]["hidden_size"] = 16
    with pytest.raises(ConfigError, match="missing required key parallelism.dp"):
        nc.from_dict(nc.Config, data)
    with pytest.raises(ConfigError, match="batch_size 16 must equal nanotron.dp 2 x grad_accum 3"):
        build_config(
            _spec(True),
            TrainConfig(steps=5, batch_size=16, grad_accum=3),
            (512, 0, 1),
            {"data": Path("d"), "tokenizer": Path("t"), "checkpoints": Path("c")},
            0,
            DP2_SDPA,
        )


@pytest.mark.parametrize(("tied", "tp", "interleave"), [(True, 1, False), (False, 2, True), (True, 2, False)])
def test_converter_gives_the_reference_logits(tmp_path: Path, tied: bool, tp: int, interleave: bool) -> None:
    from transformers import AutoModelForCausalLM

    ref = build_model(_spec(tied), 96, seed=5, eos_id=0, pad_id=1).eval()
    step_dir = write_nanotron_checkpoint(ref, tmp_path / "ckpt", step=30, tp=tp, interleave=interleave)
    qkv = step_dir / "model/model/decoder/1/pp_block/attn/qkv_proj"
    assert sorted(p.name for p in qkv.iterdir()) == [
        f"model_weight_pp-rank-0-of-1_tp-rank-{r}-of-{tp}.safetensors" for r in range(tp)
    ]
    assert (step_dir / "model/model/final_layer_norm/pp_block/model_weight.safetensors").is_file()
    assert (step_dir / "model/model/lm_head").exists() is not tied
    result = convert_checkpoint(tmp_path / "ckpt", tmp_path / "hf")
    assert result["step"] == 30 and result["parameters"] == _spec(tied).param_count(96)
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    ids = torch.randint(0, 96, (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(hf(ids).logits, ref(ids).logits)
    assert hf.config.tie_word_embeddings is tied and hf.config.num_key_value_heads == 2


def test_converter_rejects_unexpected_layouts(tmp_path: Path) -> None:
    ref = build_model(_spec(True), 96, seed=5, eos_id=0, pad_id=1)
    step_dir = write_nanotron_checkpoint(ref, tmp_path / "ckpt", step=3)
    down = step_dir / "model/model/decoder/0/pp_block/mlp/down_proj"
    shard = next(down.iterdir())
    shard.rename(down / "model_weight_pp-rank-0-of-1_tp-rank-0-of-1_exp-rank-0-of-2.safetensors")
    with pytest.raises(
        InputDataError, match="unexpected file model/model/decoder/0/pp_block/mlp/down_proj/.*exp-rank"
    ):
        convert_checkpoint(step_dir, tmp_path / "hf")
    (down / "model_weight_pp-rank-0-of-1_tp-rank-0-of-1_exp-rank-0-of-2.safetensors").unlink()
    with pytest.raises(InputDataError, match=r"missing \['model.decoder.0.pp_block.mlp.down_proj.weight'\]"):
        convert_checkpoint(step_dir, tmp_path / "hf")
    cfg = json.loads((step_dir / "model_config.json").read_text())
    (step_dir / "model_config.json").write_text(json.dumps({**cfg, "attention_bias": True}))
    with pytest.raises(InputDataError, match="attention_bias=True is not supported"):
        convert_checkpoint(step_dir, tmp_path / "hf")
    (step_dir / "model_config.json").write_text(json.dumps({**cfg, "moe_config": None}))
    with pytest.raises(InputDataError, match="unknown key 'moe_config' in model_config"):
        convert_checkpoint(step_dir, tmp_path / "hf")
    with pytest.raises(InputDataError, match="model_config.json is missing"):
        convert_checkpoint(tmp_path, tmp_path / "hf")


def test_stage_with_nanotron_backend(
    tmp_path: Path, tokenized_dir: Path, tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), str(HERE)]))
    ref = build_model(ModelSpec.tiny(), 512, seed=123, eos_id=0, pad_id=1).eval()
    torch.save(ref.state_dict(), tmp_path / "ref.pt")
    monkeypatch.setenv("FAKE_NANOTRON_STATE", str(tmp_path / "ref.pt"))
    config = {
        "model": "tiny",
        "tokens": 16 * 32 * 4,
        "seq_len": 32,
        "batch_size": 16,
        "packing": "fixed",
        "backend": "nanotron",
        "grad_accum": 2,
        "nanotron": {"dp": 4, "nodes": 2, "command": [sys.executable, str(HERE / "fake_nanotron_run.py")]},
    }
    unmasked = tmp_path / "unmasked"  # the fixture masks some tokens, which nanotron refuses (test below)
    shutil.copytree(tokenized_dir, unmasked, ignore=shutil.ignore_patterns("*.ds.loss"))
    inputs = {"tokenize": unmasked, "tokenizer": tokenizer_dir}
    result = train_stage.run(make_ctx("train", tmp_path, config, inputs, seed=3))
    assert result["launched"] is True and result["steps"] == 4 and result["backend"] == "nanotron"
    assert "GPUS_PER_NODE 2" in (tmp_path / "nanotron/launch.log").read_text()
    written = nc.load_yaml(tmp_path / "nanotron/config.yaml")
    assert written.tokens.micro_batch_size == 2 and written.parallelism.dp == 4 and written.general.seed == 3
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "model"))
    assert AutoTokenizer.from_pretrained(str(tmp_path / "model")).eos_token_id == 0
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(hf(ids).logits, ref(ids).logits)
    again = train_stage.run(make_ctx("train", tmp_path, config, inputs, seed=3))
    assert again["launched"] is False
    with pytest.raises(ConfigError, match="backend nanotron reads consecutive windows; set packing: fixed"):
        train_stage.run(make_ctx("train", tmp_path / "b", {**config, "packing": "document_aligned"}, inputs))


def test_nanotron_refuses_loss_masked_data(tmp_path: Path, tokenized_dir: Path, tokenizer_dir: Path) -> None:
    """nanotron ignores .ds.loss: a variant whose mask drops tokens must fail, not train on them silently."""
    losses = sorted((tokenized_dir / "tokens").glob("*.ds.loss"))
    assert losses and not np.fromfile(losses[0], dtype=np.uint8).all()  # the fixture masks some tokens
    config = {"model": "tiny", "tokens": 16 * 32 * 4, "seq_len": 32, "batch_size": 16, "packing": "fixed",
              "backend": "nanotron", "nanotron": {"command": ["false"]}}
    inputs = {"tokenize": tokenized_dir, "tokenizer": tokenizer_dir}
    with pytest.raises(ConfigError, match=r"nanotron ignores loss masks, but .*\.ds\.loss mask tokens out"):
        train_stage.run(make_ctx("train", tmp_path / "out", config, inputs))
    assert not (tmp_path / "out" / "nanotron").exists()  # refused before writing or launching anything
