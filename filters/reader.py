"""A datatrove reader that never crashes on a bad record and never drops one silently.

Records are read and judged by ``core.documents`` (the one reader of source documents: compression recognised
by content, parquet by row group; the same reasons in every stage). ``SafeDocumentReader`` reads an explicit
list of jsonl (plain, gzip, zstd) or parquet files, one shard of files per rank (``paths[rank::world_size]``).
Every record that cannot become a usable document is written to ``<quarantine_folder>/${rank}.jsonl.gz`` as
``{"source_file", "line"|"row", "reason", "raw"}`` and counted in the step's stats as ``quarantined_<reason>``;
``records_in`` counts every record seen, so ``records_in == documents + sum(quarantined_*)`` per rank.

Quarantine reasons: ``blank_line``, ``invalid_utf8``, ``malformed_json``, ``not_an_object``, ``missing_text``,
``non_string_text``, ``empty_text`` (only whitespace), ``too_long`` (> ``max_chars``), ``duplicate_id``
(an id already seen *within this rank's files*: ids are not compared across ranks), and per file
``missing_text_column`` (parquet schema), ``truncated_file`` (compressed stream ends early: the records
before the cut are kept) and ``unreadable_file`` (not a parquet / corrupt compression), each counted once, and
per parquet row group ``unreadable_row_group`` (the other row groups are read). ``display_paths`` are what
ids of documents without one and quarantine records name (the score stage gives paths relative to the
source's root, ``SourceSpec.shown_paths``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import orjson
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers.base import BaseReader

from core.documents import (
    DEFAULT_MAX_CHARS,
    Row,
    iter_parquet_batches,
    iter_rows,
    quarantine_record,
    text_problem,
    text_value_problem,
)
from core.names import escape_control_strings
from filters.datatrove_stage import add_count, add_values
from filters.writers import QuarantineWriter

FORMATS = ("jsonl", "parquet")
STATS_EVERY = 8192
"""Documents between two additions of the reader's counters and lengths to its stats."""

