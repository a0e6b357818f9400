"""One-pass materialization of K baseline/filter variants from a score artifact's shards.

The datatrove path (reader -> validator -> filter -> writer) rebuilds a ``Document`` per record and
re-serializes it. Here each shard is read once; every line is parsed (for the decision and the counts) but
a kept document is written as its original bytes, so the output is byte-identical to the datatrove path
(same writer layout: ``shards/<rank>.jsonl.gz``, ``excluded/<rank>.jsonl.gz`` with
``metadata["filter_reason"]``, ``quarantine/<rank>_score.jsonl.gz`` for missing/invalid scores,
``quarantine/<rank>.jsonl.gz`` for unusable lines), and K variants share one read.
"""

from __future__ import annotations

import gzip
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from core.documents import parse_line
from core.errors import InputDataError
from filters.decisions import CombinedDecision, Decision, usable
from filters.writers import GZIP_LEVEL, quarantine_record

TRUTH_KEYS = ("label", "kind")


@dataclass
class VariantPlan:
    """One variant to write: where, which score must be valid, and the decision (None: baseline)."""

    out: Path
    score_keys: list[str]
    decision: Decision | None = None
    counts: dict[str, Any] = field(default_factory=dict)


class _Sinks:
    """Lazily opened reproducible gzip outputs (a file exists only once something is written to it).

    Lines are buffered and compressed ``BUFFER_LINES`` at a time (zlib's output does not depend on how the
    input is chunked, so the bytes equal a line-by-line writer's).
    """

    BUFFER_LINES = 512

    def __init__(self) -> None:
        self.buffers: dict[Path, list[bytes]] = {}
        self.files: dict[Path, tuple[IO[bytes], gzip.GzipFile]] = {}

    def write(self, path: Path, line: bytes) -> None:
        buffer = self.buffers.setdefault(path, [])
        buffer.append(line)
        if len(buffer) >= self.BUFFER_LINES:
            self._flush(path)

    def _flush(self, path: Path) -> None:
        if path not in self.files:
            path.parent.mkdir(parents=True, exist_ok=True)
            raw = open(path, "wb")  # noqa: SIM115 - closed in close()
            stream = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="", compresslevel=GZIP_LEVEL)
            self.files[path] = (raw, stream)
        self.files[path][1].write(b"".join(self.buffers.pop(path)))

    def close(self) -> None:
        for path in [p for p, lines in self.buffers.items() if lines]:
            self._flush(path)
        for raw, stream in self.files.values():
            stream.close()
            raw.close()
        self.files.clear()


def _tally() -> dict[str, Any]:
    return {"documents": 0, "characters": 0, "by_label": Counter(), "by_kind": Counter()}


def _count(tally: dict[str, Any], record: dict[str, Any]) -> None:
    tally["documents"] += 1
    tally["characters"] += len(record["text"])
    metadata = record.get("metadata") or {}
    for key in TRUTH_KEYS:
        if metadata.get(key) is not None:
            tally[f"by_{key}"][str(metadata[key])] += 1


def _parse(line: bytes, seen: set[str]) -> dict[str, Any] | str:
    """The record of a shard line, or why it is unusable (same reasons as ``SafeDocumentReader``)."""
    record = parse_line(line)
    if isinstance(record, str):
        return record
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        return (
            "missing_text"
            if text is None
            else "non_string_text"
            if not isinstance(text, str)
            else "empty_text"
        )
    if str(record.get("id")) in seen:
        return "duplicate_id"
    seen.add(str(record.get("id")))
    return record


