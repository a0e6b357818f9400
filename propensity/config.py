"""The experiment config: one YAML file, validated strictly.

Unknown keys and wrong types are errors that name the field and the allowed values. Dotted overrides
(``train.tokens=500000``, ``propensity.config_text``) are applied before validation, so they are checked the
same way.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from core.documents import DEFAULT_MAX_CHARS
from core.errors import ConfigError
from core.names import NAME_PATTERN, Strict
from core.variants import VariantSettings
from eval_gpe.config import EvalSettings
from filters.config import ClassifierSpec, FastTextParams
from filters.model_files import classifier_files, hub_id_problem
from pretrain.settings import TokenizerSettings, TrainSettings
from propensity import variants
from propensity.config_text import apply_override, format_validation_error
from propensity.variants import VariantConfig, variant_union


class SourceConfig(Strict):
    """Where the pretraining documents come from."""

    kind: Literal["synthetic", "files", "hf"] = Field(
        "synthetic", description="synthetic: the embedded quickstart generator; files: your jsonl/parquet shards; "
        "hf: a Hugging Face dataset (local folder, cache or hub id)."
    )
    synthetic: dict[str, Any] = Field(
        default_factory=dict, description="Generator settings (seed, scale, shards, shares); kind=synthetic only."
    )
    paths: list[str] = Field(default_factory=list, description="Files or globs of jsonl(.gz/.zst) or parquet shards.")
    format: Literal["jsonl", "parquet"] = Field("jsonl", description="Format of the files in `paths`.")
    text_key: str = Field("text", description="Field holding the document text.")
    id_key: str = Field("id", description="Field holding the document id (documents without one get "
                        "'<file relative to the corpus folder>:<line or row>').")
    max_chars: int = Field(DEFAULT_MAX_CHARS, ge=1, strict=True, description="Documents longer than this many "
                           "characters are quarantined (too_long) by every stage that reads the source.")
    heldout: str | None = Field(None, description="jsonl of clean held-out documents for the held-out loss eval.")
    hf_path: str | None = Field(None, description="Dataset path or hub id (kind=hf).")
    hf_name: str | None = Field(None, description="Dataset config name (kind=hf).")
    split: str = Field("train", description="Dataset split (kind=hf).")
    revision: str | None = Field(None, description="Dataset revision (kind=hf).")

    @model_validator(mode="after")
    def _check_kind(self) -> SourceConfig:
        if self.kind == "files" and not self.paths:
            raise ValueError("source.kind is 'files' but source.paths is empty: list your shard files or globs")
        if self.kind == "hf" and not self.hf_path:
            raise ValueError("source.kind is 'hf' but source.hf_path is not set")
        if self.kind != "synthetic" and self.synthetic:
            raise ValueError(f"source.synthetic is only allowed with kind 'synthetic' (got kind {self.kind!r})")
        _unused_settings(self, "source", self.kind, SOURCE_USED_BY)
        return self


SOURCE_USED_BY = {"paths": ("files",), "format": ("files",), "text_key": ("files", "hf"), "id_key": ("files", "hf"),
                  "max_chars": ("files", "hf"),
                  "heldout": ("files", "hf"), "hf_path": ("hf",), "hf_name": ("hf",), "split": ("hf",),
                  "revision": ("hf",)}
"""The source kinds that read each setting (a setting away from its default under another kind is an error)."""


def _unused_settings(model: BaseModel, where: str, kind: str, used_by: dict[str, tuple[str, ...]]) -> None:
    """Reject a setting given a non-default value under a kind that never reads it, naming the kinds that do."""
    for name, kinds in used_by.items():
        default = type(model).model_fields[name].get_default(call_default_factory=True)
        if kind not in kinds and getattr(model, name) != default:
            raise ValueError(f"{where}.{name} has no effect with {where}.kind {kind!r}; it is used by kind "
                             f"{' / '.join(repr(k) for k in kinds)} (remove it, on the command line with "
                             f"--set '~{where}.{name}', or change the kind)")


class ClassifierConfig(ClassifierSpec):
    """The classifier that scores every document once: the classifier stage's ``filters.config.ClassifierSpec``,
    with fastText's settings typed (``filters.config.FastTextParams``) and cascade/ensemble members alike."""

    fasttext: FastTextParams = Field(default_factory=FastTextParams, description="kind=fasttext: training settings.")
    stages: list[ClassifierConfig] = Field(default_factory=list, description="kind=cascade: stages in order.")
    classifiers: list[ClassifierConfig] = Field(default_factory=list, description="kind=ensemble: members.")

    @model_validator(mode="after")
    def _check_settings(self) -> ClassifierConfig:
        _unused_settings(self, "classifier", self.kind, {"model_path": ("fasttext",), "train_data": ("fasttext",),
                                                         "fasttext": ("fasttext",)})
        if self.model_path and self.train_data:
            raise ValueError("classifier.train_data has no effect when classifier.model_path is set (the model "
                             "is used as it is): give one of them")
        return self


