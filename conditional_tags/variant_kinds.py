"""The variant kinds ``conditional_tags.stage`` builds: ``doc_tag``, ``sentence_tag``, ``inline_tag``, ``mask``,
``inject``.

Each kind is a settings model of the experiment config (``core.variants.VariantSettings``) with only the
settings it reads; ``stage_config`` turns it into the stage's ``ConditionalVariantSpec`` and runs the stage's own
checks when the config is loaded. Kinds share settings through the small bases below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from conditional_tags.config import SENTENCE_KINDS, InjectSpec, TagPair, parse_spec, stage_config, variant_tags
from core.names import Strict
from core.store import StageSpec
from core.variants import VariantInputs, VariantSettings

VERSION = 2
"""Version of conditional_tags variants (2: injection closes the share gap by swapping any recent pick)."""
INJECT_FILE_VERSION = 3
"""Version of a variant injecting a file's documents (3: their control strings escaped, as the corpus's are).
Generated documents have none, so variants injecting them keep ``VERSION`` and their keys."""


class _Injected(Strict):
    inject: InjectSpec | None = Field(None, description="Documents mixed in at a share of tokens.")


class _Masked(Strict):
    mask: list[Literal["tags", "flagged"]] | None = Field(None, description="What gets no loss: 'tags' (inserted "
                                                          "tags) and/or 'flagged' (flagged sentences).")


class _Flagged(Strict):
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="A sentence is flagged when its score >= "
                                    "threshold (default 0.5); inject: documents scoring >= it are dropped first.")


class _Tagged(Strict):
    tags: TagPair = Field(default_factory=TagPair, description="The good and bad tags (inline_tag: the bad one).")
    separator: str = Field("", description="Text between a tag and what it tags.")


class _Binned(Strict):
    bins: list[float] | None = Field(None, description="Score cut points (N cuts, N+1 tags; default [0.5]).")
    quantiles: list[float] | None = Field(None, description="Cut points as corpus quantiles of the score.")
    tag_names: list[str] | None = Field(None, description="Tags from lowest score up (default: good, bad).")
    untagged_fraction: float = Field(0.0, ge=0.0, le=1.0, description="Share of documents/sentences untagged.")


class ConditionalVariant(VariantSettings):
    """A variant built by ``conditional_tags.stage`` (see docs/conditional_tags.md)."""

    @model_validator(mode="after")
    def _check_stage(self) -> ConditionalVariant:
        stage_config(self.flat())  # the stage's own checks, when the config is loaded
        return self

    def stage_spec(self, inputs: VariantInputs) -> StageSpec:
        conf = stage_config(self.flat()) | {"score_key": inputs.score_key}
        roles = {"score": inputs.score}
        if self.kind in SENTENCE_KINDS:
            roles["classifier"] = inputs.classifier
        fingerprint, inject, version = None, self.flat()["inject"], VERSION
        if inject is not None:
            roles["tokenizer"] = inputs.tokenizer
            if Path(inject["source"]).exists():  # a file: named absolutely, hashed by content
                from filters.suite import files_fingerprint  # datatrove-heavy: only for a file to hash

                conf["inject"]["source"] = str(Path(inject["source"]).resolve())
                fingerprint = files_fingerprint([conf["inject"]["source"]])
                version = INJECT_FILE_VERSION
        return StageSpec("variant", self.name, "conditional_tags.stage:run", conf, roles, seed=inputs.seed,
                         resources="data", fingerprint=fingerprint, version=version)

    def tag_tokens(self) -> list[str]:
        return variant_tags(parse_spec(stage_config(self.flat())))

    def eval_prefixes(self) -> list[str]:
        return ["", *self.tag_tokens()]

    def loss_masks(self) -> str | None:
        mask: Any = self.flat()["mask"]
        return f"{self.kind}, mask={mask}" if self.kind == "mask" or mask else None


class DocTagVariant(ConditionalVariant, _Binned, _Tagged, _Masked, _Injected):
    """One control tag per document, by score bins or corpus quantiles."""

    kind: Literal["doc_tag"] = Field(description="doc_tag: N tags over bins/quantiles.")


class SentenceTagVariant(ConditionalVariant, _Binned, _Tagged, _Flagged, _Masked, _Injected):
    """One control tag before every sentence, by the sentence's own score."""

    kind: Literal["sentence_tag"] = Field(description="sentence_tag: a tag per sentence.")
    prefix_placement: ClassVar[str | None] = "last_sentence"


class InlineTagVariant(ConditionalVariant, _Tagged, _Flagged, _Masked, _Injected):
    """The bad tag before each flagged sentence, with probability ``p``."""

    kind: Literal["inline_tag"] = Field(description="inline_tag: the bad tag before flagged sentences.")
    p: float = Field(1.0, gt=0, le=1, description="Probability of inserting the tag.")
    prefix_placement: ClassVar[str | None] = "last_sentence"


class MaskVariant(ConditionalVariant, _Flagged, _Masked, _Injected):
    """No text change: flagged sentences (and/or tags) get no loss."""

    kind: Literal["mask"] = Field(description="mask: no loss on flagged sentences.")


class InjectVariant(ConditionalVariant, _Flagged, _Injected):
    """The scored documents (optionally without high scores) plus injected documents at a share of tokens."""

    kind: Literal["inject"] = Field(description="inject: mix in other documents at a token share.")
