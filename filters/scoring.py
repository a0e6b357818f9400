"""The ``score`` stage: attach ``metadata["<classifier>_score"]`` to every source document, once.

Pipeline per source file (one datatrove rank each): ``SafeDocumentReader`` (bad records to
``quarantine/``) -> ``FastTextScorer`` -> ``ReproducibleJsonlWriter`` (``shards/${rank}.jsonl.gz``). Variants
read these scores; they never rescore. ``score.json`` records the score key for them.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.batching import batched

from filters.classifier import load_fasttext, positive_probabilities
from filters.metrics import score_histogram
from filters.pipeline import (
    check_keys,
    ground_truth,
    iter_jsonl,
    jsonl_files,
    load_source,
    quarantine_counts,
    run_datatrove,
    step_stats,
)
from filters.reader import DEFAULT_MAX_CHARS, SafeDocumentReader
from filters.writers import ReproducibleJsonlWriter
from propensity.errors import ConfigError, InputDataError
from propensity.stage import StageContext

CONFIG_KEYS = {"name", "score_key", "batch_size", "max_chars", "threshold"}
GROUND_TRUTH_KEYS = ("label", "kind")


class FastTextScorer(PipelineStep):
    """Writes ``doc.metadata[score_key] = P(positive_label)`` from a fastText model (batched, lazy load).

    fastText sees the text on one line (newlines become spaces); the document text itself is untouched.
    """

    name = "🎯 fastText scorer"
    type = "🔢 - SCORER"

    def __init__(self, model_path: str, score_key: str, positive_label: str, batch_size: int = 512) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_path = model_path
        self.score_key = score_key
        self.positive_label = positive_label
        self.batch_size = batch_size
        self._model: Any = None

    @property
    def model(self) -> Any:
        """The fastText model, loaded on first use (so the step pickles cheaply)."""
        if self._model is None:
            self._model = load_fasttext(Path(self.model_path))
        return self._model

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        """Score documents in batches of ``batch_size`` and pass them on."""
        for batch in batched(data, self.batch_size):
            with self.track_time("batch"):
                scores = positive_probabilities(self.model, [doc.text for doc in batch], self.positive_label)
            for doc, score in zip(batch, scores, strict=True):
                doc.metadata[self.score_key] = score
                self.stat_update("scored")
                yield doc


def _classifier_info(folder: Path) -> dict[str, Any]:
    path = folder / "classifier.json"
    if not path.is_file():
        raise InputDataError(f"classifier artifact {folder} has no classifier.json")
    info = json.loads(path.read_text())
    if info.get("kind") != "fasttext":
        raise InputDataError(f"{path}: kind must be 'fasttext', got {info.get('kind')!r}")
    return info


def summarize_scores(records: Iterable[dict[str, Any]], score_key: str, threshold: float) -> dict[str, Any]:
    """Count, score histogram and, when docs carry ground truth, the fraction flagged per label/kind.

    Ground truth is read for reporting only; no decision depends on it.
    """
    scores: list[float] = []
    groups: dict[str, dict[str, Counter[str]]] = {key: defaultdict(Counter) for key in GROUND_TRUTH_KEYS}
    for record in records:
        score = record["metadata"][score_key]
        scores.append(score)
        for key in GROUND_TRUTH_KEYS:
            value = ground_truth(record, key)
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


def run(ctx: StageContext) -> dict[str, Any]:
    """Score every source document; result counts satisfy ``documents_in == scored + quarantined``."""
    check_keys(ctx.config, CONFIG_KEYS, set(), "score")
    for role in ("source", "classifier"):
        if role not in ctx.inputs:
            raise ConfigError(f"score stage needs a {role!r} input; got roles {sorted(ctx.inputs)}")
    spec = load_source(ctx.inputs["source"])
    info = _classifier_info(ctx.inputs["classifier"])
    score_key = str(ctx.config.get("score_key") or info["score_key"])
    model_path = ctx.inputs["classifier"] / info["path"]
    load_fasttext(model_path)  # fail here, clearly, rather than inside a worker
    reader = SafeDocumentReader(
        spec.absolute_paths,
        str(ctx.out / "quarantine"),
        file_format=spec.format,
        display_paths=spec.paths,
        text_key=spec.text_key,
        id_key=spec.id_key,
        max_chars=int(ctx.config.get("max_chars", DEFAULT_MAX_CHARS)),
    )
    scorer = FastTextScorer(
        str(model_path),
        score_key,
        info["positive_label"],
        batch_size=int(ctx.config.get("batch_size", 512)),
    )
    tasks = len(spec.paths)
    logging_dir = run_datatrove(
        ctx, [reader, scorer, ReproducibleJsonlWriter(str(ctx.out / "shards"))], tasks
    )
    documents_in = step_stats(logging_dir, SafeDocumentReader.name, tasks)["records_in"]
    records = ctx.progress(iter_jsonl(jsonl_files(ctx.out / "shards")), desc="summary")
    summary = summarize_scores(records, score_key, float(ctx.config.get("threshold", 0.5)))
    quarantined = quarantine_counts(ctx.out / "quarantine")
    if documents_in != summary["scored"] + sum(quarantined.values()):
        raise InputDataError(
            f"score counts do not reconcile: {documents_in} in, {summary['scored']} scored, {quarantined}"
        )
    (ctx.out / "score.json").write_text(json.dumps({"score_key": score_key}, indent=2) + "\n")
    return {
        "documents_in": documents_in,
        "quarantined": quarantined,
        "score_key": score_key,
        **summary,
    }
