"""Decisions over stored scores: fixed threshold, corpus percentile, and combinations of several classifiers.

A decision is a small picklable object with ``decide(metadata) -> reason | None`` (None keeps the
document). ``DecisionFilter`` wraps one as a datatrove ``BaseFilter`` (dropped documents, full text, go to
its exclusion writer with ``metadata["filter_reason"]``); the one-pass materializer calls the same
``decide``, so both paths take identical decisions with identical reasons.

The score stage also writes a compact score table per shard (``scores/<rank>.parquet``: ``id``, every score
key, ground-truth ``label``/``kind`` when present), in shard line order; percentiles and summaries read
it instead of the text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from core.errors import InputDataError
from filters.config import CombineSpec

SCORE_TABLES = "scores"
TRUTH_COLUMNS = ("label", "kind")


def usable(score: Any) -> bool:
    """A real number in [0, 1] (not a bool, not NaN)."""
    return isinstance(score, (int, float)) and not isinstance(score, bool) and 0.0 <= score <= 1.0


class ThresholdDecision:
    """keep='below': drop ``score >= threshold`` (reason ``key>=t``); keep='above': drop ``score < threshold``
    (reason ``key<t``). A missing or non-numeric score drops with ``missing_<key>``."""

    def __init__(self, score_key: str, threshold: float, keep: str = "below") -> None:
        if keep not in ("below", "above"):
            raise ValueError(f"keep must be 'below' or 'above', got {keep!r}")
        self.score_key, self.threshold, self.keep = score_key, threshold, keep
        self.reason = f"{score_key}>={threshold}" if keep == "below" else f"{score_key}<{threshold}"
        self.keys = [score_key]

    def decide(self, metadata: Mapping[str, Any]) -> str | None:
        """The drop reason, or None to keep."""
        score = metadata.get(self.score_key)
        if not isinstance(score, (int, float)) or math.isnan(score):
            return f"missing_{self.score_key}"
        return self.reason if (score >= self.threshold) == (self.keep == "below") else None


class CombinedDecision:
    """Several classifiers at once: ``any`` / ``all`` of ``score >= threshold`` fire, or a weighted mean
    ``>= threshold`` (reasons ``any:a_score>=0.5+b_score>=0.3``, ``all:...``, ``weighted>=0.5``)."""

    def __init__(self, spec: CombineSpec | Mapping[str, Any]) -> None:
        self.spec = spec if isinstance(spec, CombineSpec) else CombineSpec.model_validate(spec)
        self.keys = sorted(self.spec.thresholds or self.spec.weights)

    def decide(self, metadata: Mapping[str, Any]) -> str | None:
        """The drop reason, or None to keep; ``missing_<key>`` when a missing score leaves it undecided.

        A missing score does not always leave it undecided: ``all`` keeps a document when a score it has is
        below its threshold, ``any`` drops it when a score it has fires. That is the case of a cascade's
        members: a document the first stage passed early (decided clean) has no later-stage score, and
        ``all`` of the members keeps it."""
        spec = self.spec
        missing = [k for k in self.keys if not isinstance(metadata.get(k), (int, float)) or math.isnan(metadata[k])]
        if missing:
            if spec.mode == "weighted":
                return f"missing_{missing[0]}"
            present = [k for k in self.keys if k not in missing]
            fired = [f"{k}>={spec.thresholds[k]}" for k in present if metadata[k] >= spec.thresholds[k]]
            if spec.mode == "all" and len(fired) < len(present):
                return None
            if spec.mode == "any" and fired:
                return f"any:{'+'.join(fired)}"
            return f"missing_{missing[0]}"
        if spec.mode == "weighted":
            total = sum(spec.weights.values())
            mean = sum(w * metadata[k] for k, w in sorted(spec.weights.items())) / total
            return f"weighted>={spec.threshold}" if mean >= spec.threshold else None
        fired = [f"{k}>={t}" for k, t in sorted(spec.thresholds.items()) if metadata[k] >= t]
        if (spec.mode == "any" and fired) or (spec.mode == "all" and len(fired) == len(self.keys)):
            return f"{spec.mode}:{'+'.join(fired)}"
        return None


Decision = ThresholdDecision | CombinedDecision


class DecisionFilter(BaseFilter):
    """A datatrove filter that drops what its decision says, with the decision's reason."""

    name = "🎚 Decision filter"

    def __init__(self, decision: Decision, exclusion_writer: DiskWriter | None = None) -> None:
        super().__init__(exclusion_writer)
        self.decision = decision

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        """Keep unless the decision returns a reason."""
        reason = self.decision.decide(doc.metadata)
        return True if reason is None else (False, reason)


