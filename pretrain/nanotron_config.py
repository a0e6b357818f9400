"""nanotron's training config as plain dataclasses, so it can be written and checked without nanotron.

The classes mirror ``nanotron.config`` (huggingface/nanotron main, read 2026-04: ``config/config.py``,
``config/models_config.py``, ``config/parallelism_config.py``) field for field, with the same names, defaults
and nesting, restricted to what a Llama pretraining run on datatrove ``.ds`` folders uses: no profiler,
lighteval, S3 upload, MoE or Qwen2 sections (those stay ``None``). Values are kept in nanotron's YAML form
(``dtype: bfloat16``, ``pp_engine: 1f1b``, ``tp_mode: REDUCE_SCATTER``, ``scaling_method: NUM_LAYERS``).

``from_dict`` is strict like nanotron's dacite loader (``strict=True``): unknown keys, missing required keys
and wrong types raise ``ConfigError`` naming the dotted path. ``to_dict`` / ``dump_yaml`` / ``load_yaml``
round-trip exactly.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from core.errors import ConfigError

T = TypeVar("T")


@dataclass
class GeneralArgs:
    """``general``: run naming and the global seed."""

    project: str
    run: str | None = None
    seed: int | None = None
    step: int | None = None
    consumed_train_samples: int | None = None
    benchmark_csv_path: str | None = None
    ignore_sanity_checks: bool = True


@dataclass
class ParallelismArgs:
    """``parallelism``: data, pipeline and tensor parallel degrees (dp x pp x tp = GPUs)."""

    dp: int
    pp: int
    tp: int
    pp_engine: str | None = "1f1b"
    tp_mode: str | None = "REDUCE_SCATTER"
    tp_linear_async_communication: bool | None = True
    recompute_layer: bool = False
    tp_recompute_allgather: bool = True
    expert_parallel_size: int = 1
    context_parallel_size: int = 1


@dataclass
class LlamaConfig:
    """``model.model_config``: nanotron's ``LlamaConfig`` (also what ``model_config.json`` holds)."""

    bos_token_id: int = 1
    eos_token_id: int = 2
    hidden_act: str = "silu"
    hidden_size: int = 4096
    initializer_range: float = 0.02
    intermediate_size: int = 11008
    is_llama_config: bool = True
    max_position_embeddings: int = 2048
    num_attention_heads: int = 32
    num_hidden_layers: int = 32
    attention_bias: bool = False
    num_key_value_heads: int | None = None
    pad_token_id: int | None = None
    pretraining_tp: int = 1
    rms_norm_eps: float = 1e-6
    rope_scaling: dict | None = None
    rope_theta: float = 10000.0
    rope_interleaved: bool = False
    tie_word_embeddings: bool = False
    use_cache: bool = True
    vocab_size: int = 32000
    _attn_implementation: str | None = "flash_attention_2"
    z_loss_enabled: bool = False
    z_loss_coefficient: float = 0.0001


@dataclass
class RandomInit:
    """``model.init_method``: normal init with std, scaled per nanotron's ``InitScalingMethod``."""

    std: float
    scaling_method: str = "NUM_LAYERS"


@dataclass
class ModelArgs:
    """``model``: architecture, initialisation and parameter dtype."""

    model_config: LlamaConfig
    init_method: RandomInit
    dtype: str | None = "bfloat16"
    make_vocab_size_divisible_by: int = 1
    ddp_bucket_cap_mb: int = 25


@dataclass
class TokenizerArgs:
    """``tokenizer``: must equal the tokenizer path datatrove recorded in ``.ds.metadata``."""

    tokenizer_name_or_path: str | None = None
    tokenizer_revision: str | None = None
    tokenizer_max_length: int | None = None


@dataclass
class CheckpointsArgs:
    """``checkpoints``: where and how often nanotron saves; resume reads ``latest.txt`` there."""

    checkpoints_path: str
    checkpoint_interval: int
    save_initial_state: bool | None = False
    save_final_state: bool | None = True
    resume_checkpoint_path: str | None = None
    load_lr_scheduler: bool | None = True
    load_optimizer: bool | None = True
    checkpoints_path_is_shared_file_system: bool | None = False


@dataclass
class LoggingArgs:
    """``logging``: log levels and how often a step's info is printed."""

    log_level: str | None = "info"
    log_level_replica: str | None = "info"
    iteration_step_info_interval: int | None = 1


@dataclass
class TokensArgs:
    """``tokens``: sequence length, steps and the per-replica micro batch / accumulation."""

    sequence_length: int
    train_steps: int
    micro_batch_size: int
    batch_accumulation_per_replica: int
    val_check_interval: int | None = -1
    limit_val_batches: int | None = 0
    limit_test_batches: int | None = 0


