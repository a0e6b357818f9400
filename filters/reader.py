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
before the cut are kept) and ``unreadable_file`` (not a parquet / corrupt compression), each counted once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import orjson
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.readers.base import BaseReader

from core.documents import DEFAULT_MAX_CHARS, iter_rows, quarantine_record, text_problem
from filters.writers import QuarantineWriter

FORMATS = ("jsonl", "parquet")


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
        """Yield the valid documents of this rank's files; quarantine everything else."""
        if data:
            yield from data
        seen_ids: set[str] = set()
        with self.quarantine:
            for path, shown in zip(
                self.paths[rank::world_size], self.display_paths[rank::world_size], strict=True
            ):
                self.stat_update("input_files")
                for position, outcome in self._records(path, shown):
                    self.stat_update("records_in")
                    if isinstance(outcome, Document):
                        if outcome.id in seen_ids:
                            outcome = quarantine_record(
                                shown, self._pos_key, position, "duplicate_id", _raw(outcome)
                            )
                        else:
                            seen_ids.add(outcome.id)
                            self.stat_update("documents")
                            self.update_doc_stats(outcome)
                            yield outcome
                            continue
                    self.quarantine.write_record(outcome, rank)
                    self.stat_update(f"quarantined_{outcome['reason']}")

    @property
    def _pos_key(self) -> str:
        return "line" if self.file_format == "jsonl" else "row"

    def _records(self, path: str, shown: str) -> Iterator[tuple[int | None, Document | dict[str, Any]]]:
        """(position, Document or quarantine record) per record of one file, read by ``core.documents``."""
        for row in iter_rows(path, self.file_format, text_key=self.text_key, batch_size=self.batch_size):
            position = 0 if row.position is None else row.position
            if row.data is None:
                yield position, quarantine_record(shown, self._pos_key, row.position, str(row.reason), row.raw)
                continue
            original = dict(row.data)  # _to_document may fill in the id
            outcome = self._to_document(row.data, shown, position)
            if isinstance(outcome, str):
                raw = row.raw if self.file_format == "jsonl" else orjson.dumps(original, default=str)
                outcome = quarantine_record(shown, self._pos_key, row.position, outcome, raw)
            yield position, outcome

    def _to_document(self, data: dict[str, Any], shown: str, position: int) -> Document | str:
        """Validate the text and build the Document (datatrove's adapter: other keys go to metadata).

        Returns the quarantine reason instead when the record has no usable text.
        """
        problem = text_problem(data, self.text_key, self.max_chars)
        if problem is not None:
            return problem
        if data.get(self.id_key) is None:
            data[self.id_key] = f"{shown}:{position}"
        data[self.id_key] = str(data[self.id_key])
        parsed = self.adapter(data, shown, position)
        return Document(text=parsed["text"], id=parsed["id"], metadata=parsed["metadata"])


def _raw(document: Document) -> bytes:
    return orjson.dumps(
        {"id": document.id, "text": document.text, "metadata": document.metadata}, default=str
    )
