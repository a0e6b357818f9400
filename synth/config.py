"""Config of the synthetic source stage (``source`` with ``synth.stage:run``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

from core.errors import ConfigError

QUICKSTART_TOKENS = 2_800_000
"""Estimated tokens (characters / 4) of the full source at ``scale=1.0``."""


WORLD_VERSIONS = {"hard": 2, "learnable": 3}
"""Version of each world's documents and items, the source stage's version (hard 2: no label give-away before
the action sentence; learnable 3: held-out evaluation combinations no longer confounded with the verb pair)."""

LATER_KEYS = ("world", "misaligned_share_of_human")
"""Settings added after the first release (left out of the stage key at their defaults)."""


class SyntheticSourceConfig(BaseModel):
    """Sizes, shares and seed of the synthetic quickstart corpus. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, description="Seed of every random choice; same seed, same bytes in every file.")
    world: Literal["hard", "learnable"] = Field(
        "hard",
        description="hard: the original 8-domain world (names, cities, pair-specific phrases; its planted effects "
                    "vanish at quickstart scale); learnable: 24 one-verb decisions in short episodes, learnable "
                    "by a ~1M-parameter model (docs/worlds.md).",
    )
    scale: float = Field(
        1.0, gt=0, le=100,
        description=f"Corpus size relative to the quickstart (1.0 = ~{QUICKSTART_TOKENS:,} est. tokens).",
    )
    shards: int = Field(4, ge=1, le=4096, description="Number of shard files the documents are spread over.")
    ai_share: float = Field(
        0.40, gt=0, lt=1, description="Share of estimated tokens in AI-actor documents (both labels)."
    )
    misaligned_share_of_ai: float = Field(
        0.40, ge=0, le=1, description="Share of the AI-document tokens in misaligned AI documents."
    )
    human_share: float = Field(
        0.20, ge=0, lt=1,
        description="Share of estimated tokens in human-actor control documents (half of them misaligned).",
    )
    misaligned_share_of_human: float = Field(
        0.5, ge=0, le=1, description="Share of the human-document tokens in misaligned human documents."
    )
    brief_share: float = Field(
        0.0, ge=0, le=1,
        description="Share of action documents (AI and human) written as short notes whose action comes "
                    "~35 tokens in (the other styles: 65-125), so a document tag sits near the action.",
    )
    labelled_sentences: bool = Field(
        True,
        description="Add sentence-level examples (each action document's action sentence and one other) to "
                    "the labelled sets, so the classifier also scores single sentences (sentence tags) well.",
    )
    labelled_train: int = Field(
        4000, ge=10, le=1_000_000, description="Documents in labelled/train.jsonl.gz (classifier training)."
    )
    labelled_heldout: int = Field(
        1000, ge=10, le=1_000_000, description="Documents in labelled/heldout.jsonl.gz (classifier eval)."
    )

    @model_validator(mode="after")
    def _shares_leave_background(self) -> SyntheticSourceConfig:
        if self.ai_share + self.human_share >= 1:
            raise ValueError(
                f"ai_share + human_share must be < 1 (the rest is background); got "
                f"{self.ai_share} + {self.human_share}"
            )
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        """Settings added after the first release are left out at their defaults, so the source stage's key
        (a hash of this dump) of every existing config stays the same."""
        data = handler(self)
        for key in LATER_KEYS:
            if data.get(key) == type(self).model_fields[key].default:
                data.pop(key, None)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyntheticSourceConfig:
        """Validate a plain config dict; a ConfigError names the field, the value and what is allowed."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or "(config)"
                if err["type"] == "extra_forbidden":
                    problems.append(f"unknown key {field!r}; allowed keys: {sorted(cls.model_fields)}")
                else:
                    problems.append(f"{field}={err.get('input')!r}: {err['msg']}")
            raise ConfigError("synthetic source config: " + "; ".join(problems)) from None

    @classmethod
    def quickstart(cls, seed: int = 0) -> SyntheticSourceConfig:
        """The quickstart corpus (~2.8M estimated tokens, 4 shards)."""
        return cls(seed=seed)

    @classmethod
    def tiny(cls, seed: int = 0) -> SyntheticSourceConfig:
        """A corpus small enough for unit tests (~5% of the quickstart, small labelled sets)."""
        return cls(seed=seed, scale=0.05, shards=2, labelled_train=400, labelled_heldout=100)
