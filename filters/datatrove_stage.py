"""The filter stages' datatrove plumbing: running a pipeline as a stage (ranks, parts, completions), counting
what came out, and reading the jsonl shards back. ``source.json`` is read by ``core.documents.load_source``."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.stats import MetricStats

from core.errors import ConfigError, InputDataError
from core.stage import PartComplete, StageContext

__all__ = ["add_count", "add_values", "check_keys", "iter_jsonl", "jsonl_files", "quarantine_counts", "run_datatrove",
           "step_stats"]


def check_keys(config: dict[str, Any], allowed: set[str], required: set[str], where: str) -> None:
    """Strict config: unknown keys and missing required keys are ConfigErrors listing what is allowed."""
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown config key(s) {unknown}; allowed: {sorted(allowed)}")
    missing = sorted(required - set(config))
    if missing:
        raise ConfigError(f"{where}: missing required config key(s) {missing}")


def run_datatrove(ctx: StageContext, pipeline: list[PipelineStep], tasks: int) -> Path:
    """Run ``pipeline`` with ``tasks`` ranks over ``ctx.workers`` processes, logging into ``ctx.out/logs``.

    The logging folder lives inside the (hash-keyed) stage folder, so a re-attempt of the same stage skips
    ranks datatrove already marked complete, and a changed config never reuses another config's ranks.
    With ``ctx.part`` set (one task of a job array) only that part's ranks run, then :class:`PartComplete`
    is raised: the finishing run skips them.
    """
    logging_dir = ctx.out / "logs"
    ranks = ctx.ranks(tasks)
    if len(ranks):
        executor = LocalPipelineExecutor(
            pipeline=pipeline,
            tasks=tasks,
            workers=max(1, min(ctx.workers, len(ranks))),
            logging_dir=str(logging_dir),
            local_tasks=len(ranks),
            local_rank_offset=ranks.start,
        )
        executor.run()
        incomplete = [rank for rank in ranks if not executor.is_rank_completed(rank)]
        if incomplete:
            raise InputDataError(f"datatrove ranks {incomplete} did not complete; see {logging_dir}/logs")
    if ctx.part is not None:
        raise PartComplete
    return logging_dir


def step_stats(logging_dir: Path, step_name: str, tasks: int) -> Counter[str]:
    """Sum the counters of the step whose name ends with ``step_name`` over every rank's stats file."""
    totals: Counter[str] = Counter()
    for rank in range(tasks):
        path = logging_dir / "stats" / f"{rank:05d}.json"
        if not path.is_file():
            raise InputDataError(f"missing datatrove stats {path}: was the rank completed elsewhere?")
        for step in json.loads(path.read_text()):
            if not step["name"].endswith(step_name):
                continue
            for key, value in step["stats"].items():
                totals[key] += value["total"] if isinstance(value, dict) else value
    return totals


def add_count(step: PipelineStep, label: str, value: int) -> None:
    """Add ``value`` to a step's counter in one call: the stats ``value`` calls of ``stat_update(label)`` give.

    ``stat_update`` costs ~1 us per call; a step that counts per document calls this once per batch."""
    if value:
        step.stats[label] = step.stats[label] + MetricStats(total=value, n=value, mean=1.0, min=1, max=1)


def add_values(step: PipelineStep, label: str, values: list[int]) -> None:
    """Add a batch of measurements (e.g. document lengths) to a step's statistic in one call: total, count,
    mean, min, max and variance as ``stat_update(label, value=v)`` per value gives (up to float rounding)."""
    if not values:
        return
    total = sum(values)
    mean = total / len(values)
    spread = sum((v - mean) ** 2 for v in values)
    batch = MetricStats(total=total, n=len(values), mean=mean, min=min(values), max=max(values),
                        _running_variance=spread)
    step.stats[label] = step.stats[label] + batch


def iter_jsonl(paths: list[Path]) -> Iterator[dict[str, Any]]:
    """Records of (optionally gzipped) jsonl files, in order."""
    for path in paths:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            for line in handle:
                if line.strip():
                    yield orjson.loads(line)


def jsonl_files(folder: Path) -> list[Path]:
    """The ``*.jsonl.gz`` files of a folder, sorted (empty when the folder does not exist)."""
    return sorted(folder.glob("*.jsonl.gz")) if folder.is_dir() else []


def quarantine_counts(folder: Path) -> dict[str, int]:
    """Quarantined records per reason, read back from the quarantine files."""
    return dict(sorted(Counter(rec["reason"] for rec in iter_jsonl(jsonl_files(folder))).items()))
