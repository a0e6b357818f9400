"""The ``variant`` stage: build one training-data variant from the scored shards, without rescoring.

Config: ``name``; ``kind`` in ``baseline`` (copy), ``filter`` (drop ``score >= threshold``; dropped docs
with full text and ``metadata["filter_reason"]`` in ``excluded/``) or ``tag`` (``DocumentTagger``);
``score_key`` (default: the score stage's ``score.json``); ``threshold`` (default 0.5); ``tags``
(``{"good", "bad"}``); ``untagged_fraction`` (default 0); ``separator`` (default ``""``).

Every variant runs the same reader -> ``ScoreValidator`` -> [decision] -> writer pipeline, so layouts are
identical. Documents whose score is missing or not a number in [0, 1] are quarantined (never kept).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from conditional_tags.tagger import DEFAULT_TAGS, DocumentTagger
from filters.pipeline import (
    check_keys,
    ground_truth,
    iter_jsonl,
    jsonl_files,
    quarantine_counts,
    run_datatrove,
    step_stats,
)
from filters.reader import SafeDocumentReader
from filters.writers import QuarantineWriter, ReproducibleJsonlWriter
from propensity.errors import ConfigError, InputDataError
from propensity.stage import StageContext

KINDS = ("baseline", "filter", "tag")
CONFIG_KEYS = {"name", "kind", "score_key", "threshold", "tags", "untagged_fraction", "separator"}
GROUND_TRUTH_KEYS = ("label", "kind")


class ScoreValidator(BaseFilter):
    """Drops documents whose ``metadata[score_key]`` is missing (``missing_score``) or not a number in [0, 1]
    (``invalid_score``); give it a ``QuarantineWriter`` so they are quarantined, not lost."""

    name = "🧪 Score validator"

    def __init__(self, score_key: str, exclusion_writer: DiskWriter | None = None) -> None:
        super().__init__(exclusion_writer)
        self.score_key = score_key

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        """Keep documents with a usable score."""
        if self.score_key not in doc.metadata:
            return False, "missing_score"
        score = doc.metadata[self.score_key]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            return False, "invalid_score"
        return True


class ThresholdFilter(BaseFilter):
    """Drops documents with ``metadata[score_key] >= threshold``, reason ``"<score_key>>=<threshold>"``.

    A document without a numeric score is dropped with reason ``"missing_<score_key>"`` (never kept
    silently); in the variant stage a ``ScoreValidator`` quarantines those first.
    """

    name = "🎚 Threshold filter"

    def __init__(
        self, score_key: str, threshold: float = 0.5, exclusion_writer: DiskWriter | None = None
    ) -> None:
        super().__init__(exclusion_writer)
        self.score_key = score_key
        self.threshold = threshold
        self.reason = f"{score_key}>={threshold}"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        """Keep documents scoring below the threshold."""
        score = doc.metadata.get(self.score_key)
        if not isinstance(score, (int, float)) or math.isnan(score):
            return False, f"missing_{self.score_key}"
        if score >= self.threshold:
            return False, self.reason
        return True


def _decision_step(ctx: StageContext, score_key: str, threshold: float) -> PipelineStep | None:
    config = ctx.config
    if config["kind"] == "filter":
        excluded = ReproducibleJsonlWriter(str(ctx.out / "excluded"))
        return ThresholdFilter(score_key, threshold, exclusion_writer=excluded)
    if config["kind"] == "tag":
        tags = DEFAULT_TAGS | (config.get("tags") or {})
        if set(tags) != {"good", "bad"}:
            raise ConfigError(f"variant.tags must have keys 'good' and 'bad', got {sorted(tags)}")
        try:
            return DocumentTagger(
                score_key,
                threshold,
                tags["good"],
                tags["bad"],
                config.get("separator", ""),
                float(config.get("untagged_fraction", 0.0)),
                seed=ctx.seed,
            )
        except ValueError as err:
            raise ConfigError(f"variant {config['name']!r}: {err}") from err
    return None


def _score_key(ctx: StageContext) -> str:
    if ctx.config.get("score_key"):
        return str(ctx.config["score_key"])
    path = ctx.inputs["score"] / "score.json"
    if not path.is_file():
        raise ConfigError(f"variant.score_key not set and {path} does not exist")
    return json.loads(path.read_text())["score_key"]


def _tally(ctx: StageContext, paths: list[Path], desc: str) -> dict[str, Any]:
    """Documents, characters and tags of jsonl.gz files, split by ground-truth label/kind when present."""
    docs, chars = 0, 0
    groups: dict[str, Counter[str]] = {key: Counter() for key in (*GROUND_TRUTH_KEYS, "tag")}
    for record in ctx.progress(iter_jsonl(paths), desc=desc):
        docs += 1
        chars += len(record.get("text", ""))
        for key in GROUND_TRUTH_KEYS:
            value = ground_truth(record, key)
            if value is not None:
                groups[key][value] += 1
        if "tag" in (record.get("metadata") or {}):
            groups["tag"][str(record["metadata"]["tag"])] += 1
    return {
        "documents": docs,
        "characters": chars,
        **{f"by_{k}": dict(sorted(v.items())) for k, v in groups.items()},
    }


def run(ctx: StageContext) -> dict[str, Any]:
    """Build the variant; result counts satisfy ``documents_in == kept + dropped + quarantined``."""
    config = ctx.config
    check_keys(config, CONFIG_KEYS, {"name", "kind"}, "variant")
    if config["kind"] not in KINDS:
        raise ConfigError(f"variant.kind must be one of {list(KINDS)}, got {config['kind']!r}")
    if "score" not in ctx.inputs:
        raise ConfigError(f"variant stage needs a 'score' input; got roles {sorted(ctx.inputs)}")
    score_key = _score_key(ctx)
    threshold = float(config["threshold"]) if config.get("threshold") is not None else 0.5
    inputs = jsonl_files(ctx.inputs["score"] / "shards")
    if not inputs:
        raise InputDataError(f"score artifact {ctx.inputs['score']} has no shards/*.jsonl.gz")
    quarantine = str(ctx.out / "quarantine")
    pipeline: list[PipelineStep] = [
        SafeDocumentReader(
            [str(p) for p in inputs], quarantine, display_paths=[f"shards/{p.name}" for p in inputs]
        ),
        ScoreValidator(score_key, exclusion_writer=QuarantineWriter(quarantine, "${rank}_score.jsonl.gz")),
    ]
    decision = _decision_step(ctx, score_key, threshold)
    pipeline += [decision] if decision else []
    pipeline.append(ReproducibleJsonlWriter(str(ctx.out / "shards")))
    logging_dir = run_datatrove(ctx, pipeline, len(inputs))
    documents_in = step_stats(logging_dir, SafeDocumentReader.name, len(inputs))["records_in"]
    source = _tally(ctx, inputs, "count input")
    kept = _tally(ctx, jsonl_files(ctx.out / "shards"), "count kept")
    dropped = _tally(ctx, jsonl_files(ctx.out / "excluded"), "count dropped")
    quarantined = quarantine_counts(ctx.out / "quarantine")
    if documents_in != kept["documents"] + dropped["documents"] + sum(quarantined.values()):
        raise InputDataError(
            f"variant counts do not reconcile: {documents_in} in, kept {kept['documents']}, "
            f"dropped {dropped['documents']}, quarantined {quarantined}"
        )
    return {
        "kind": config["kind"],
        "score_key": score_key,
        "threshold": threshold if config["kind"] != "baseline" else None,
        "documents_in": documents_in,
        "kept": kept["documents"],
        "dropped": dropped["documents"],
        "quarantined": quarantined,
        "characters_in": source["characters"],
        "characters_kept": kept["characters"],
        "by_label": {"in": source["by_label"], "kept": kept["by_label"], "dropped": dropped["by_label"]},
        "by_kind": {"in": source["by_kind"], "kept": kept["by_kind"], "dropped": dropped["by_kind"]},
        **({"tags": kept["by_tag"]} if config["kind"] == "tag" else {}),
    }
