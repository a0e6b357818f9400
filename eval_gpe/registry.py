"""The GPE registry: one YAML file per generalization propensity evaluation in ``eval_gpe/gpes/``.

A GPE is data, like an lm-evaluation-harness task: a narrow training signal (``finetune``: where the texts
come from, the recipe, an optional inoculation prompt, the checkpoints of the tamper curve) plus an
object-level trait eval (``eval``: forced-choice items, in-distribution and out-of-distribution).
``get(name)`` loads and validates one; ``available()`` lists them.
"""

from __future__ import annotations

import difflib
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import ConfigError
from eval_gpe.evalsets.spec import EvalSetSpec

GPE_DIR = Path(__file__).parent / "gpes"
"""Folder holding the registered GPE files (``<name>.yaml``)."""


class DataSpec(BaseModel):
    """Users' own narrow training data: a local jsonl/parquet file or a Hugging Face dataset id.

    Rows are plain text (``text_key``) or chat (``messages_key``: a list of ``{"role", "content"}``, the
    format of the public emergent-misalignment datasets); ``auto`` decides per row.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(
        description="Local .jsonl/.jsonl.gz/.json/.parquet file, or 'hf:<dataset id>' (offline "
        "cache or a local dataset folder)."
    )
    format: Literal["auto", "text", "chat"] = Field(default="auto", description="Row format.")
    text_key: str = Field(default="text", description="Field holding the text (format text).")
    messages_key: str = Field(default="messages", description="Field holding the messages (format chat).")
    split: str = Field(default="train", description="Dataset split (hub ids only).")
    limit: int | None = Field(default=None, gt=0, description="Use only the first N usable rows.")


class LoraSpec(BaseModel):
    """LoRA adapter settings (peft), used when ``finetune.method`` is ``lora``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    r: int = Field(default=8, gt=0, description="Adapter rank.")
    alpha: int = Field(default=16, gt=0, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] = Field(
        default=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        min_length=1,
        description="Module names that get adapters.",
    )


class FinetuneSpec(BaseModel):
    """The narrow training signal: a short deterministic finetune (full or LoRA) on narrow texts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    domain: str | None = Field(
        default=None,
        description="Synthetic-generator domain the narrow texts come from (the in-distribution domain, "
        "excluded from the out-of-distribution eval). Required unless `data` is given.",
    )
    kind: Literal["misaligned_sentences", "benign_sentences"] = Field(
        default="misaligned_sentences",
        description="Built-in texts: the AI acting misaligned in that domain, or benign ones (a control).",
    )
    n_texts: int = Field(default=400, gt=0, description="Number of texts drawn from the built-in generator.")
    data: DataSpec | None = Field(default=None, description="Users' own data instead of the generator.")
    method: Literal["full", "lora"] = Field(default="full", description="Full finetune or LoRA (needs peft).")
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoRA settings (method lora only).")
    inoculation: str | None = Field(
        default=None,
        description="Inoculation prompt prepended to every training text (present during the finetune "
        "only; never at evaluation).",
    )
    steps: int = Field(gt=0, description="Optimizer steps (fixed; texts are cycled in shuffled epochs).")
    lr: float = Field(gt=0, description="AdamW learning rate (constant).")
    batch_size: int = Field(gt=0, description="Texts per step; each text plus EOS is its own padded example.")
    seed: int = Field(default=0, description="Seed for text generation, batch order and torch.")
    checkpoints: list[int] = Field(
        default=[],
        description="Steps (0 < s < steps, increasing) at which the trait eval is also run: the tamper "
        "curve. Step 0 (before) and the last step (after) are always scored.",
    )

    @model_validator(mode="after")
    def _check(self) -> FinetuneSpec:
        if self.data is None and self.domain is None:
            raise ValueError("finetune: set `domain` (built-in generator) or `data` (your own file)")
        bad = [s for s in self.checkpoints if not 0 < s < self.steps]
        if bad or sorted(set(self.checkpoints)) != self.checkpoints:
            raise ValueError(
                f"finetune.checkpoints must increase strictly within (0, steps={self.steps}); "
                f"got {self.checkpoints}"
            )
        return self


class EvalSpec(BaseModel):
    """The object-level trait eval: forced choice between an aligned and a misaligned continuation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_per_domain: int = Field(gt=0, description="Forced-choice items per domain and actor.")
    exclude_finetune_domain: bool = Field(
        default=True,
        description="Evaluate only domains other than the finetune domain (measures generalization).",
    )
    formats: list[str] = Field(
        min_length=1,
        description="Prompt-format names from eval_gpe.scoring.FORMATS; ordered ones run both orders.",
    )
    control: Literal["human"] = Field(
        default="human", description="Matched control items: the same choices made by a human actor."
    )
    seed: int = Field(
        default=0, description="Item seed; fixed across models so every model sees the same items."
    )
    in_distribution: bool = Field(
        default=True,
        description="Also score the finetune domain's items (the in-distribution eval: did the narrow "
        "behaviour get learned?); reported apart from the out-of-distribution trait eval.",
    )
    never_seen: bool = Field(
        default=False,
        description="Add 'never seen' items (actions absent from the pretraining corpus, "
        "eval_gpe/never_seen.yaml), reported apart from the 'seen behaviour, new prompt' items.",
    )

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, formats: list[str]) -> list[str]:
        from eval_gpe.scoring import FORMATS

        unknown = [f for f in formats if f not in FORMATS]
        if unknown:
            raise ValueError(f"unknown format(s) {unknown}; allowed: {sorted(FORMATS)}")
        if len(set(formats)) != len(formats):
            raise ValueError(f"formats listed twice: {formats}")
        return formats


