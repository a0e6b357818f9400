"""Config of the conditional-pretraining variants (``conditional_tags.stage``), validated strictly.

One ``ConditionalVariantSpec`` per variant. Kinds:

- ``doc_tag``: one control tag per document, by score bins (``bins``) or corpus quantiles (``quantiles``).
- ``sentence_tag``: one control tag before every sentence, by the sentence's own classifier score.
- ``inline_tag``: ``tag`` before each flagged sentence (score >= ``threshold``) with probability ``p``.
- ``mask``: no text change; flagged sentences get no loss (``metadata["no_loss_ranges"]``).
- ``inject``: the scored documents (optionally without those scoring >= ``threshold``) plus documents from an
  injection source at a share of the variant's tokens (``inject``). Any other kind may also carry ``inject``.

The tag vocabulary of a variant (``variant_tags``) and the conditioning prefixes its models are evaluated
under (``variant_prefixes``) are derived here, once, so the tokenizer, the variant and evaluation agree.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

from pydantic import Field, model_validator

from core.names import BAD_TAG, DEFAULT_TAGS, GOOD_TAG, NAME_PATTERN, Strict

SENTENCE_KINDS = ("sentence_tag", "inline_tag", "mask")
"""Kinds that score sentences and therefore need a ``classifier`` input."""
SYNTHETIC_ALIGNED = "synthetic_aligned"
LEARNABLE_ALIGNED = "learnable_aligned"
"""Aligned-AI documents of the learnable synthetic world (synth.learnable), for experiments on that world."""
TWO_TAGS = [DEFAULT_TAGS["good"], DEFAULT_TAGS["bad"]]


class TagPair(Strict):
    """The two control tags of a variant as the experiment config gives them."""

    good: str = Field(GOOD_TAG, description="Prefix for documents scoring below the threshold.")
    bad: str = Field(BAD_TAG, description="Prefix for documents scoring at or above the threshold.")


class InjectSpec(Strict):
    """Documents mixed into a variant at a share of its tokens (Alignment Pretraining-style upsampling)."""

    source: str = Field(
        SYNTHETIC_ALIGNED,
        description=f"'{SYNTHETIC_ALIGNED}': aligned-AI documents of the synthetic generator (seeded by "
        f"`seed`); '{LEARNABLE_ALIGNED}': the same from the learnable world; otherwise an absolute path to a "
        "jsonl(.gz) file of {'id', 'text', 'metadata'} records.",
    )
    share: float = Field(
        gt=0.0,
        lt=1.0,
        description="Injected share of the variant's tokens: injected / (kept + injected). Tokens when the "
        "stage has a `tokenizer` input, characters otherwise.",
    )
    window: tuple[float, float] | None = Field(
        None,
        description="Training window [start, end] as fractions of the steps (e.g. [0.9, 1.0] = last 10%). "
        "None: mixed into shards/ and shuffled with everything. Set: written to inject/ plus schedule.json "
        "for the trainer (see docs/conditional_tags.md).",
    )
    seed: int = Field(1, description="Seed of the injected sample (and of the synthetic generator).")
    allow_repeat: bool = Field(
        False, description="When the source runs out before the share is reached, repeat its documents."
    )

    @model_validator(mode="after")
    def _check_window(self) -> InjectSpec:
        if self.window is not None:
            start, end = self.window
            if not 0.0 <= start < end <= 1.0:
                raise ValueError(f"inject.window must satisfy 0 <= start < end <= 1, got {list(self.window)}")
            if self.share > end - start:
                raise ValueError(
                    f"inject.share {self.share} cannot fit in window {list(self.window)} "
                    f"(at most {end - start:.4g} of the steps' tokens lie in it)"
                )
        return self


class ConditionalVariantSpec(Strict):
    """One conditional-pretraining variant built from the scored shards."""

    name: str = Field(pattern=NAME_PATTERN, description="Variant name.")
    kind: Literal["doc_tag", "sentence_tag", "inline_tag", "mask", "inject"] = Field(
        description="doc_tag | sentence_tag | inline_tag | mask | inject (see the module docstring)."
    )
    score_key: str | None = Field(None, description="Document score key (default: the score stage's).")
    bins: list[float] | None = Field(
        None,
        description="doc_tag/sentence_tag: increasing score cut points in (0, 1); N cuts give N+1 tags. "
        "Default [0.5].",
    )
    quantiles: list[float] | None = Field(
        None, description="doc_tag/sentence_tag: cut points as corpus quantiles of the score instead of bins."
    )
    tags: list[str] | None = Field(
        None,
        description="doc_tag/sentence_tag: tag per bin, lowest score first (default ['<|good|>', '<|bad|>'])",
    )
    untagged_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="doc_tag/sentence_tag: share of documents/sentences left untagged."
    )
    separator: str = Field("", description="Text inserted between a tag and what it tags.")
    threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="inline_tag/mask (and mask: ['flagged']): a sentence is flagged when its score >= "
        "threshold (default 0.5). inject: documents scoring >= threshold are dropped first (default: "
        "none dropped).",
    )
    p: float = Field(
        1.0, gt=0.0, le=1.0, description="inline_tag: probability of tagging a flagged sentence."
    )
    tag: str = Field(DEFAULT_TAGS["bad"], min_length=1, description="inline_tag: the tag inserted.")
    mask: list[Literal["tags", "flagged"]] | None = Field(
        None,
        description="No-loss spans: 'tags' (inserted tags) and/or 'flagged' (flagged sentences). "
        "Default ['flagged'] for mask, none otherwise.",
    )
    quantile_sample: int = Field(
        20_000,
        ge=1,
        description="sentence_tag with quantiles: sentences of the first this many documents set "
        "the cut points.",
    )
    batch_size: int = Field(512, ge=1, description="Documents per fastText sentence-scoring batch.")
    inject: InjectSpec | None = Field(None, description="Documents to inject (required for kind inject).")

    @model_validator(mode="after")
    def _check_kind(self) -> ConditionalVariantSpec:
        binned = self.kind in ("doc_tag", "sentence_tag")
        changed = {k for k, f in type(self).model_fields.items() if getattr(self, k) != f.default}
        for key in ("bins", "quantiles", "tags", "untagged_fraction", "quantile_sample"):
            if key in changed and not binned:
                raise ValueError(
                    f"variant {self.name!r}: {key} is for kinds doc_tag/sentence_tag, not {self.kind}"
                )
        for key in ("p", "tag"):
            if key in changed and self.kind != "inline_tag":
                raise ValueError(f"variant {self.name!r}: {key} is for kind inline_tag, not {self.kind}")
        if self.kind == "inject" and self.inject is None:
            raise ValueError(
                f"variant {self.name!r} of kind inject needs an `inject` section (share, source)"
            )
        if binned:
            self._check_bins()
        if "flagged" in self.mask_spans and self.kind not in SENTENCE_KINDS:
            raise ValueError(
                f"variant {self.name!r}: mask 'flagged' needs sentence scores (kinds {list(SENTENCE_KINDS)})"
            )
        if self.kind == "mask" and not self.mask_spans:
            raise ValueError(f"variant {self.name!r}: kind mask needs mask to list 'flagged' and/or 'tags'")
        if "tags" in self.mask_spans and self.kind in ("mask", "inject"):
            raise ValueError(f"variant {self.name!r}: kind {self.kind} inserts no tags to mask")
        if self.threshold is not None and self.kind == "sentence_tag" and "flagged" not in self.mask_spans:
            raise ValueError(
                f"variant {self.name!r}: sentence_tag uses bins; threshold only with mask 'flagged'"
            )
        if self.threshold is not None and self.kind == "doc_tag":
            raise ValueError(f"variant {self.name!r}: doc_tag uses bins or quantiles, not threshold")
        return self

    def _check_bins(self) -> None:
        if self.bins is not None and self.quantiles is not None:
            raise ValueError(f"variant {self.name!r}: give bins or quantiles, not both")
        cuts = self.cuts
        if (
            not cuts
            or any(not 0.0 < c < 1.0 for c in cuts)
            or any(a >= b for a, b in itertools.pairwise(cuts))
        ):
            which = "quantiles" if self.quantiles is not None else "bins"
            raise ValueError(
                f"variant {self.name!r}: {which} must be increasing values in (0, 1), got {cuts}"
            )
        tags = self.tag_names
        if len(tags) != len(cuts) + 1:
            raise ValueError(
                f"variant {self.name!r}: {len(cuts)} cut point(s) need {len(cuts) + 1} tags (lowest score "
                f"first), got {len(tags)}: {tags}"
            )
        if len(set(tags)) != len(tags) or not all(tags):
            raise ValueError(f"variant {self.name!r}: tags must be distinct non-empty strings, got {tags}")

    @property
    def cuts(self) -> list[float]:
        """Configured cut points (bins, or the quantile levels when quantiles are given)."""
        return list(self.quantiles if self.quantiles is not None else (self.bins or [0.5]))

    @property
    def tag_names(self) -> list[str]:
        """Tags per bin, lowest score first."""
        return list(self.tags) if self.tags is not None else list(TWO_TAGS)

    @property
    def mask_spans(self) -> list[str]:
        """What gets no loss: 'tags' and/or 'flagged'."""
        return list(self.mask) if self.mask is not None else (["flagged"] if self.kind == "mask" else [])

    @property
    def flag_threshold(self) -> float:
        """Sentence score at or above which a sentence is flagged (inline_tag, mask 'flagged')."""
        return 0.5 if self.threshold is None else self.threshold


def parse_spec(data: dict[str, Any]) -> ConditionalVariantSpec:
    """Validate a variant config; a ConfigError names each bad field, the value and what is allowed."""
    from filters.config import parse

    return parse(ConditionalVariantSpec, data, "variant")


def variant_tags(spec: ConditionalVariantSpec) -> list[str]:
    """Tag strings this variant inserts: the tokenizer must make each one a single special token."""
    if spec.kind in ("doc_tag", "sentence_tag"):
        return spec.tag_names
    return [spec.tag] if spec.kind == "inline_tag" else []


def variant_prefixes(spec: ConditionalVariantSpec) -> list[str]:
    """Conditioning prefixes a variant's models are evaluated under ('' = untagged, then every tag)."""
    return ["", *variant_tags(spec)]


