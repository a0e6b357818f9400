"""The ``score`` stage: attach ``metadata["<classifier>_score"]`` to every source document, once.

Pipeline per source file (one datatrove rank each): ``SafeDocumentReader`` (bad records to
``quarantine/``) -> the scorer built from ``classifier.json`` (fastText, transformer, blocklist, cascade or
ensemble; ``filters.suite``) -> ``ScoreTableWriter`` (``scores/${rank}.parquet``: id + every score key) ->
``ReproducibleJsonlWriter`` (``shards/${rank}.jsonl.gz``). Variants read these scores; they never rescore.
``score.json`` records the score key(s) for them; the result records per-stage cascade counts, the
transformer long-document policy and ``duplicate_ids_across_files`` (kept, counted). Documents longer than
the source's ``max_chars`` (``source.json``; the stage's own ``max_chars`` setting overrides it) are
quarantined as ``too_long``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.writers.jsonl import _json_default
from datatrove.utils.typeshelper import StatHints

from core.documents import SourceSpec, load_source
from core.errors import ConfigError, InputDataError
from core.stage import StageContext
from filters.cascade import CascadeScorer
from filters.config import SCORER_KINDS
from filters.datatrove_stage import check_keys, quarantine_counts, run_datatrove, step_stats
from filters.decisions import SCORE_TABLES, ScoreTableWriter
from filters.fasttext_model import load_fasttext
from filters.metrics import score_histogram
from filters.model_files import model_location, not_local
from filters.plots import plot_score_histograms
from filters.reader import ControlStringEscaper, SafeDocumentReader
from filters.scorers import FastTextScorer
from filters.suite import build_scorer, policies, score_keys
from filters.writers import ReproducibleJsonlWriter

__all__ = ["FastTextScorer", "ShardWriter", "run", "summarize_scores"]
CONFIG_KEYS = {"name", "score_key", "batch_size", "max_chars", "threshold", "plot"}
GROUND_TRUTH_KEYS = ("label", "kind")


class ShardWriter(ReproducibleJsonlWriter):
    """``ReproducibleJsonlWriter``'s bytes, written ``BATCH`` documents per gzip call.

    datatrove's ``DiskWriter.write`` spends, per document, two file-name template substitutions, a timer,
    three statistics updates and one gzip call: ~40% of the score stage's own time in ``benchmarks/filters.py``
    (cProfile). Here each document is serialized by the same adapter and ``orjson`` call and a batch is
    compressed in one call (zlib's output does not depend on how its input is chunked: same bytes). The
    writer's counters (``total``, the file's count) are updated once per batch; per-document length statistics
    are not kept (nothing reads them; the reader keeps its own).
    """

    BATCH = 512

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        """Write every document (in order) and pass it on."""
        batch: list[bytes] = []
        names: tuple[str, str] | None = None
        with self:
            for doc in data:
                if doc.media:  # datatrove's own path for media (base64 in _write)
                    self._flush(batch, names)
                    self.write(doc, rank)
                    yield doc
                    continue
                names = names or (self._get_output_filename(doc, rank), self._get_output_filename(doc, "XXXXX"))
                batch.append(orjson.dumps(self.adapter(doc), option=orjson.OPT_APPEND_NEWLINE, default=_json_default))
                if len(batch) >= self.BATCH:
                    self._flush(batch, names)
                yield doc
            self._flush(batch, names)

    def _flush(self, batch: list[bytes], names: tuple[str, str] | None) -> None:
        if not batch or names is None:
            return
        with self.track_time(unit="batch"):
            self._get_output_file_with_retry(names[0]).write(b"".join(batch))
        self.stat_update(names[1], value=len(batch))
        self.stat_update(StatHints.total, value=len(batch))
        batch.clear()


def _classifier_info(folder: Path) -> dict[str, Any]:
    path = folder / "classifier.json"
    if not path.is_file():
        raise InputDataError(f"classifier artifact {folder} has no classifier.json")
    info = json.loads(path.read_text())
    if info.get("kind") not in SCORER_KINDS:
        raise InputDataError(f"{path}: kind must be one of {list(SCORER_KINDS)}, got {info.get('kind')!r}")
    return info


def _check_models(info: dict[str, Any], folder: Path) -> None:
    """Fail here, not in a worker: fastText files must load, a transformer model that cannot be a hub id must
    be a local folder (transformers' rule, ``filters.model_files.model_location``)."""
    if info["kind"] == "fasttext":
        load_fasttext(folder / info["path"])
    if info["kind"] == "transformer" and model_location(info["model"]) == "missing":
        raise InputDataError(f"transformer model folder {info['model']!r} does not exist: it is "
                             f"{not_local(info['model'])} and cannot be a hub id")
    for child in (*info.get("stages", []), *info.get("classifiers", [])):
        _check_models(child, folder)


def read_tables(folder: Path, columns: list[str]) -> dict[str, list[Any]]:
    """The given columns of every score table in ``folder`` (shard order); absent columns read as None."""
    import pyarrow.parquet as pq

    out: dict[str, list[Any]] = {c: [] for c in columns}
    for path in sorted(folder.glob("*.parquet")):
        table = pq.read_table(path)
        for column in columns:
            values = (
                table.column(column).to_pylist() if column in table.column_names else [None] * table.num_rows
            )
            out[column] += values
    return out


def duplicate_ids_across_files(folder: Path) -> int:
    """Documents whose id an earlier score table (an earlier source file: one rank per file) already holds.

    Counted, not dropped: duplicates are quarantined within a file only (``filters.reader``), so an id repeated
    across files (a shard copied twice, a dump and its re-crawl) is kept and reported in the result."""
    import pyarrow.parquet as pq

    seen: set[Any] = set()
    duplicates = 0
    for path in sorted(folder.glob("*.parquet"), key=lambda p: (len(p.stem), p.stem)):
        ids = set(pq.read_table(path, columns=["id"]).column("id").to_pylist())
        duplicates += len(ids & seen)
        seen |= ids
    return duplicates


def summarize_scores(records: Iterable[dict[str, Any]], score_key: str, threshold: float) -> dict[str, Any]:
    """Count, score histogram and, when docs carry ground truth, the fraction flagged per label/kind.

    ``records`` are ``{score_key: float, "label": str | None, "kind": str | None}`` rows (score-table rows).
    Ground truth is read for reporting only; no decision depends on it.
    """
    scores: list[float] = []
    groups: dict[str, dict[str, Counter[str]]] = {key: defaultdict(Counter) for key in GROUND_TRUTH_KEYS}
    for record in records:
        score = record[score_key]
        scores.append(score)
        for key in GROUND_TRUTH_KEYS:
            value = record.get(key)
            if value is not None:
                groups[key][value]["n"] += 1
                groups[key][value]["flagged"] += score >= threshold
    summary: dict[str, Any] = {
        "scored": len(scores),
        "histogram": score_histogram(scores),
        "threshold": threshold,
    }
    for key, by_value in groups.items():
        if by_value:
            summary[f"flagged_by_{key}"] = {
                value: {"n": c["n"], "flagged": c["flagged"], "fraction": c["flagged"] / c["n"]}
                for value, c in sorted(by_value.items())
            }
    return summary


def summarize_columns(rows: dict[str, list[Any]], score_key: str, threshold: float) -> dict[str, Any]:
    """:func:`summarize_scores` over score-table columns (``read_tables``), without a dict per row: the same
    result, a tenth of the time."""
    scores = rows[score_key]
    summary: dict[str, Any] = {"scored": len(scores), "histogram": score_histogram(scores), "threshold": threshold}
    for key in GROUND_TRUTH_KEYS:
        n: Counter[str] = Counter()
        flagged: Counter[str] = Counter()
        for value, score in zip(rows[key], scores, strict=True):
            if value is not None:
                n[value] += 1
                flagged[value] += score >= threshold
        if n:
            summary[f"flagged_by_{key}"] = {
                v: {"n": n[v], "flagged": flagged[v], "fraction": flagged[v] / n[v]} for v in sorted(n)
            }
    return summary


def _inputs(ctx: StageContext) -> tuple[SourceSpec, dict[str, Any]]:
    """The source spec and the classifier description (with the configured score key), checked."""
    check_keys(ctx.config, CONFIG_KEYS, set(), "score")
    for role in ("source", "classifier"):
        if role not in ctx.inputs:
            raise ConfigError(f"score stage needs a {role!r} input; got roles {sorted(ctx.inputs)}")
    info = _classifier_info(ctx.inputs["classifier"])
    info = info | {"score_key": str(ctx.config.get("score_key") or info["score_key"])}
    _check_models(info, ctx.inputs["classifier"])
    return load_source(ctx.inputs["source"]), info


def run(ctx: StageContext) -> dict[str, Any]:
    """Score every source document; result counts satisfy ``documents_in == scored + quarantined``."""
    spec, info = _inputs(ctx)
    score_key = info["score_key"]
    threshold = float(ctx.config.get("threshold", 0.5))
    batch_size = int(ctx.config.get("batch_size", 512))
    scorer = build_scorer(info, ctx.inputs["classifier"], batch_size=batch_size, flag_at=threshold)
    reader = SafeDocumentReader(
        spec.absolute_paths,
        str(ctx.out / "quarantine"),
        file_format=spec.format,
        display_paths=spec.shown_paths,
        text_key=spec.text_key,
        id_key=spec.id_key,
        max_chars=int(ctx.config.get("max_chars", spec.max_chars)),
    )
    keys = score_keys(info)
    pipeline = [
        reader,
        ControlStringEscaper(),
        scorer,
        ScoreTableWriter(str(ctx.out / SCORE_TABLES), keys),
        ShardWriter(str(ctx.out / "shards")),
    ]
    tasks = len(spec.paths)
    logging_dir = run_datatrove(ctx, pipeline, tasks)
    documents_in = step_stats(logging_dir, SafeDocumentReader.name, tasks)["records_in"]
    rows = read_tables(ctx.out / SCORE_TABLES, [score_key, *GROUND_TRUTH_KEYS])
    summary = summarize_columns(rows, score_key, threshold)
    quarantined = quarantine_counts(ctx.out / "quarantine")
    if documents_in != summary["scored"] + sum(quarantined.values()):
        raise InputDataError(
            f"score counts do not reconcile: {documents_in} in, {summary['scored']} scored, {quarantined}"
        )
    (ctx.out / "score.json").write_text(
        json.dumps({"score_key": score_key, "score_keys": keys}, indent=2) + "\n"
    )
    scorer_stats = step_stats(logging_dir, scorer.name, tasks)
    escaped = step_stats(logging_dir, ControlStringEscaper.name, tasks)
    result = {
        "documents_in": documents_in,
        "quarantined": quarantined,
        "score_key": score_key,
        "score_keys": keys,
        "classifier_kind": info["kind"],
        "duplicate_ids_across_files": duplicate_ids_across_files(ctx.out / SCORE_TABLES),
        "control_strings_escaped": {"documents": int(escaped.get("control_strings_documents", 0)),
                                    "strings": int(escaped.get("control_strings", 0))},
        "scoring_seconds": round(float(scorer_stats.get("seconds", 0.0)), 3),
        **summary,
    }
    if isinstance(scorer, CascadeScorer):
        result["cascade"] = scorer.report(scorer_stats)
    if policies(info):
        result["long_documents"] = policies(info)
    if ctx.config.get("plot", True):
        plot_score_histograms({"all": ctx.out}, score_key, ctx.out / "histogram.png", per_shard=tasks > 1)
    return result
