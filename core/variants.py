"""The contract of a variant kind: its settings model and what the spine asks of it.

A variant kind is one class, declared next to the stage that builds it (``filters.variant_kinds``,
``conditional_tags.variant_kinds``, ``conditional_tags.document_tag``): a strict pydantic model whose ``kind`` is a
``Literal`` (the discriminator of the experiment's ``variants`` list) and whose methods build its stage and say
which tags and conditioning prefixes its models see. The experiment config lists the kinds in one table
(``propensity.variants.VARIANT_KINDS``); nothing else names a kind.

Store keys: a variant stage's config is derived from ``flat()``, the layout every variant was hashed with when
one flat model held the settings of every kind (``FLAT_LAYOUT``), so the keys of existing variants stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from core.names import DEFAULT_TAGS, NAME_PATTERN, Strict
from core.store import StageSpec

FLAT_LAYOUT: dict[str, Any] = {
    "threshold": None, "percentile": None, "keep": "below", "combine": None, "tags": dict(DEFAULT_TAGS),
    "untagged_fraction": 0.0, "separator": "", "bins": None, "quantiles": None, "tag_names": None, "p": 1.0,
    "mask": None, "inject": None, "randomize": False,
}
"""Every setting of the one flat variant model of the first releases, at its default. A kind's ``flat()`` is this
with its own settings filled in; the stage configs (and so the store keys) are built from it."""


@dataclass(frozen=True)
class VariantInputs:
    """What a variant stage may read, built once per experiment by the graph."""

    score: StageSpec
    """The scored shards (every variant's input)."""
    classifier: StageSpec
    """The classifier (for kinds that score sentences)."""
    tokenizer: StageSpec
    """The tokenizer (for kinds that measure an injected share in tokens)."""
    score_key: str
    """``<classifier name>_score``: the metadata key the score stage writes."""
    seed: int
    """The experiment's seed."""


class VariantSettings(Strict):
    """One data variant built from the scored shards (never rescored). Subclasses set ``kind`` to a Literal."""

    name: str = Field(pattern=NAME_PATTERN, description="Variant name, unique in the experiment.")
    kind: str = Field(description="The variant kind (see docs/conditional_tags.md and docs/filters.md).")

    prefix_placement: ClassVar[str | None] = None
    """Where evaluation puts a conditioning prefix: None (before the prompt) or ``last_sentence`` (before the
    prompt's last sentence, where training put sentence tags)."""

    def flat(self) -> dict[str, Any]:
        """This variant in the flat layout its store keys are made from (``FLAT_LAYOUT`` + its settings)."""
        return FLAT_LAYOUT | {"name": self.name, "kind": self.kind} | self.model_dump(mode="json")

    def stage_spec(self, inputs: VariantInputs) -> StageSpec:
        """The ``variant`` stage that builds this variant."""
        raise NotImplementedError(f"variant kind {self.kind!r} does not say how its stage is built")

    def tag_tokens(self) -> list[str]:
        """Tag strings this variant inserts: the tokenizer makes each one a single token."""
        return []

    def eval_prefixes(self) -> list[str]:
        """Conditioning prefixes its models are evaluated under ('' = untagged)."""
        return [""]

    def inject_window(self) -> list[float] | None:
        """The training window of injected documents, when the variant has one (the torch trainer only)."""
        inject = self.flat()["inject"]
        return None if inject is None else inject.get("window")

    def loss_masks(self) -> str | None:
        """What gets no loss, described for an error message; None when every token is trained on."""
        return None

    def report_entry(self) -> dict[str, Any]:
        """What the report records of this variant (its layout is part of the report's store key)."""
        flat = self.flat()
        return {"name": self.name, "kind": self.kind, "threshold": flat["threshold"],
                "percentile": flat["percentile"], "prefixes": self.eval_prefixes(), "tags": None,
                "randomize": flat["randomize"], "late": self.inject_window() is not None}
