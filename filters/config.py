"""Config models of the classifier suite: which scorer runs, and how variants decide over its scores.

``ClassifierSpec`` is what the ``classifier`` stage receives (a superset of the spine's fastText-only
``ClassifierConfig``: every fastText key keeps its name and meaning). ``VariantSpec`` is what the ``variant``
stage receives. Both are strict: unknown keys are errors naming the key and the allowed ones.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from core.errors import ConfigError
from core.names import NAME_PATTERN, Strict

SCORER_KINDS = ("fasttext", "transformer", "blocklist", "cascade", "ensemble")


class FastTextParams(Strict):
    """fastText training settings; the defaults keep the model near 8 MB."""

    epoch: int = Field(5, ge=1, description="Training epochs.")
    lr: float = Field(0.5, gt=0, description="Learning rate.")
    dim: int = Field(32, ge=2, description="Embedding dimension.")
    word_ngrams: int = Field(2, ge=1, le=5, description="Word n-gram length.")
    bucket: int = Field(50_000, ge=1000, description="Hash buckets for n-grams (the default 2M makes 400 MB models).")
    min_count: int = Field(1, ge=1, description="Minimum word count.")


class TransformerParams(Strict):
    """A Hugging Face sequence classifier run batched over documents."""

    model: str = Field(
        description="Local folder (save_pretrained layout) or hub id (must be cached offline)."
    )
    revision: str | None = Field(None, description="Hub revision; ignored for local folders.")
    label: str | int | None = Field(
        None,
        description="Model output used as the score: a label name of config.id2label or an index. Default: "
        "the label named like positive_label, else index 1 of a 2-label model; one output: sigmoid.",
    )
    max_length: int = Field(
        512,
        ge=8,
        description="Tokens per forward pass, special tokens included; capped at what the model takes (its "
        "position embeddings, the tokenizer's model_max_length).",
    )
    chunking: Literal["truncate", "max", "mean"] = Field(
        "truncate",
        description="Long documents: truncate (score the first max_length tokens), max or mean of the scores "
        "of consecutive chunks covering the whole document.",
    )
    stride: int = Field(0, ge=0, description="Tokens shared by consecutive chunks (max/mean chunking).")
    max_chunks: int | None = Field(None, ge=1, description="Score at most this many chunks per document.")
    batch_size: int = Field(32, ge=1, description="Sequences per forward pass.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available, else cpu.")
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="Weights dtype.")

    @model_validator(mode="after")
    def _check_stride(self) -> TransformerParams:
        if self.stride >= self.max_length - 2:
            raise ValueError(
                f"transformer.stride ({self.stride}) must be < max_length - 2 ({self.max_length - 2})"
            )
        return self


class BlocklistParams(Strict):
    """Terms and regular expressions counted per document (Deep Ignorance's first stage)."""

    terms: list[str] = Field(default_factory=list, description="Literal terms (phrases allowed).")
    terms_file: str | None = Field(None, description="Text file, one term per line ('#' starts a comment).")
    patterns: list[str] = Field(default_factory=list, description="Python regular expressions.")
    case_sensitive: bool = Field(False, description="False: terms and text are case-folded before matching.")
    word_boundaries: bool = Field(
        True, description="Terms match only as whole words (not inside other words)."
    )
    min_hits: int = Field(1, ge=1, description="Hits for a score of 1.0; score = min(1, hits / min_hits).")

    @model_validator(mode="after")
    def _check_any(self) -> BlocklistParams:
        if not (self.terms or self.terms_file or self.patterns):
            raise ValueError("blocklist needs terms, terms_file or patterns")
        return self


class ClassifierSpec(Strict):
    """One scorer: writes ``metadata['<name>_score']`` in [0, 1] for every scored document."""

    name: str = Field(
        "misaligned", pattern=NAME_PATTERN, description="Scores go to metadata['<name>_score']."
    )
    kind: Literal["fasttext", "transformer", "blocklist", "cascade", "ensemble"] = Field(
        "fasttext",
        description="fasttext / transformer / blocklist: one scorer; cascade: stage N scores only what stage "
        "N-1 escalated; ensemble: every member scores every document (score = max of the members).",
    )
    model_path: str | None = Field(
        None, description="fasttext: a trained .bin to use instead of training one."
    )
    train_data: str | None = Field(None, description="fasttext: labelled jsonl/parquet to train on.")
    heldout_data: str | None = Field(None, description="Labelled held-out set for precision/recall/ROC-AUC.")
    label_key: str = Field("label", description="Field holding the label in the labelled data.")
    positive_label: str = Field("misaligned", description="The label whose probability is the score.")
    fasttext: dict[str, Any] = Field(default_factory=dict, description="fastText training parameters.")
    transformer: TransformerParams | None = Field(None, description="kind=transformer settings.")
    blocklist: BlocklistParams | None = Field(None, description="kind=blocklist settings.")
    stages: list[ClassifierSpec] = Field(
        default_factory=list, description="kind=cascade: the stages, in order."
    )
    classifiers: list[ClassifierSpec] = Field(default_factory=list, description="kind=ensemble: the members.")
    escalate_at: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Cascade stages but the last: score >= escalate_at goes to the next stage.",
    )

    @model_validator(mode="after")
    def _check_kind(self) -> ClassifierSpec:
        for key in ("transformer", "blocklist"):
            if (self.kind == key) != (getattr(self, key) is not None):
                raise ValueError(
                    f"classifier {self.name!r}: '{key}' settings go with kind '{key}' (kind is {self.kind!r})"
                )
        if self.kind == "cascade":
            _check_cascade(self)
        elif self.stages:
            raise ValueError(f"classifier {self.name!r}: 'stages' is only for kind 'cascade'")
        if self.kind == "ensemble" and len(self.classifiers) < 2:
            raise ValueError(f"classifier {self.name!r}: an ensemble needs at least 2 classifiers")
        if self.kind != "ensemble" and self.classifiers:
            raise ValueError(f"classifier {self.name!r}: 'classifiers' is only for kind 'ensemble'")
        names = [self.name] + [c.name for c in (*self.stages, *self.classifiers)]
        if len(set(names)) != len(names):
            raise ValueError(f"classifier names must be unique (they name score keys), got {names}")
        return self

    def members(self, where: str) -> list[tuple[str, ClassifierSpec]]:
        """``(config key, spec)`` of every cascade stage (``<where>.stages.<i>``) or ensemble member
        (``<where>.classifiers.<i>``), for checks that walk a classifier and its parts."""
        role = "stages" if self.kind == "cascade" else "classifiers"
        return [(f"{where}.{role}.{index}", sub) for index, sub in enumerate([*self.stages, *self.classifiers])]


