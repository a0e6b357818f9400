"""The GPE registry: one YAML file per generalization propensity evaluation in ``eval_gpe/gpes/``.

A GPE is data, like an lm-evaluation-harness task: a narrow training signal (``finetune``) plus an
object-level trait eval (``eval``). ``get(name)`` loads and validates one; ``available()`` lists them.
"""

from __future__ import annotations

import difflib
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from propensity.errors import ConfigError

GPE_DIR = Path(__file__).parent / "gpes"
"""Folder holding the registered GPE files (``<name>.yaml``)."""


class FinetuneSpec(BaseModel):
    """The narrow training signal: a short full finetune on texts from one domain."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    domain: str = Field(description="Synthetic-generator domain the narrow texts come from, e.g. 'medicine'.")
    kind: Literal["misaligned_sentences", "benign_sentences"] = Field(
        description="Which texts: the AI acting misaligned in that domain, or benign ones (a control arm)."
    )
    n_texts: int = Field(gt=0, description="Number of texts drawn from the generator.")
    steps: int = Field(gt=0, description="Optimizer steps (fixed; texts are cycled in shuffled epochs).")
    lr: float = Field(gt=0, description="AdamW learning rate (constant).")
    batch_size: int = Field(gt=0, description="Texts per step; each text plus EOS is its own padded example.")
    seed: int = Field(default=0, description="Seed for text generation, batch order and torch.")


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
    """One generalization propensity evaluation: narrow finetune + trait eval."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Registry name; equals the YAML file's stem.")
    trait: str = Field(description="The trait measured, e.g. 'misalignment'.")
    description: str = Field(description="What the GPE tests and where it comes from.")
    finetune: FinetuneSpec = Field(description="The narrow training signal.")
    eval: EvalSpec = Field(description="The trait eval run before and after the finetune.")


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
        raise ConfigError(f"unknown GPE {name!r} (config key 'gpe').{hint} available: {', '.join(names)}")
    return load_file(GPE_DIR / f"{name}.yaml")
