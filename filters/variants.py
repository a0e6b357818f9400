"""The ``variant`` stage: build one training-data variant from the scored shards, without rescoring.

Config (``filters.config.VariantSpec``): ``name``; ``kind`` in ``baseline`` (copy), ``filter`` (drop by a
decision; dropped docs with full text and ``metadata["filter_reason"]`` in ``excluded/``) or ``tag``
(``DocumentTagger``); ``score_key`` (default: the score stage's ``score.json``); one of ``threshold``
(default 0.5), ``percentile`` (the threshold is that quantile of the score over the whole scored corpus,
computed once from the score tables and recorded in the result) or ``combine`` (several classifiers:
any/all/weighted); ``keep`` (``below``: drop high scores; ``above``: keep only high scores, DCLM-style);
``tags``, ``untagged_fraction``, ``separator`` (tag).

The ``tag`` kind is built here too (same reader, validator, writer and counts), but its tagging step belongs to
``conditional_tags``, the layer above: ``conditional_tags.document_tag:run`` passes it in (``build``); ``run``
here refuses ``tag``. Layouts are identical on both paths (one-pass materializer for baseline/filter,
datatrove for tag).
Documents whose score is missing or not a number in [0, 1] are quarantined (never kept).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from core.errors import ConfigError, InputDataError
from core.stage import PartComplete, StageContext
from filters.config import VariantSpec, parse
from filters.datatrove_stage import (
    check_keys,
    iter_jsonl,
    jsonl_files,
    quarantine_counts,
    run_datatrove,
    step_stats,
)
from filters.decisions import (
    SCORE_TABLES,
    CombinedDecision,
    Decision,
    DecisionFilter,
    ThresholdDecision,
    score_quantile,
)
from filters.materialize import VariantPlan, materialize
from filters.random_control import RandomDecision, flagged_ids
from filters.reader import SafeDocumentReader
from filters.writers import QuarantineWriter, ReproducibleJsonlWriter

KINDS = get_args(VariantSpec.model_fields["kind"].annotation)
"""The kinds this stage builds (``tag`` with the tagging step ``conditional_tags.document_tag`` passes in)."""
CONFIG_KEYS = set(VariantSpec.model_fields)
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


class ThresholdFilter(DecisionFilter):
    """Drops documents with ``metadata[score_key] >= threshold``, reason ``"<score_key>>=<threshold>"``.

    A document without a numeric score is dropped with reason ``"missing_<score_key>"`` (never kept
    silently); in the variant stage a ``ScoreValidator`` quarantines those first.
    """

    name = "🎚 Threshold filter"

    def __init__(
        self, score_key: str, threshold: float = 0.5, exclusion_writer: DiskWriter | None = None
    ) -> None:
        super().__init__(ThresholdDecision(score_key, threshold), exclusion_writer)
        self.score_key = score_key
        self.threshold = threshold
        self.reason = self.decision.reason


def _decision(spec: VariantSpec, score_key: str, threshold: float) -> Decision | None:
    """What a filter variant drops (None for baseline and tag)."""
    if spec.kind != "filter":
        return None
    if spec.combine is not None:
        return CombinedDecision(spec.combine)
    return ThresholdDecision(score_key, threshold, spec.keep)


StepFactory = Callable[[StageContext, VariantSpec, str, dict[str, Any]], PipelineStep]
"""Builds a tag variant's per-document step from the stage context, the variant spec, the score key and the
threshold record (``{"threshold": float, ...}``; a step may add what the result should keep, e.g. a random
control's counts)."""


def random_filter(ctx: StageContext, score_key: str, threshold: float) -> tuple[RandomDecision, dict[str, Any]]:
    """The negative control of a filter variant: drop as many documents as the threshold flags, chosen at
    random; returns the decision and the record kept in the result."""
    ids, flagged = flagged_ids(ctx.inputs["score"], score_key, threshold, ctx.seed)
    return RandomDecision(ids, score_key), {"flagged_by_score": flagged, "chosen_at_random": len(ids),
                                            "seed": ctx.seed}


def _score_key(ctx: StageContext) -> str:
    if ctx.config.get("score_key"):
        return str(ctx.config["score_key"])
    path = ctx.inputs["score"] / "score.json"
    if not path.is_file():
        raise ConfigError(f"variant.score_key not set and {path} does not exist")
    return json.loads(path.read_text())["score_key"]


def ground_truth(record: dict[str, Any], key: str) -> str | None:
    """The synthetic generator's ground truth ``metadata[key]`` as a string (None when absent)."""
    value = (record.get("metadata") or {}).get(key)
    return None if value is None else str(value)


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


def resolve(ctx: StageContext) -> tuple[VariantSpec, str, dict[str, Any]]:
    """Validated spec, score key and threshold record (fixed, default 0.5, or a corpus percentile)."""
    config = ctx.config
    check_keys(config, CONFIG_KEYS, {"name", "kind"}, "variant")
    if config["kind"] not in KINDS:
        raise ConfigError(f"variant.kind must be one of {list(KINDS)}, got {config['kind']!r}")
    if "score" not in ctx.inputs:
        raise ConfigError(f"variant stage needs a 'score' input; got roles {sorted(ctx.inputs)}")
    spec: VariantSpec = parse(VariantSpec, config, "variant")
    score_key = _score_key(ctx)
    if spec.kind == "baseline" or spec.combine is not None:
        return spec, score_key, {"threshold": None}
    if spec.percentile is not None:
        return spec, score_key, _percentile(ctx.inputs["score"], score_key, spec.percentile)
    return spec, score_key, {"threshold": spec.threshold if spec.threshold is not None else 0.5}


def _percentile(score_dir: Path, score_key: str, percentile: float) -> dict[str, Any]:
    """The quantile over the whole scored corpus, from the score tables (computed once per variant)."""
    if not (score_dir / SCORE_TABLES).is_dir():
        raise InputDataError(
            f"variant.percentile needs the score tables {score_dir / SCORE_TABLES} (from the score stage)"
        )
    record = score_quantile(score_dir, score_key, percentile)
    n, above = record["scores"], record["at_or_above"]
    asked = 1.0 - percentile
    if abs(above / n - asked) > max(asked / 2, 1 / n):
        raise InputDataError(
            f"variant.percentile {percentile}: the {percentile:.0%} quantile of {score_key!r} is "
            f"{record['threshold']:g}, and {above:,} of {n:,} scores ({above / n:.1%}) are at or above it, not "
            f"the {asked:.0%} asked for: the scores are tied there (a blocklist or a cascade gives many equal "
            "scores). A percentile cannot split tied documents; use `threshold:` instead, or a score with fewer ties"
        )
    return record


def run(ctx: StageContext) -> dict[str, Any]:
    """Build a baseline or filter variant (``tag`` is ``conditional_tags.document_tag:run``)."""
    return build(ctx)


def build(ctx: StageContext, tag_step: StepFactory | None = None) -> dict[str, Any]:
    """Build the variant; result counts satisfy ``documents_in == kept + dropped + quarantined``.

    baseline/filter variants use the one-pass materializer (``filters.materialize``); a ``tag`` variant runs
    the datatrove pipeline (reader -> ScoreValidator -> ``tag_step`` -> writer).
    """
    spec, score_key, threshold = resolve(ctx)
    inputs = jsonl_files(ctx.inputs["score"] / "shards")
    if not inputs:
        raise InputDataError(f"score artifact {ctx.inputs['score']} has no shards/*.jsonl.gz")
    decision = _decision(spec, score_key, threshold["threshold"])
    tagger = None
    if spec.kind == "tag":
        if tag_step is None:
            raise ConfigError(f"variant {spec.name!r}: kind 'tag' is built by conditional_tags.document_tag:run "
                              "(the tagging step belongs to conditional_tags), not filters.variants:run")
        tagger = tag_step(ctx, spec, score_key, threshold)
    elif spec.randomize:
        decision, threshold["random_control"] = random_filter(ctx, score_key, threshold["threshold"])
    if tagger is not None:
        counts = run_with_datatrove(ctx, inputs, score_key, tagger, count_tags=True)
    else:
        keys = decision.keys if isinstance(decision, CombinedDecision) else [score_key]
        counts = materialize_ranks(ctx, inputs, keys, decision)
    kept, dropped, quarantined = counts["kept"], counts["dropped"], counts["quarantined"]
    if counts["documents_in"] != kept + dropped + sum(quarantined.values()):
        raise InputDataError(
            f"variant counts do not reconcile: {counts['documents_in']} in, kept {kept}, dropped {dropped}, "
            f"quarantined {quarantined}"
        )
    if kept == 0:
        raise InputDataError(
            f"variant {spec.name!r} keeps none of {counts['documents_in']:,} documents (dropped {dropped:,}, "
            f"quarantined {quarantined}; threshold {threshold.get('threshold')}): nothing to train on. Check the "
            "threshold, `keep`, and for `combine` that every document has every score it names"
        )
    return {
        "kind": spec.kind,
        "score_key": score_key,
        **threshold,
        **({"keep": spec.keep} if spec.kind == "filter" else {}),
        **({"combine": spec.combine.model_dump()} if spec.combine else {}),
        **counts,
    }


def materialize_ranks(ctx: StageContext, inputs: list[Path], keys: list[str], decision: Decision | None
                      ) -> dict[str, Any]:
    """One-pass materialization of a baseline/filter variant, rank by rank when the stage runs in parts.

    Run whole (no ``ctx.part`` and no ``ranks/`` left by parts) it is one :func:`materialize` call. A part of
    a job array materializes its ranks (shard ``i`` -> rank ``i``, the same files) and records each rank's
    counts in ``ranks/<rank>.json`` after the rank's files are closed; the finishing run adds them up and
    materializes only the ranks no part finished. The counts add: every field is a sum over documents.
    """
    done_dir = ctx.out / "ranks"
    if ctx.part is None and not done_dir.is_dir():
        (counts,) = materialize(inputs, [VariantPlan(ctx.out, keys, decision)], progress=ctx.progress)
        return counts
    per_rank = []
    for rank in ctx.ranks(len(inputs)):
        path = done_dir / f"{rank:05d}.json"
        if path.is_file():
            per_rank.append(json.loads(path.read_text()))
            continue
        (counts,) = materialize([inputs[rank]], [VariantPlan(ctx.out, keys, decision)], progress=ctx.progress,
                                first_rank=rank)
        done_dir.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(counts, sort_keys=True))
        tmp.replace(path)
        per_rank.append(counts)
    if ctx.part is not None:
        raise PartComplete
    return add_counts(per_rank)