class TokenizerConfig(TokenizerSettings):
    """The tokenizer: ``pretrain.settings.TokenizerSettings``, with the settings a kind does not read refused."""

    @model_validator(mode="after")
    def _check_path(self) -> TokenizerConfig:
        if self.kind == "pretrained" and not self.path:
            raise ValueError("tokenizer.kind is 'pretrained' but tokenizer.path is not set")
        _unused_settings(self, "tokenizer", self.kind, {"path": ("pretrained",), "vocab_size": ("bpe",),
                                                        "max_docs": ("bpe",)})
        return self


class ModelConfig(Strict):
    preset: str = Field("quickstart", description="Named model preset (see pretrain.model.ModelSpec).")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Preset fields to override.")


class TrainConfig(TrainSettings):
    """Pretraining settings, identical for every variant (token-matched): ``pretrain.settings.TrainSettings``
    with the token budget required and the seeds of the experiment."""

    tokens: int = Field(ge=1000, description="Token budget per variant (the same for all variants).")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="Training seeds per variant.")

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int]) -> list[int]:
        return _no_duplicates("train.seeds", v)


class EvalConfig(EvalSettings):
    """The GPE battery every model gets: ``eval_gpe.config.EvalSettings`` plus the GPEs."""

    gpes: list[str | dict[str, Any]] = Field(
        default_factory=lambda: ["em_medicine"], min_length=1,
        description="GPEs: built-in names (eval_gpe/gpes/), paths to GPE YAML files (relative to this config's "
        "folder) or inline definitions; the first is the report's primary GPE.")

    @field_validator("gpes")
    @classmethod
    def _unique_gpes(cls, v: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        _no_duplicates("eval.gpes", [g for g in v if isinstance(g, str)])
        return v


def _no_duplicates(name: str, values: list) -> list:
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has duplicates: {values}")
    return values


class SlurmResources(Strict):
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str = "04:00:00"
    cpus: int = 2
    mem: str | None = None
    gpus: int = 0
    nodes: int = 1
    extra_sbatch: list[str] = Field(default_factory=list, description="Extra '#SBATCH' options, e.g. '--exclusive'.")
    setup: list[str] = Field(default_factory=list, description="Shell lines run before the stage "
                             "(module load, source venv/bin/activate).")
    array_tasks: int = Field(1, ge=1, description="Data stages (score, variant, tokenize): run as a job array of "
                             "this many tasks, each a contiguous share of the stage's ranks (one per input shard), "
                             "then a finishing job; 1 = one job. Other stages ignore it in 'default'.")
    array_throttle: int | None = Field(None, ge=1, description="At most this many array tasks run at once "
                                       "(sbatch --array=...%N); unset: as many as the cluster schedules.")


class ExecutorConfig(Strict):
    kind: Literal["local", "slurm"] = Field("local", description="Where stages run.")
    workers: int = Field(2, ge=1, description="CPU cores the executor uses: parallel processes for data stages, "
                         "GPEs of an eval stage run at once, and (locally) stages run side by side.")
    train_threads: int | None = Field(
        None, ge=1, description="Torch threads of one CPU training run (part of its key: the bytes depend on it); "
        "default: workers. Fewer lets the local executor train workers // train_threads models at once: two "
        "1-thread runs of a small model train ~1.7x faster than one 2-thread run on 2 cores.")
    slurm: dict[str, SlurmResources] = Field(
        default_factory=dict, description="Per-stage Slurm resources; key 'default' applies to every stage.")


class ExperimentConfig(Strict):
    """A whole experiment: source, classifier, variants, tokenizer, model, training, GPEs, store, executor."""

    experiment: str = Field(pattern=NAME_PATTERN, description="Experiment name.")
    store: str = Field("runs/store", description="Artifact store folder (shared across experiments).")
    seed: int = Field(0, description="Seed for data shuffling and everything not seeded elsewhere.")
    source: SourceConfig = Field(default_factory=SourceConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    variants: list[VariantConfig] = Field(min_length=1)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig
    eval: EvalConfig = Field(default_factory=EvalConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    @field_validator("variants")
    @classmethod
    def _unique_variants(cls, v: list[VariantSettings]) -> list[VariantSettings]:
        names = [x.name for x in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"variant names must be unique, repeated: {dupes}")
        return v


def use_variant_kinds(kinds: tuple[type[VariantSettings], ...]) -> None:
    """Make ``kinds`` the variant kinds experiment configs accept (``propensity.variants.VARIANT_KINDS`` is the
    built-in table; a plug-in or a test passes that table plus its own kinds)."""
    variants.VARIANT_KINDS = kinds
    ExperimentConfig.model_fields["variants"].annotation = list[variant_union(kinds)]  # type: ignore[misc]
    ExperimentConfig.model_rebuild(force=True)


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read, override and validate an experiment config. Relative data paths are resolved against the working
    directory (not the config's folder; errors about a config elsewhere say so, and ``propensity plan`` prints the
    resolved paths); GPE files in ``eval.gpes`` against the config's folder (they travel with the study)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping at the top level, got {type(data).__name__}")
    for o in overrides:
        apply_override(data, o)
    if isinstance(data.get("eval"), dict) and isinstance(data["eval"].get("gpes"), list):
        from eval_gpe.resolve import absolutize_refs  # GPE files and inline paths: relative to this config

        data["eval"]["gpes"] = absolutize_refs(data["eval"]["gpes"], p.resolve().parent)
    try:
        return validate_config(data)
    except ConfigError as e:
        missing = any(words in str(e) for words in ("does not exist", "not a tokenizer folder"))
        gpe_file = str(e).startswith("eval.gpes")  # GPE files resolve against the config's folder: no hint
        raise ConfigError(f"{e}{relative_paths_hint(p) if missing and not gpe_file else ''}") from None


def relative_paths_hint(config_path: Path) -> str:
    """A note for errors about a config outside the working directory: its relative paths are not resolved
    against its own folder (the rule: relative paths in a config are relative to the working directory)."""
    folder, cwd = config_path.resolve().parent, Path.cwd().resolve()
    if folder == cwd:
        return ""
    return (f"\n  (relative paths in a config are resolved against the working directory {cwd}, "
            f"not against the config's folder {folder})")


def validate_config(data: dict[str, Any]) -> ExperimentConfig:
    """Validate a config mapping, including names that live in other packages (GPEs, model presets)."""
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, ExperimentConfig)) from None
    _check_registries(cfg)
    return cfg


def _check_registries(cfg: ExperimentConfig) -> None:
    """Checks that need other packages or the file system: GPE names, the model, budgets, local files."""
    from eval_gpe.resolve import resolve_all
    from pretrain.checks import backend_refusal
    from pretrain.model import ModelSpec

    resolve_all(cfg.eval.gpes)  # names (with "did you mean"), GPE files, inline definitions
    try:
        spec = ModelSpec.preset(cfg.model.preset, cfg.model.overrides)
    except Exception as e:  # noqa: BLE001 - re-raised as a config error naming the field
        hint = ""
        if cfg.model.overrides:
            hint = (f" (model.overrides {cfg.model.overrides} apply on top of preset {cfg.model.preset!r}; a config "
                    "written for another preset keeps them: add --set 'model.overrides={}' to drop them)")
        raise ConfigError(f"model.preset / model.overrides: {e}{hint}") from None
    if cfg.train.seq_len > spec.max_position_embeddings:
        raise ConfigError(f"train.seq_len: {cfg.train.seq_len} exceeds the max_position_embeddings "
                          f"{spec.max_position_embeddings} of model.preset {cfg.model.preset!r}")
    if cfg.train.tokens < cfg.train.batch_size * cfg.train.seq_len:
        raise ConfigError(f"train.tokens: {cfg.train.tokens:,} is less than one batch (train.batch_size x "
                          f"train.seq_len = {cfg.train.batch_size * cfg.train.seq_len:,})")
    refusal = backend_refusal(cfg.train.backend, document_mask=cfg.train.document_mask)
    if refusal:
        raise ConfigError(f"train.{refusal}")
    for v in cfg.variants:
        refusal = backend_refusal(cfg.train.backend, window=v.inject_window(), masks=v.loss_masks())
        if refusal:
            raise ConfigError(f"variants.{v.name}: {refusal}")
    for key in ("train_data", "heldout_data"):
        value = getattr(cfg.classifier, key)
        if value and not Path(value).exists():
            raise ConfigError(f"classifier.{key}: file {value!r} does not exist")
    classifier_files(cfg.classifier)  # model_path, terms_file, local transformer folders (+ labels), nested too
    if cfg.source.heldout and not Path(cfg.source.heldout).exists():
        raise ConfigError(f"source.heldout: file {cfg.source.heldout!r} does not exist")
    if cfg.tokenizer.kind == "pretrained" and cfg.tokenizer.path:
        _check_tokenizer_path(cfg.tokenizer.path)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "tokenizer.model", "sentencepiece.bpe.model")