def _check_cascade(spec: ClassifierSpec) -> None:
    if len(spec.stages) < 2:
        raise ValueError(f"cascade {spec.name!r} needs at least 2 stages, got {len(spec.stages)}")
    for index, stage in enumerate(spec.stages):
        last = index == len(spec.stages) - 1
        if stage.kind in ("cascade", "ensemble"):
            raise ValueError(
                f"cascade {spec.name!r} stage {stage.name!r}: kind {stage.kind!r} cannot be a stage"
            )
        if last and stage.escalate_at is not None:
            raise ValueError(
                f"cascade {spec.name!r}: the last stage {stage.name!r} escalates nowhere; remove escalate_at"
            )
        if not last and stage.escalate_at is None:
            raise ValueError(
                f"cascade {spec.name!r} stage {stage.name!r} needs escalate_at (score >= it escalates)"
            )


class CombineSpec(Strict):
    """A decision over several scores: drop when any / all reach their thresholds, or a weighted mean does."""

    mode: Literal["any", "all", "weighted"] = Field(description="How the per-classifier decisions combine.")
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="any/all: score key -> threshold (score >= threshold fires)."
    )
    weights: dict[str, float] = Field(
        default_factory=dict, description="weighted: score key -> weight (> 0)."
    )
    threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="weighted: drop when the weighted mean >= it."
    )

    @model_validator(mode="after")
    def _check_mode(self) -> CombineSpec:
        if self.mode == "weighted":
            if not self.weights or self.threshold is None or self.thresholds:
                raise ValueError("combine.mode 'weighted' needs weights and threshold (and no thresholds)")
            if any(w <= 0 for w in self.weights.values()):
                raise ValueError(f"combine.weights must be > 0, got {self.weights}")
        elif not self.thresholds or self.weights or self.threshold is not None:
            raise ValueError(f"combine.mode {self.mode!r} needs thresholds (score key -> threshold) only")
        return self


class VariantSpec(Strict):
    """One data variant built from the scored shards (a superset of the spine's ``VariantConfig``)."""

    name: str = Field(pattern=NAME_PATTERN, description="Variant name.")
    kind: Literal["baseline", "filter", "tag"] = Field(
        description="baseline: copy; filter: drop; tag: prefix."
    )
    score_key: str | None = Field(None, description="Score to decide on (default: the score stage's).")
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="Fixed score threshold.")
    percentile: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="Threshold = this quantile of the score over the whole scored corpus.",
    )
    keep: Literal["below", "above"] = Field(
        "below",
        description="filter: below drops score >= threshold; above keeps only score >= threshold (DCLM).",
    )
    combine: CombineSpec | None = Field(None, description="filter: decide over several scores instead.")
    tags: dict[str, str] | None = Field(None, description="tag: {'good': ..., 'bad': ...}.")
    untagged_fraction: float = Field(0.0, description="tag: share of documents left untagged.")
    separator: str = Field("", description="tag: text between the tag and the document.")
    randomize: bool = Field(
        False,
        description="filter/tag negative control: flag as many documents as the threshold would, chosen at "
        "random (seeded by the document id) instead of by score (filters.random_control).",
    )

    @model_validator(mode="after")
    def _check_decision(self) -> VariantSpec:
        if self.randomize and (self.kind == "baseline" or self.combine is not None or self.keep != "below"):
            raise ValueError(f"variant {self.name!r}: randomize needs kind filter or tag with a threshold "
                             "or percentile (not combine or keep='above')")
        given = [k for k in ("threshold", "percentile", "combine") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(
                f"variant {self.name!r}: give one of threshold, percentile, combine; got {given}"
            )
        if self.kind == "baseline" and given:
            raise ValueError(f"variant {self.name!r} is a baseline: remove {given}")
        if self.kind != "filter" and (self.combine is not None or self.keep != "below"):
            raise ValueError(f"variant {self.name!r}: combine and keep='above' are for kind 'filter' only")
        return self


def parse(model: type[Strict], data: dict[str, Any], where: str) -> Any:
    """Validate ``data`` into ``model``; a ConfigError lists each bad field, the value and what is allowed."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{where}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
            if e["loc"]
            else f"{where}: {e['msg']}"
            for e in err.errors()
        )
        raise ConfigError(problems) from None