def stage_config(variant: dict[str, Any]) -> dict[str, Any]:
    """This stage's config from a variant in the flat layout (``core.variants.VariantSettings.flat``), validated.

    The experiment config keeps its ``tags: {good, bad}`` pair; here it becomes the default two tags of doc_tag and
    sentence_tag (``tag_names`` overrides it, needed for more than two bins) and the inline_tag ``tag``
    (``tags.bad``). Fields left at their defaults are omitted, so they do not change the stage hash.
    """
    kind = variant["kind"]
    pair = variant.get("tags") or {}
    data: dict[str, Any] = {"name": variant["name"], "kind": kind, "separator": variant.get("separator", "")}
    for key in ("threshold", "mask", "inject", "score_key"):
        if variant.get(key) is not None:
            data[key] = variant[key]
    if kind in ("doc_tag", "sentence_tag"):
        for key in ("bins", "quantiles"):
            if variant.get(key) is not None:
                data[key] = variant[key]
        names = variant.get("tag_names") or [pair.get("good", TWO_TAGS[0]), pair.get("bad", TWO_TAGS[1])]
        data |= {"tags": names, "untagged_fraction": variant.get("untagged_fraction", 0.0)}
    if kind == "inline_tag":
        data |= {"tag": pair.get("bad", TWO_TAGS[1]), "p": variant.get("p", 1.0)}
    return parse_spec(data).model_dump(mode="json", exclude_defaults=True)