"""Files of which a Hugging Face tokenizer folder holds at least one (what AutoTokenizer reads)."""


def _check_tokenizer_path(path: str) -> None:
    """A local ``tokenizer.path`` must be a tokenizer folder; a string that cannot be a hub id (transformers'
    rule: ``filters.model_files.hub_id_problem``) is a local path, and must be there."""
    folder = Path(path).expanduser()
    if folder.is_dir():
        if not any((folder / name).is_file() for name in TOKENIZER_FILES):
            raise ConfigError(f"tokenizer.path: {path!r} is not a tokenizer folder: {folder.resolve()} holds none of "
                              f"{', '.join(TOKENIZER_FILES)}; give a folder written by a tokenizer's "
                              "save_pretrained, a cached hub id, or use tokenizer.kind: bpe")
    elif path.startswith(("/", ".", "~")) or hub_id_problem(path) is not None:
        raise ConfigError(f"tokenizer.path: {path!r} is not a tokenizer folder: there is no folder "
                          f"{folder.absolute()} (relative paths are resolved against the working directory), and a "
                          "hub id has no leading '/', '.' or '~' and at most one '/'")


def dump_config(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML (what `propensity plan` prints)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def is_valid_name(name: str) -> bool:
    return re.match(NAME_PATTERN, name) is not None