def materialize(shards: list[Path], plans: list[VariantPlan], progress: Any = None, first_rank: int = 0
                ) -> list[dict[str, Any]]:
    """Write every plan's variant in one pass over ``shards`` (``shards[i]`` is rank ``first_rank + i``);
    return per-plan counts (see ``_result``)."""
    source = _tally()
    for plan in plans:
        plan.counts = {
            "in": source,
            "kept": _tally(),
            "dropped": _tally(),
            "quarantined": Counter(),
            "documents_in": 0,
        }
    sinks = _Sinks()
    try:
        for rank, shard in enumerate(shards, start=first_rank):
            seen: set[str] = set()
            outputs = [_Outputs(plan.out, f"{rank:05d}") for plan in plans]
            with gzip.open(shard, "rb") as handle:
                lines = progress(handle, desc=f"materialize {shard.name}") if progress else handle
                for line_no, line in enumerate(lines, start=1):
                    record = _parse(line, seen)
                    if not isinstance(record, str):
                        _count(source, record)
                    for plan, out in zip(plans, outputs, strict=True):
                        _route(plan, out, f"shards/{shard.name}", line_no, line, record, sinks)
    except (OSError, EOFError) as err:
        raise InputDataError(f"cannot read score shard: {err}") from err
    finally:
        sinks.close()
    return [_result(plan) for plan in plans]


class _Outputs:
    """The four output files of one plan for one rank."""

    def __init__(self, out: Path, name: str) -> None:
        self.kept = out / "shards" / f"{name}.jsonl.gz"
        self.excluded = out / "excluded" / f"{name}.jsonl.gz"
        self.bad_line = out / "quarantine" / f"{name}.jsonl.gz"
        self.bad_score = out / "quarantine" / f"{name}_score.jsonl.gz"


def _undecided(plan: VariantPlan, metadata: dict[str, Any]) -> bool:
    """Whether a document with an unusable score is quarantined: always, except under a ``combine`` decision
    whose scores are absent (never invalid) and that decides without them (``CombinedDecision.decide``)."""
    if not isinstance(plan.decision, CombinedDecision):
        return True
    if any(k in metadata and not usable(metadata[k]) for k in plan.score_keys):
        return True
    return (plan.decision.decide(metadata) or "").startswith("missing_")


def _route(
    plan: VariantPlan,
    out: _Outputs,
    shown: str,
    line_no: int,
    line: bytes,
    record: dict[str, Any] | str,
    sinks: _Sinks,
) -> None:
    """Send one line to the plan's kept / excluded / quarantine output and count it."""
    counts = plan.counts
    counts["documents_in"] += 1
    if isinstance(record, str):
        entry = quarantine_record(shown, "line", line_no, record, line.rstrip(b"\r\n"))
        sinks.write(out.bad_line, orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))
        counts["quarantined"][record] += 1
        return
    metadata = record.get("metadata") or {}
    bad = next((k for k in plan.score_keys if not usable(metadata.get(k))), None)
    if bad is not None and _undecided(plan, metadata):
        reason = "missing_score" if bad not in metadata else "invalid_score"
        doc = {
            "id": str(record.get("id")),
            "text": record["text"],
            "metadata": metadata | {"filter_reason": reason},
        }
        entry = quarantine_record(None, "line", None, reason, orjson.dumps(doc)) | {"id": doc["id"]}
        sinks.write(out.bad_score, orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))
        counts["quarantined"][reason] += 1
        return
    if plan.decision is None:
        reason = None
    elif getattr(plan.decision, "by_id", False):  # a random control decides by document id
        reason = plan.decision.decide(metadata, str(record.get("id")))
    else:
        reason = plan.decision.decide(metadata)
    if reason is None:
        sinks.write(out.kept, line if line.endswith(b"\n") else line + b"\n")
        _count(counts["kept"], record)
        return
    excluded = record | {"metadata": metadata | {"filter_reason": reason}}
    sinks.write(out.excluded, orjson.dumps(excluded, option=orjson.OPT_APPEND_NEWLINE))
    _count(counts["dropped"], record)


def _result(plan: VariantPlan) -> dict[str, Any]:
    counts = plan.counts
    tallies = {k: counts[k] for k in ("in", "kept", "dropped")}
    return {
        "documents_in": counts["documents_in"],
        "kept": tallies["kept"]["documents"],
        "dropped": tallies["dropped"]["documents"],
        "quarantined": dict(sorted(counts["quarantined"].items())),
        "characters_in": tallies["in"]["characters"],
        "characters_kept": tallies["kept"]["characters"],
        "by_label": {k: dict(sorted(t["by_label"].items())) for k, t in tallies.items()},
        "by_kind": {k: dict(sorted(t["by_kind"].items())) for k, t in tallies.items()},
    }
