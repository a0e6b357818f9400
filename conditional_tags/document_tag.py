"""The ``tag`` variant: one control tag per document by classifier score (``DocumentTagger``).

The variant is built by the filter layer's variant stage (``filters.variants.build``: the same reader, score
validator, writer and counts as baseline and filter variants); this module supplies the tagging step, which
belongs to conditional tags. Its store key keeps the path the stage had before the layers were split
(``core.store.KEYED_IMPL``), so existing tag variants are reused.
"""

from __future__ import annotations

from typing import Any, Literal

from datatrove.pipeline.base import PipelineStep
from pydantic import Field, model_validator

from conditional_tags.config import TagPair
from conditional_tags.document_tagger import DocumentTagger, untagged_draw
from core.errors import ConfigError
from core.names import DEFAULT_TAGS
from core.stage import StageContext
from core.store import StageSpec
from core.variants import VariantInputs, VariantSettings
from filters.config import VariantSpec
from filters.random_control import flagged_ids
from filters.variant_kinds import decision_stage, one_decision
from filters.variants import build


class TagVariant(VariantSettings):
    """Every document, prefixed with the good or the bad tag by its score (a share left untagged)."""

    kind: Literal["tag"] = Field(description="tag: prefix <|good|>/<|bad|> by score.")
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="Score threshold.")
    percentile: float | None = Field(None, gt=0.0, lt=1.0, description="Threshold = this quantile of the score "
                                     "over the whole scored corpus.")
    tags: TagPair = Field(default_factory=TagPair, description="The two tags.")
    untagged_fraction: float = Field(0.0, ge=0.0, le=1.0, description="Share of documents left untagged.")
    separator: str = Field("", description="Text between the tag and the document.")
    randomize: bool = Field(False, description="Negative control: the bad tag on as many documents as the "
                            "threshold would flag, chosen at random instead of by score (docs/worlds.md).")

    @model_validator(mode="after")
    def _check_decision(self) -> TagVariant:
        one_decision(self, [k for k in ("threshold", "percentile") if getattr(self, k) is not None], required=True)
        return self

    def stage_spec(self, inputs: VariantInputs) -> StageSpec:
        return decision_stage(self, inputs, "conditional_tags.document_tag:run")

    def tag_tokens(self) -> list[str]:
        return [self.tags.good, self.tags.bad]

    def eval_prefixes(self) -> list[str]:
        """The model saw the tag followed by the separator."""
        return ["", self.tags.good + self.separator, self.tags.bad + self.separator]

    def report_entry(self) -> dict[str, Any]:
        return super().report_entry() | {"tags": self.tags.model_dump()}


def tagger(ctx: StageContext, spec: VariantSpec, score_key: str, threshold: dict[str, Any]) -> PipelineStep:
    """The ``DocumentTagger`` of a ``tag`` variant spec (``tags`` may override either side's string); with
    ``randomize`` the negative control, a ``CoinFlipTagger`` giving the bad tag to as many documents as the
    threshold flags, chosen at random (its counts go to ``threshold["random_control"]``)."""
    tags = DEFAULT_TAGS | (spec.tags or {})
    if set(tags) != {"good", "bad"}:
        raise ConfigError(f"variant.tags must have keys 'good' and 'bad', got {sorted(tags)}")
    settings = {"threshold": threshold["threshold"], "good_tag": tags["good"], "bad_tag": tags["bad"],
                "separator": spec.separator, "untagged_fraction": float(spec.untagged_fraction), "seed": ctx.seed}
    try:
        if not spec.randomize:
            return DocumentTagger(score_key, **settings)
        ids, flagged = flagged_ids(ctx.inputs["score"], score_key, threshold["threshold"], ctx.seed)
        threshold["random_control"] = {"flagged_by_score": flagged, "chosen_at_random": len(ids), "seed": ctx.seed}
        return CoinFlipTagger(ids, score_key, **settings)
    except ValueError as err:
        raise ConfigError(f"variant {spec.name!r}: {err}") from err


class CoinFlipTagger(DocumentTagger):
    """A ``DocumentTagger`` whose bad tag goes to the chosen ids instead of to high scores."""

    name = "🪙 Coin-flip tagger"

    def __init__(self, ids: frozenset[str], score_key: str, **kwargs: Any) -> None:
        super().__init__(score_key, **kwargs)
        self.ids = ids

    def tag_for(self, doc_id: str, score: float) -> str | None:
        """``bad_tag`` for a chosen id, ``good_tag`` otherwise (the untagged share as the real tagger)."""
        if self.untagged_fraction and untagged_draw(doc_id, self.seed) < self.untagged_fraction:
            return None
        return self.bad_tag if doc_id in self.ids else self.good_tag


def run(ctx: StageContext) -> dict[str, Any]:
    """Build a ``tag`` variant (any kind ``filters.variants`` accepts; ``tag`` gets the document tagger)."""
    return build(ctx, tagger)
