"""The variant kinds an experiment may use: one table, and the discriminated union built from it.

A kind is one class next to the stage that builds it (its settings, its stage spec, its tags and prefixes; the
contract is ``core.variants.VariantSettings``). Adding a kind is writing that class and adding it to
``VARIANT_KINDS``; the experiment config, the graph, the tokenizer's tags, evaluation and the report then treat
it like any other (``tests/spine/test_layers.py::test_a_new_variant_kind_is_one_registration``).
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from conditional_tags.document_tag import TagVariant
from conditional_tags.variant_kinds import (
    DocTagVariant,
    InjectVariant,
    InlineTagVariant,
    MaskVariant,
    SentenceTagVariant,
)
from core.variants import VariantSettings
from filters.variant_kinds import BaselineVariant, FilterVariant

VARIANT_KINDS: tuple[type[VariantSettings], ...] = (
    BaselineVariant, FilterVariant, TagVariant, DocTagVariant, SentenceTagVariant, InlineTagVariant, MaskVariant,
    InjectVariant,
)
"""Every variant kind, by settings model (``kind`` is each model's discriminator value)."""


def kind_name(model: type[VariantSettings]) -> str:
    """The ``kind`` value of a variant settings model (its Literal's one value)."""
    (name,) = model.model_fields["kind"].annotation.__args__  # type: ignore[union-attr]
    return str(name)


def variant_union(kinds: tuple[type[VariantSettings], ...] = VARIANT_KINDS) -> Any:
    """The type of one entry of ``variants``: the kinds' models, told apart by ``kind``."""
    if len(kinds) == 1:
        return kinds[0]
    return Annotated[Union[kinds], Field(discriminator="kind")]  # noqa: UP007 - a runtime tuple of types


VariantConfig = variant_union()
"""One experiment variant: any registered kind's settings model."""


def parse_variant(data: dict[str, Any]) -> VariantSettings:
    """Validate one variant mapping into its kind's model (errors name the kind and the field)."""
    return TypeAdapter(variant_union(VARIANT_KINDS)).validate_python(data)