class ScoreTableWriter(PipelineStep):
    """Pass-through step recording ``id``, ``keys`` and ground truth of every document it sees, then writing
    ``<folder>/<rank>.parquet`` (rows in stream order: place it right before the shard writer)."""

    name = "📇 Score table"
    type = "💽 - WRITER"

    def __init__(self, folder: str, keys: list[str]) -> None:
        super().__init__()
        self.folder = folder
        self.keys = list(keys)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        """Yield every document unchanged; write the table once the stream ends."""
        columns: dict[str, list[Any]] = {name: [] for name in ("id", *self.keys, *TRUTH_COLUMNS)}
        ids, scores = columns["id"], [(k, columns[k]) for k in self.keys]
        truths = [(k, columns[k]) for k in TRUTH_COLUMNS]
        for doc in data:
            ids.append(doc.id)
            metadata = doc.metadata
            for key, column in scores:
                value = metadata.get(key)
                if type(value) is float and 0.0 <= value <= 1.0:  # the common case of usable(), without a call
                    column.append(value)
                else:
                    column.append(float(value) if usable(value) else None)
            for key, column in truths:
                value = metadata.get(key)
                column.append(None if value is None else str(value))
            yield doc
        write_table(Path(self.folder) / f"{rank:05d}.parquet", columns, self.keys)


def write_table(path: Path, columns: dict[str, list[Any]], keys: list[str]) -> None:
    """Write one score table (float64 score columns, string id/ground truth)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    fields = [pa.field(n, pa.float64() if n in keys else pa.string()) for n in columns]
    table = pa.table({n: pa.array(v, type=f.type) for (n, v), f in zip(columns.items(), fields, strict=True)})
    pq.write_table(table, path, compression="zstd")


def read_scores(score_dir: Path, key: str) -> list[float]:
    """Every usable value of ``key`` in the score tables of a score artifact (shard order)."""
    import pyarrow.parquet as pq

    tables = sorted((Path(score_dir) / SCORE_TABLES).glob("*.parquet"))
    if not tables:
        raise InputDataError(f"score artifact {score_dir} has no {SCORE_TABLES}/*.parquet score tables")
    values: list[float] = []
    for path in tables:
        names = pq.read_schema(path).names
        if key not in names:
            raise InputDataError(f"{path} has no score column {key!r}; columns: {names}")
        values += [v for v in pq.read_table(path, columns=[key]).column(key).to_pylist() if v is not None]
    return values


def score_quantile(score_dir: Path, key: str, quantile: float) -> dict[str, Any]:
    """The ``quantile`` of ``key`` over the whole scored corpus (numpy's linear method), with its inputs."""
    import numpy as np

    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    values = read_scores(score_dir, key)
    if not values:
        raise InputDataError(f"score artifact {score_dir}: no usable {key!r} scores to take a percentile of")
    threshold = float(np.quantile(np.asarray(values, dtype=np.float64), quantile))
    above = sum(v >= threshold for v in values)
    return {
        "percentile": quantile,
        "threshold": threshold,
        "method": "numpy.quantile(linear)",
        "scores": len(values),
        "at_or_above": above,
    }
