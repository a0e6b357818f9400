"""The variant kinds the ``variant`` stage of ``filters.variants`` builds: ``baseline`` and ``filter``.

Each is one settings model (``core.variants.VariantSettings``) that builds its own stage; ``decision_stage``
also builds the ``tag`` kind's (``conditional_tags.document_tag``), which shares this stage's config layout.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from core.store import StageSpec
from core.variants import VariantInputs, VariantSettings
from filters.config import CombineSpec, VariantSpec, parse

DECISION_KEYS = ("name", "kind", "threshold", "percentile", "keep", "combine", "tags", "untagged_fraction",
                 "separator")
"""The settings a ``filters.variants`` config hashes (the flat layout's, whether the kind reads them or not)."""


def decision_stage(variant: VariantSettings, inputs: VariantInputs, impl: str) -> StageSpec:
    """The variant stage of a baseline, filter or tag variant (``filters.config.VariantSpec`` config)."""
    flat = variant.flat()
    conf = {key: flat[key] for key in DECISION_KEYS} | {"score_key": inputs.score_key}
    if flat["randomize"]:  # added later: absent at its default, so existing variant keys stay
        conf["randomize"] = True
    # combine decides what it can without a missing score (a cascade's later stage; filters.decisions), where
    # it used to quarantine every such document: a new key for combine variants only
    return StageSpec("variant", variant.name, impl, conf, {"score": inputs.score}, seed=inputs.seed,
                     resources="data", version=2 if flat["combine"] is not None else 1)


def one_decision(variant: VariantSettings, given: list[str], required: bool) -> None:
    """A decision variant takes one of threshold, percentile (and combine), and needs one when ``required``."""
    if len(given) > 1:
        raise ValueError(f"variant {variant.name!r}: give one of threshold, percentile, combine; got {given}")
    if required and not given:
        raise ValueError(f"variant {variant.name!r} of kind {variant.kind!r} needs a threshold between 0 and 1 "
                         "(or a percentile)")
    flat = variant.flat()  # the stage's own checks (randomize with combine, ...), before any work
    parse(VariantSpec, {key: value for key, value in flat.items() if key in VariantSpec.model_fields}, "variant")


class BaselineVariant(VariantSettings):
    """Every scored document, unchanged: the reference the other variants are compared with."""

    kind: Literal["baseline"] = Field(description="baseline: all documents.")

    def stage_spec(self, inputs: VariantInputs) -> StageSpec:
        return decision_stage(self, inputs, "filters.variants:run")


class FilterVariant(VariantSettings):
    """Drop documents by score: at or above a threshold (or keep only those, DCLM-style), or by several scores."""

    kind: Literal["filter"] = Field(description="filter: drop score >= threshold.")
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="Score threshold.")
    percentile: float | None = Field(None, gt=0.0, lt=1.0, description="Threshold = this quantile of the score "
                                     "over the whole scored corpus.")
    keep: Literal["below", "above"] = Field("below", description="below drops score >= threshold; above keeps "
                                            "only score >= threshold (DCLM-style).")
    combine: CombineSpec | None = Field(None, description="Decide over several classifiers' scores.")
    randomize: bool = Field(False, description="Negative control: drop as many documents as the threshold "
                            "would, chosen at random instead of by score (docs/worlds.md).")

    @model_validator(mode="after")
    def _check_decision(self) -> FilterVariant:
        one_decision(self, [k for k in ("threshold", "percentile", "combine") if getattr(self, k) is not None],
                     required=True)
        return self

    def stage_spec(self, inputs: VariantInputs) -> StageSpec:
        return decision_stage(self, inputs, "filters.variants:run")
