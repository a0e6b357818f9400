"""Shared plumbing for the filter stages: source.json, running datatrove, counting what came out."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep

from core.errors import ConfigError, InputDataError
from core.stage import PartComplete, StageContext

SOURCE_JSON = "source.json"


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``source.json``: the files to read (absolute) and how to read them."""

    folder: Path
    format: str
    paths: list[str]
    """As written in source.json (relative to ``folder`` or absolute): used in ids and quarantine records."""
    text_key: str = "text"
    id_key: str = "id"
    heldout: str | None = None
    labelled: dict[str, str] = field(default_factory=dict)

    def resolve(self, path: str) -> Path:
        """An absolute path for a path listed in source.json."""
        return Path(path) if Path(path).is_absolute() else self.folder / path

    @property
    def absolute_paths(self) -> list[str]:
        return [str(self.resolve(p)) for p in self.paths]


def load_source(folder: Path) -> SourceSpec:
    """Read ``<folder>/source.json``; raise InputDataError naming the file when it is missing or unusable."""
    path = Path(folder) / SOURCE_JSON
    if not path.is_file():
        raise InputDataError(f"source artifact {folder} has no {SOURCE_JSON}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputDataError(f"{path} is not valid JSON: {err}") from err
    if data.get("format") not in ("jsonl", "parquet"):
        raise InputDataError(f"{path}: format must be 'jsonl' or 'parquet', got {data.get('format')!r}")
    if not isinstance(data.get("paths"), list) or not data["paths"]:
        raise InputDataError(f"{path}: paths must be a non-empty list, got {data.get('paths')!r}")
    return SourceSpec(
        folder=Path(folder).resolve(),
        format=data["format"],
        paths=[str(p) for p in data["paths"]],
        text_key=data.get("text_key", "text"),
        id_key=data.get("id_key", "id"),
        heldout=data.get("heldout"),
        labelled=dict(data.get("labelled") or {}),
    )


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


def ground_truth(record: dict[str, Any], key: str) -> str | None:
    """The synthetic generator's ground truth ``metadata[key]`` as a string (None when absent)."""
    value = (record.get("metadata") or {}).get(key)
    return None if value is None else str(value)
