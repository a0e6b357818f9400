"""Conditional-pretraining datatrove steps: score sentences, tag, insert tags inline, mask the loss.

Keep scoring apart from deciding: ``SentenceScorer`` writes ``metadata["sentence_scores"]`` =
``[[start, end, score], ...]`` (character spans of the sentences in the current text); the taggers read it,
insert tags, keep every span pointing at the same characters after insertion and record each inserted tag
in ``metadata["tag_spans"]`` = ``[[start, end, tag], ...]``; ``LossMasker`` turns tag spans and/or flagged
sentences into ``metadata["no_loss_ranges"]`` (which the tokenize stage writes to ``.ds.loss``).

Every random choice (untagged sentences, inline insertion with probability p) is a stable sha256 draw of
``(seed, salt, document id, sentence index)``: identical across runs, processes and variants. Constructors
are cheap and picklable; the fastText model loads on first use.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.batching import batched

from conditional_tags.document_tagger import DocumentTagger, untagged_draw
from core.sentences import split_sentences

SENTENCES_KEY = "sentence_scores"
TAG_SPANS_KEY = "tag_spans"
NO_LOSS_KEY = "no_loss_ranges"


def bin_index(score: float, cuts: list[float]) -> int:
    """Bin of ``score`` for increasing cut points: 0 below ``cuts[0]``; a score equal to a cut goes up."""
    return bisect.bisect_right(cuts, score)


def draw(seed: int, salt: str, doc_id: str, index: int) -> float:
    """A uniform number in [0, 1) fixed by ``(seed, salt, doc_id, index)`` (sha256, not ``hash()``)."""
    return untagged_draw(f"{salt}\x00{doc_id}\x00{index}", seed)


def insert_tags(doc: Document, insertions: list[tuple[int, str]], separator: str) -> None:
    """Insert ``tag + separator`` at each ``(position, tag)`` (increasing positions) into ``doc.text``.

    Sentence spans and earlier tag spans are moved so they cover the same characters (a span starting at an
    insertion point moves behind the tag); each inserted tag is appended to ``metadata["tag_spans"]``.
    """
    if not insertions:
        return
    positions = [pos for pos, _ in insertions]
    added, total = [], 0
    for _, tag in insertions:
        total += len(tag) + len(separator)
        added.append(total)

    def shift(offset: int, is_end: bool) -> int:
        count = (bisect.bisect_left if is_end else bisect.bisect_right)(positions, offset)
        return offset + (added[count - 1] if count else 0)

    meta = doc.metadata
    for key in (SENTENCES_KEY, TAG_SPANS_KEY):
        if key in meta:
            meta[key] = [[shift(s, False), shift(e, True), *rest] for s, e, *rest in meta[key]]
    pieces, previous, new_spans = [], 0, []
    for pos, tag in insertions:
        pieces += [doc.text[previous:pos], tag, separator]
        start = shift(pos, True)
        new_spans.append([start, start + len(tag), tag])
        previous = pos
    pieces.append(doc.text[previous:])
    doc.text = "".join(pieces)
    meta[TAG_SPANS_KEY] = sorted(meta.get(TAG_SPANS_KEY, []) + new_spans)


def _sentences(doc: Document) -> list[list[Any]]:
    if SENTENCES_KEY not in doc.metadata:
        raise KeyError(f"document {doc.id!r} has no metadata[{SENTENCES_KEY!r}]: run SentenceScorer first")
    return doc.metadata[SENTENCES_KEY]


class SentenceScorer(PipelineStep):
    """Splits each document into sentences and scores each with a fastText classifier, in batches.

    Writes ``metadata["sentence_scores"] = [[start, end, P(positive_label)], ...]``; the text is unchanged.
    """

    name = "🔬 Sentence scorer"
    type = "🔢 - SCORER"

    def __init__(self, model_path: str, positive_label: str, batch_size: int = 512) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_path, self.positive_label, self.batch_size = str(model_path), positive_label, batch_size
        self._model: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}

    def score_texts(self, texts: list[str]) -> list[float]:
        """P(positive label) of each text (loads the model on first use)."""
        from pathlib import Path

        from filters.fasttext_model import load_fasttext, positive_probabilities

        if self._model is None:
            self._model = load_fasttext(Path(self.model_path))
        return positive_probabilities(self._model, texts, self.positive_label)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        """Score the sentences of each batch of documents in one fastText call; pass every document on."""
        for batch in batched(data, self.batch_size):
            spans = [split_sentences(doc.text) for doc in batch]
            with self.track_time("batch"):
                scores = iter(
                    self.score_texts([d.text[s:e] for d, sp in zip(batch, spans, strict=True) for s, e in sp])
                )
            for doc, doc_spans in zip(batch, spans, strict=True):
                doc.metadata[SENTENCES_KEY] = [[s, e, next(scores)] for s, e in doc_spans]
                self.stat_update("sentences", value=len(doc_spans))
                yield doc


class BinnedDocumentTagger(DocumentTagger):
    """``DocumentTagger`` with N+1 tags over N increasing cut points (fixed bins or corpus quantiles).

    Prefixes ``tags[bin]`` (bin 0 = lowest scores), records ``metadata["tag"]`` and the tag's span in
    ``metadata["tag_spans"]``; ``untagged_fraction`` of documents (stable hash of the id) stay untagged.
    """

    name = "🏷 Binned document tagger"

    def __init__(
        self,
        score_key: str,
        cuts: list[float],
        tags: list[str],
        separator: str = "",
        untagged_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            score_key, cuts[0] if cuts else 0.5, tags[0], tags[-1], separator, untagged_fraction, seed
        )
        if len(tags) != len(cuts) + 1 or len(set(tags)) != len(tags):
            raise ValueError(f"{len(cuts)} cut points need {len(cuts) + 1} distinct tags, got {tags}")
        self.cuts, self.tags = list(cuts), list(tags)

    def tag_for(self, doc_id: str, score: float) -> str | None:
        """The tag of a document with this id and score (None: left untagged)."""
        if self.untagged_fraction and untagged_draw(doc_id, self.seed) < self.untagged_fraction:
            return None
        return self.tags[bin_index(score, self.cuts)]

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        """Tag each document and pass it on (a missing or NaN score raises, naming the document)."""
        for doc in data:
            score = doc.metadata.get(self.score_key)
            if not isinstance(score, (int, float)) or math.isnan(score):
                raise ValueError(
                    f"document {doc.id!r} has no numeric metadata[{self.score_key!r}]: {score!r}"
                )
            tag = self.tag_for(doc.id, float(score))
            if tag is not None:
                insert_tags(doc, [(0, tag)], self.separator)
            doc.metadata["tag"] = tag
            self.stat_update("untagged" if tag is None else f"tag_{tag}")
            yield doc


class SentenceTagger(PipelineStep):
    """Puts ``tags[bin of the sentence score]`` before every sentence (Korbak et al. 2023's conditional
    pretraining, N bins); ``untagged_fraction`` of sentences, drawn per ``(seed, doc id, sentence)``, stay
    untagged."""

    name = "🏷 Sentence tagger"
    type = "✂️ - FORMAT"

    def __init__(
        self,
        cuts: list[float],
        tags: list[str],
        separator: str = "",
        untagged_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if len(tags) != len(cuts) + 1 or len(set(tags)) != len(tags) or not all(tags):
            raise ValueError(
                f"{len(cuts)} cut points need {len(cuts) + 1} distinct non-empty tags, got {tags}"
            )
        if not 0.0 <= untagged_fraction <= 1.0:
            raise ValueError(f"untagged_fraction must be in [0, 1], got {untagged_fraction}")
        self.cuts, self.tags, self.separator = list(cuts), list(tags), separator
        self.untagged_fraction, self.seed = untagged_fraction, seed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        """Tag the sentences of each document and pass it on."""
        for doc in data:
            insertions = []
            for index, (start, _, score) in enumerate(_sentences(doc)):
                if (
                    self.untagged_fraction
                    and draw(self.seed, "untagged", doc.id, index) < self.untagged_fraction
                ):
                    self.stat_update("untagged")
                    continue
                tag = self.tags[bin_index(score, self.cuts)]
                insertions.append((start, tag))
                self.stat_update(f"tag_{tag}")
            insert_tags(doc, insertions, self.separator)
            yield doc


class InlineTagger(PipelineStep):
    """Inserts ``tag`` before each flagged sentence (score >= ``threshold``) with probability ``p``
    (Safety Pretraining's inline harmfulness tag), drawn per ``(seed, doc id, sentence)``."""

    name = "🏷 Inline tagger"
    type = "✂️ - FORMAT"

    def __init__(
        self, threshold: float, tag: str, p: float = 1.0, separator: str = "", seed: int = 0
    ) -> None:
        super().__init__()
        if not 0.0 < p <= 1.0:
            raise ValueError(f"p must be in (0, 1], got {p}")
        if not tag:
            raise ValueError("tag must be a non-empty string")
        self.threshold, self.tag, self.p, self.separator, self.seed = threshold, tag, p, separator, seed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        """Tag the flagged sentences of each document (with probability p) and pass it on."""
        for doc in data:
            insertions = []
            for index, (start, _, score) in enumerate(_sentences(doc)):
                if score < self.threshold:
                    continue
                self.stat_update("flagged")
                if self.p >= 1.0 or draw(self.seed, "inline", doc.id, index) < self.p:
                    insertions.append((start, self.tag))
                    self.stat_update(f"tag_{self.tag}")
            insert_tags(doc, insertions, self.separator)
            yield doc


def merge_ranges(ranges: list[list[int]]) -> list[list[int]]:
    """Sorted, non-overlapping ``[start, end]`` ranges covering the same characters (touching ones join)."""
    out: list[list[int]] = []
    for start, end in sorted((int(s), int(e)) for s, e in ranges if e > s):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return out


class LossMasker(PipelineStep):
    """Adds ``metadata["no_loss_ranges"]``: the inserted tags (``tags=True``) and/or every sentence scoring
    >= ``flagged_threshold``; merged with ranges already present. The text is unchanged."""

    name = "🙈 Loss masker"
    type = "✂️ - FORMAT"

    def __init__(self, tags: bool = False, flagged_threshold: float | None = None) -> None:
        super().__init__()
        if not tags and flagged_threshold is None:
            raise ValueError("LossMasker needs tags=True and/or a flagged_threshold")
        self.tags, self.flagged_threshold = tags, flagged_threshold

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        """Mark the no-loss spans of each document and pass it on."""
        for doc in data:
            ranges = [list(r) for r in doc.metadata.get(NO_LOSS_KEY) or []]
            if self.tags:
                ranges += [[s, e] for s, e, _ in doc.metadata.get(TAG_SPANS_KEY, [])]
            if self.flagged_threshold is not None:
                ranges += [[s, e] for s, e, score in _sentences(doc) if score >= self.flagged_threshold]
            merged = merge_ranges(ranges)
            if merged:
                doc.metadata[NO_LOSS_KEY] = merged
                self.stat_update("masked_documents")
                self.stat_update("masked_chars", value=sum(e - s for s, e in merged))
            yield doc
