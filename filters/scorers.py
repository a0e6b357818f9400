"""Scorer steps: datatrove ``PipelineStep``s that write ``doc.metadata[score_key]`` and never drop a document.

Every scorer subclasses ``BatchScorer`` and implements ``score_batch(docs) -> list[float]`` (it may also
write extra metadata, e.g. the blocklist's matched terms). ``BatchScorer.run`` batches documents, times each
batch and counts ``scored`` / ``tokens`` (whitespace words), so any scorer can sit in anyone's datatrove
pipeline, and the cascade can call ``score_batch`` on the documents it escalates. Constructors are cheap
and picklable: models load on first use.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.batching import batched

from core.errors import ConfigError, InputDataError
from filters.datatrove_stage import add_count
from filters.fasttext_model import fasttext_line, load_fasttext


def word_count(text: str) -> int:
    """Whitespace-separated words: the cheap token count the scorers report."""
    return len(text.split())


class BatchScorer(PipelineStep):
    """Base scorer: batches documents through ``score_batch`` and stores each score under ``score_key``."""

    type = "🔢 - SCORER"

    def __init__(self, score_key: str, batch_size: int = 512) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.score_key = score_key
        self.batch_size = batch_size
        self._model: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}

    def score_batch(self, docs: list[Document]) -> list[float]:
        """Scores in [0, 1], one per document, in order."""
        raise NotImplementedError

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        """Score documents in batches of ``batch_size`` and pass every one on."""
        for batch in batched(data, self.batch_size):
            start = time.perf_counter()
            with self.track_time("batch"):
                scores = self.score_batch(batch)
            self.stat_update("seconds", value=time.perf_counter() - start)
            key = self.score_key
            for doc, score in zip(batch, scores, strict=True):
                doc.metadata[key] = score
            add_count(self, "scored", len(batch))
            yield from batch


class FastTextScorer(BatchScorer):
    """P(``positive_label``) from a supervised fastText model of any label set (batched ``predict``).

    fastText sees the text on one line (newlines become spaces); the document text itself is untouched.
    With ``all_labels_key`` set, every label's probability is also stored as a dict under that key.
    """

    name = "🎯 fastText scorer"

    def __init__(
        self,
        model_path: str,
        score_key: str,
        positive_label: str,
        batch_size: int = 512,
        all_labels_key: str | None = None,
    ) -> None:
        super().__init__(score_key, batch_size)
        self.model_path = model_path
        self.positive_label = positive_label
        self.all_labels_key = all_labels_key

    @property
    def model(self) -> Any:
        """The fastText model, loaded on first use; the positive label must be one of its labels."""
        if self._model is None:

            model = load_fasttext(Path(self.model_path))
            labels = [label.removeprefix("__label__") for label in model.get_labels()]
            if self.positive_label not in labels:
                raise ConfigError(
                    f"positive_label {self.positive_label!r} is not a label of {self.model_path}: {labels}"
                )
            self._model = model
        return self._model

    def score_batch(self, docs: list[Document]) -> list[float]:
        """One batched ``predict(k=-1)``; the score is the positive label's probability clipped to [0, 1]."""
        if not docs:
            return []

        labels, probs = self.model.predict([fasttext_line(doc.text) for doc in docs], k=-1)
        target = f"__label__{self.positive_label}"
        if self.all_labels_key:
            for doc, doc_labels, doc_probs in zip(docs, labels, probs, strict=True):
                doc.metadata[self.all_labels_key] = {
                    lab.removeprefix("__label__"): _unit(p)
                    for lab, p in sorted(zip(doc_labels, doc_probs, strict=True))
                }
        return [
            _unit(doc_probs[doc_labels.index(target)]) if target in doc_labels else 0.0
            for doc_labels, doc_probs in zip(labels, probs, strict=True)
        ]


def _unit(value: Any) -> float:
    """A probability as a float clipped to [0, 1] (fastText can return 1.00001)."""
    return min(1.0, max(0.0, float(value)))


def read_terms(path: str) -> list[str]:
    """Terms of a blocklist file: one per line, blank lines and ``#`` comments skipped."""
    if not Path(path).is_file():
        raise InputDataError(f"blocklist.terms_file {path!r} does not exist")
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


class BlocklistScorer(BatchScorer):
    """Counts blocklist hits: literal ``terms`` and regex ``patterns`` (case-folded, word-bounded by default).

    Writes ``<prefix>_hits`` (all occurrences), ``<prefix>_terms`` (the distinct matched strings, case-folded
    unless ``case_sensitive``, sorted) and the score ``min(1, hits / min_hits)``: a threshold of 1.0 means
    "at least ``min_hits`` hits" (Deep Ignorance escalates at 2). Longer terms win over their prefixes.
    """

    name = "🚫 Blocklist scorer"

    def __init__(
        self,
        score_key: str,
        terms: list[str],
        patterns: list[str] | None = None,
        *,
        case_sensitive: bool = False,
        word_boundaries: bool = True,
        min_hits: int = 1,
        batch_size: int = 512,
    ) -> None:
        super().__init__(score_key, batch_size)
        if min_hits < 1:
            raise ValueError(f"min_hits must be >= 1, got {min_hits}")
        self.terms = [t for t in terms if t.strip()]
        self.patterns = list(patterns or [])
        if not self.terms and not self.patterns:
            raise ValueError("a blocklist needs at least one term or pattern")
        self.case_sensitive = case_sensitive
        self.word_boundaries = word_boundaries
        self.min_hits = min_hits
        self.prefix = score_key.removesuffix("_score")
        self._regex().pattern  # noqa: B018 - fail here on a bad pattern, not in a worker

    def _fold(self, text: str) -> str:
        return text if self.case_sensitive else text.casefold()

    def _regex(self) -> re.Pattern[str]:
        """One alternation: terms (longest first, optionally word-bounded), then the user's patterns."""
        terms = sorted({self._fold(t.strip()) for t in self.terms}, key=lambda t: (-len(t), t))
        parts = [re.escape(t) for t in terms]
        if parts and self.word_boundaries:
            parts = [rf"(?<!\w)(?:{'|'.join(parts)})(?!\w)"]
        for pattern in self.patterns:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ConfigError(f"blocklist.patterns: {pattern!r} is not a valid regex: {err}") from err
            parts.append(f"(?:{pattern})")
        flags = 0 if self.case_sensitive else re.IGNORECASE
        return re.compile("|".join(parts), flags)

    @property
    def model(self) -> re.Pattern[str]:
        """The compiled matcher (built on first use, so the step pickles small)."""
        if self._model is None:
            self._model = self._regex()
        return self._model

    def matches(self, text: str) -> list[str]:
        """Every hit in ``text``, as the (case-folded) matched string, in order."""
        return [self._fold(m.group(0)) for m in self.model.finditer(self._fold(text))]

    def score_batch(self, docs: list[Document]) -> list[float]:
        """Record hits and matched terms per document; score = min(1, hits / min_hits)."""
        scores = []
        for doc in docs:
            hits = self.matches(doc.text)
            doc.metadata[f"{self.prefix}_hits"] = len(hits)
            doc.metadata[f"{self.prefix}_terms"] = sorted(set(hits))
            scores.append(min(1.0, len(hits) / self.min_hits))
        return scores
