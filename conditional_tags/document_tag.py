"""The ``tag`` variant: one control tag per document by classifier score (``DocumentTagger``).

The variant is built by the filter layer's variant stage (``filters.variants.build``: the same reader, score
validator, writer and counts as baseline and filter variants); this module supplies the tagging step, which
belongs to conditional tags. Its store key keeps the path the stage had before the layers were split
(``core.store.KEYED_IMPL``), so existing tag variants are reused.
"""

from __future__ import annotations

from typing import Any

from datatrove.pipeline.base import PipelineStep

from conditional_tags.tagger import DocumentTagger
from core.errors import ConfigError
from core.names import DEFAULT_TAGS
from core.stage import StageContext
from filters.config import VariantSpec
from filters.variants import build


def tagger(ctx: StageContext, spec: VariantSpec, score_key: str, threshold: float) -> PipelineStep:
    """The ``DocumentTagger`` of a ``tag`` variant spec (``tags`` may override either side's string)."""
    tags = DEFAULT_TAGS | (spec.tags or {})
    if set(tags) != {"good", "bad"}:
        raise ConfigError(f"variant.tags must have keys 'good' and 'bad', got {sorted(tags)}")
    try:
        return DocumentTagger(
            score_key, threshold, tags["good"], tags["bad"], spec.separator, float(spec.untagged_fraction),
            seed=ctx.seed,
        )
    except ValueError as err:
        raise ConfigError(f"variant {spec.name!r}: {err}") from err


def run(ctx: StageContext) -> dict[str, Any]:
    """Build a ``tag`` variant (any kind ``filters.variants`` accepts; ``tag`` gets the document tagger)."""
    return build(ctx, tagger)