def add_counts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The sum of per-rank materializer counts (numbers add, nested dicts add key by key, keys sorted)."""
    def add(a: Any, b: Any) -> Any:
        if isinstance(a, dict) or isinstance(b, dict):
            a, b = a or {}, b or {}
            return {k: add(a.get(k), b.get(k)) for k in sorted(set(a) | set(b))}
        return (a or 0) + (b or 0)

    total: dict[str, Any] = {}
    for part in parts:
        total = add(total, part)
    return total


def run_variant_pipeline(
    ctx: StageContext, inputs: list[Path], score_key: str, steps: list[PipelineStep]
) -> Path:
    """Run reader -> score validator -> ``steps`` -> writer over the scored shards; return the logging dir.

    Shared by every variant kind (filters/ and conditional_tags/): unreadable records and documents without a
    usable score go to ``quarantine/``, kept documents to ``shards/``, dropped ones (written by a filter's
    exclusion writer) to ``excluded/``.
    """
    quarantine = str(ctx.out / "quarantine")
    pipeline: list[PipelineStep] = [
        SafeDocumentReader(
            [str(p) for p in inputs], quarantine, display_paths=[f"shards/{p.name}" for p in inputs]
        ),
        ScoreValidator(score_key, exclusion_writer=QuarantineWriter(quarantine, "${rank}_score.jsonl.gz")),
        *steps,
        ReproducibleJsonlWriter(str(ctx.out / "shards")),
    ]
    return run_datatrove(ctx, pipeline, len(inputs))


def run_with_datatrove(
    ctx: StageContext, inputs: list[Path], score_key: str, decision: PipelineStep | None, count_tags: bool = False
) -> dict[str, Any]:
    """The datatrove variant pipeline over ``inputs`` (any decision step, None copies) and its counts."""
    logging_dir = run_variant_pipeline(ctx, inputs, score_key, [decision] if decision else [])
    source = _tally(ctx, inputs, "count input")
    kept = _tally(ctx, jsonl_files(ctx.out / "shards"), "count kept")
    dropped = _tally(ctx, jsonl_files(ctx.out / "excluded"), "count dropped")
    counts = {
        "documents_in": step_stats(logging_dir, SafeDocumentReader.name, len(inputs))["records_in"],
        "kept": kept["documents"],
        "dropped": dropped["documents"],
        "quarantined": quarantine_counts(ctx.out / "quarantine"),
        "characters_in": source["characters"],
        "characters_kept": kept["characters"],
        "by_label": {"in": source["by_label"], "kept": kept["by_label"], "dropped": dropped["by_label"]},
        "by_kind": {"in": source["by_kind"], "kept": kept["by_kind"], "dropped": dropped["by_kind"]},
    }
    if count_tags:
        counts["tags"] = kept["by_tag"]
    return counts