@dataclass
class LRSchedulerArgs:
    """``optimizer.learning_rate_scheduler``: warmup, then a linear / cosine / 1-sqrt decay."""

    learning_rate: float
    lr_warmup_steps: int = 0
    lr_warmup_style: str | None = None
    lr_decay_style: str | None = None
    lr_decay_steps: int | None = None
    lr_decay_starting_step: int | None = None
    min_decay_lr: float | None = None


@dataclass
class AdamWOptimizerArgs:
    """``optimizer.optimizer_factory`` for AdamW."""

    adam_eps: float
    adam_beta1: float
    adam_beta2: float
    torch_adam_is_fused: bool
    name: str = "adamW"


@dataclass
class OptimizerArgs:
    """``optimizer``: AdamW, ZeRO stage, decay, clipping and the schedule."""

    optimizer_factory: AdamWOptimizerArgs
    zero_stage: int
    weight_decay: float
    clip_grad: float | None
    accumulate_grad_in_fp32: bool
    learning_rate_scheduler: LRSchedulerArgs
    weight_decay_exclude_named_params: list[str] | None = None


@dataclass
class NanosetDatasetsArgs:
    """``data_stages[].data.dataset``: datatrove ``.ds`` folders (nanotron's Nanoset)."""

    dataset_folder: str | list[str]
    dataset_weights: list[float] | None = None
    dataset_read_path: str | list[str] | None = None
    tokenizer_name: str | None = None
    vocab_size: int | None = None
    token_size_in_bytes: int | None = None
    return_positions: bool | None = True
    skip_in_stream: bool | None = False
    pad_samples_to_global_batch_size: bool | None = False
    dataset_max_tokens: list[int] | None = None
    shuffle_files: bool | None = False
    use_old_brrr_dataloader: bool | None = False


@dataclass
class DataArgs:
    """``data_stages[].data``."""

    dataset: NanosetDatasetsArgs | None
    seed: int | None
    num_loading_workers: int | None = 1


@dataclass
class DatasetStageArgs:
    """One ``data_stages`` entry; nanotron builds only the last stage that has started."""

    name: str
    start_training_step: int
    data: DataArgs
    sequence_length: int | None = None


@dataclass
class Config:
    """The whole nanotron YAML (``run_train.py --config-file``)."""

    general: GeneralArgs
    parallelism: ParallelismArgs
    model: ModelArgs
    tokenizer: TokenizerArgs | None = None
    checkpoints: CheckpointsArgs | None = None
    logging: LoggingArgs | None = None
    metrics_logging: dict | None = None
    tokens: TokensArgs | None = None
    optimizer: OptimizerArgs | None = None
    data_stages: list[DatasetStageArgs] | None = field(default=None)
    profiler: dict | None = None
    lighteval: dict | None = None
    s3_upload: dict | None = None

    @property
    def global_batch_size(self) -> int:
        """Sequences per optimizer step: micro batch x accumulation x dp (nanotron's definition)."""
        assert self.tokens is not None
        return self.tokens.micro_batch_size * self.tokens.batch_accumulation_per_replica * self.parallelism.dp


def to_dict(obj: Any) -> Any:
    """Plain YAML-ready data of a config dataclass (recursively; lists stay lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, path: str) -> Any:
    """``value`` checked against the annotation ``tp``; dataclasses are built recursively."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [o for o in typing.get_args(tp) if o is not type(None)]
        if value is None and len(options) < len(typing.get_args(tp)):
            return None
        if len(options) == 1:
            return _convert(value, options[0], path)
        for option in options:
            try:
                return _convert(value, option, path)
            except ConfigError:
                continue
        raise ConfigError(f"nanotron config: {path} = {value!r} matches none of {_describe(tp)}")
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"nanotron config: {path} must be null, got {value!r}")
        return None
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"nanotron config: {path} must be a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool, dict) and (
        not isinstance(value, tp) or (tp is int and isinstance(value, bool))
    ):
        raise ConfigError(f"nanotron config: {path} must be {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build ``cls`` from plain data, strictly: unknown or missing keys and wrong types are errors."""
    where = path or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"nanotron config: {where} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"nanotron config: unknown key {unknown[0]!r} in {where}{hint}; allowed: {', '.join(fields)}"
        )
    kwargs = {}
    for name, f in fields.items():
        dotted = f"{path}.{name}" if path else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"nanotron config: missing required key {dotted}")
            continue
        kwargs[name] = _convert(data[name], hints[name], dotted)
    return cls(**kwargs)


def dump_yaml(config: Config, path: Path) -> Path:
    """Write ``config`` as nanotron YAML (sorted keys, like nanotron's ``save_as_yaml``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=True))
    return path


def load_yaml(path: Path) -> Config:
    """Read and strictly check a nanotron YAML config."""
    return from_dict(Config, yaml.safe_load(Path(path).read_text()))