class SafeDocumentReader(BaseReader):
    """Reads jsonl/parquet into Documents, quarantining bad records with a reason (see module docstring).

    ``paths`` are opened as given; ``display_paths`` (same order) are what ids and quarantine records name,
    e.g. the path relative to an artifact folder, so ids never contain a temporary work folder. A record
    without an id gets ``<display path>:<line or row>``. No file path is added to metadata.
    """

    name = "🛡 Safe reader"

    def __init__(
        self,
        paths: list[str],
        quarantine_folder: str,
        *,
        file_format: Literal["jsonl", "parquet"] = "jsonl",
        display_paths: list[str] | None = None,
        text_key: str = "text",
        id_key: str = "id",
        max_chars: int = DEFAULT_MAX_CHARS,
        batch_size: int = 1000,
    ) -> None:
        super().__init__(text_key=text_key, id_key=id_key)
        if file_format not in FORMATS:
            raise ValueError(f"file_format must be one of {FORMATS}, got {file_format!r}")
        if display_paths is not None and len(display_paths) != len(paths):
            raise ValueError(f"display_paths has {len(display_paths)} entries but paths has {len(paths)}")
        if max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {max_chars}")
        self.paths = list(paths)
        self.display_paths = list(display_paths) if display_paths is not None else list(paths)
        self.file_format = file_format
        self.max_chars = max_chars
        self.batch_size = batch_size
        self.quarantine = QuarantineWriter(quarantine_folder)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        """Yield the valid documents of this rank's files; quarantine everything else.

        Counters and document lengths (``doc_len``) are added to the stats once per ``STATS_EVERY`` documents,
        not per document (``stat_update`` per document was ~15% of the score stage's time); datatrove's
        ``doc_len_tokens`` (from a ``token_count`` metadata field) is not kept."""
        if data:
            yield from data
        seen_ids: set[str] = set()
        counts: Counter[str] = Counter()
        lengths: list[int] = []
        with self.quarantine:
            try:
                for path, shown in zip(
                    self.paths[rank::world_size], self.display_paths[rank::world_size], strict=True
                ):
                    counts["input_files"] += 1
                    for position, outcome in self._records(path, shown):
                        if isinstance(outcome, Document):
                            if outcome.id not in seen_ids:
                                seen_ids.add(outcome.id)
                                lengths.append(len(outcome.text))
                                if len(lengths) >= STATS_EVERY:
                                    self._add_stats(counts, lengths)
                                yield outcome
                                continue
                            outcome = quarantine_record(shown, self._pos_key, position, "duplicate_id", _raw(outcome))
                        self.quarantine.write_record(outcome, rank)
                        counts[f"quarantined_{outcome['reason']}"] += 1
            finally:
                self._add_stats(counts, lengths)

    def _add_stats(self, counts: Counter[str], lengths: list[int]) -> None:
        """Move the pending counts into the step's stats: ``records_in = documents + quarantined_*``."""
        counts["documents"] += len(lengths)
        counts["records_in"] += sum(v for k, v in counts.items() if k == "documents" or k.startswith("quarantined_"))
        for label, value in counts.items():
            add_count(self, label, value)
        add_values(self, "doc_len", lengths)
        counts.clear()
        lengths.clear()

    @property
    def _pos_key(self) -> str:
        return "line" if self.file_format == "jsonl" else "row"

    def _records(self, path: str, shown: str) -> Iterator[tuple[int | None, Document | dict[str, Any]]]:
        """(position, Document or quarantine record) per record of one file, read by ``core.documents``."""
        if self.file_format == "parquet":
            yield from self._parquet_records(path, shown)
            return
        yield from self._row_records(iter_rows(path, self.file_format, text_key=self.text_key), shown)

    def _row_records(self, rows: Iterable[Row], shown: str) -> Iterator[tuple[int | None, Document | dict[str, Any]]]:
        """(position, Document or quarantine record) per record dict (``core.documents.Row``)."""
        for row in rows:
            position = 0 if row.position is None else row.position
            if row.data is None:
                yield position, quarantine_record(shown, self._pos_key, row.position, str(row.reason), row.raw)
                continue
            problem = text_problem(row.data, self.text_key, self.max_chars)
            if problem is not None:
                raw = row.raw if self.file_format == "jsonl" else orjson.dumps(row.data, default=str)
                yield position, quarantine_record(shown, self._pos_key, row.position, problem, raw)
                continue
            yield position, self._to_document(row.data, shown, position)

    def _parquet_records(self, path: str, shown: str) -> Iterator[tuple[int | None, Document | dict[str, Any]]]:
        """Like ``_row_records`` over the file's rows, built column by column: no dict per row but the
        metadata (the remaining columns, in schema order, as the adapter leaves them). Batches with a
        ``metadata`` or ``media`` column go through the adapter row by row."""
        for batch in iter_parquet_batches(path, self.text_key, self.batch_size):
            if isinstance(batch, Row):
                yield from self._row_records([batch], shown)
                continue
            names = batch.names
            if "metadata" in names or "media" in names or self.text_key == self.id_key:
                rows = (Row(batch.start + i, batch.row(i)) for i in range(len(batch.columns[0])))
                yield from self._row_records(rows, shown)
                continue
            texts = batch.columns[names.index(self.text_key)]
            ids = batch.columns[names.index(self.id_key)] if self.id_key in names else [None] * len(texts)
            rest = [(name, column) for name, column in zip(names, batch.columns, strict=True)
                    if name not in (self.text_key, self.id_key)]
            for offset, text in enumerate(texts):
                position = batch.start + offset
                # = text_value_problem(text) is None, inline: the one check every document passes through
                if type(text) is str and text and len(text) <= self.max_chars and not text.isspace():
                    doc_id = ids[offset]
                    if type(doc_id) is not str:
                        doc_id = f"{shown}:{position}" if doc_id is None else str(doc_id)
                    metadata = {name: column[offset] for name, column in rest} if rest else {}
                    yield position, Document(text=text, id=doc_id, metadata=metadata)
                    continue
                raw = orjson.dumps(batch.row(offset), default=str)
                problem = str(text_value_problem(text, self.max_chars))
                yield position, quarantine_record(shown, "row", position, problem, raw)

    def _to_document(self, data: dict[str, Any], shown: str, position: int) -> Document:
        """The Document of a record with a usable text (datatrove's adapter: other keys go to metadata).

        Records without ``metadata`` or ``media`` fields skip the adapter: the remaining keys, in order, are
        the metadata it would build (``{} | data``)."""
        if data.get(self.id_key) is None:
            data[self.id_key] = f"{shown}:{position}"
        data[self.id_key] = str(data[self.id_key])
        if "metadata" in data or "media" in data or self.text_key == self.id_key:
            parsed = self.adapter(data, shown, position)
            return Document(text=parsed["text"], id=parsed["id"], metadata=parsed["metadata"])
        text = data.pop(self.text_key)
        return Document(text=text, id=data.pop(self.id_key), metadata=data)


def _raw(document: Document) -> bytes:
    return orjson.dumps(
        {"id": document.id, "text": document.text, "metadata": document.metadata}, default=str
    )


class ControlStringEscaper(PipelineStep):
    """Neutralises control strings in source text (``core.names.escape_control_strings``), counting the
    documents and strings it changed (stats ``control_strings_documents``, ``control_strings``)."""

    name = "🔒 Control strings"
    type = "✂️ - FORMAT"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        """Yield every document, its control strings escaped."""
        documents = strings = 0
        try:
            for doc in data:
                doc.text, n = escape_control_strings(doc.text)
                if n:
                    documents += 1
                    strings += n
                yield doc
        finally:
            add_count(self, "control_strings_documents", documents)
            add_count(self, "control_strings", strings)