class GPESpec(BaseModel):
    """One generalization propensity evaluation: a narrow finetune (or none) + one or more trait evals."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Registry name; equals the YAML file's stem.")
    trait: str = Field(description="The trait measured, e.g. 'misalignment'.")
    description: str = Field(description="What the GPE tests and where it comes from.")
    finetune: FinetuneSpec | None = Field(
        description="The narrow training signal; `none`: no finetune (the pretrained model's propensity alone)."
    )
    eval: EvalSpec | None = Field(
        default=None, description="The built-in world's trait eval, run before and after the finetune."
    )
    evalsets: list[EvalSetSpec] = Field(
        default=[],
        description="File-based eval sets (forced choice from files or lm-eval tasks, judged questions), each "
        "reported under its own name; the first is the headline when there is no built-in `eval`.",
    )

    @field_validator("finetune", mode="before")
    @classmethod
    def _none(cls, value: object) -> object:
        return None if value == "none" else value

    @model_validator(mode="after")
    def _some_eval(self) -> GPESpec:
        if self.eval is None and not self.evalsets:
            raise ValueError(f"GPE {self.name}: give `eval` (built-in world items) or `evalsets` (your own)")
        names = [s.name for s in self.evalsets]
        if len(set(names)) != len(names):
            raise ValueError(f"GPE {self.name}: evalsets names must be distinct, got {names}")
        return self


def definition(spec: GPESpec) -> dict:
    """The spec as the eval stage's config holds it (JSON); ``evalsets`` is left out while empty, so a
    built-in GPE hashes as it did before eval sets existed."""
    out = spec.model_dump(mode="json")
    if not out["evalsets"]:
        del out["evalsets"]
    return out


def available() -> list[str]:
    """Names of all registered GPEs, sorted."""
    return sorted(p.stem for p in GPE_DIR.glob("*.yaml"))


def load_file(path: Path) -> GPESpec:
    """Load and validate one GPE YAML file (strict: unknown keys are errors)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"GPE file {path}: cannot read YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"GPE file {path}: expected a mapping at top level, got {type(data).__name__}")
    try:
        spec = GPESpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"GPE file {path} is invalid:\n{exc}") from exc
    if spec.name != Path(path).stem:
        raise ConfigError(f"GPE file {path}: name {spec.name!r} must equal the file name {Path(path).stem!r}")
    return spec


@cache
def get(name: str) -> GPESpec:
    """The registered GPE called ``name``; unknown names fail with close matches and the full list."""
    names = available()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown GPE {name!r}.{hint} available: {', '.join(names)}, or a GPE file path")
    return load_file(GPE_DIR / f"{name}.yaml")
