"""A datatrove reader that never crashes on a bad record and never drops one silently.

``SafeDocumentReader`` reads an explicit list of jsonl (plain, ``.gz``, ``.zst``) or parquet files, one
shard of files per rank (``paths[rank::world_size]``). Every record that cannot become a usable document
is written to ``<quarantine_folder>/${rank}.jsonl.gz`` as ``{"source_file", "line"|"row", "reason", "raw"}``
and counted in the step's stats as ``quarantined_<reason>``; ``records_in`` counts every record seen, so
``records_in == documents + sum(quarantined_*)`` per rank.

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

from filters.writers import QuarantineWriter, quarantine_record

DEFAULT_MAX_CHARS = 1_000_000
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
                records = self._jsonl_records(path, shown) if self.file_format == "jsonl" else None
                if records is None:
                    records = self._parquet_records(path, shown)
                for position, outcome in records:
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

    def _jsonl_records(self, path: str, shown: str) -> Iterator[tuple[int, Document | dict[str, Any]]]:
        """(line number, Document or quarantine record) for each line; one record for a cut/corrupt file."""
        line_no = 0
        try:
            with _open_binary(path) as handle:
                for line_no, raw in enumerate(handle, start=1):
                    yield line_no, self._parse_line(raw, shown, line_no)
        except EOFError as err:
            yield line_no + 1, quarantine_record(shown, "line", line_no + 1, "truncated_file", str(err))
        except Exception as err:  # noqa: BLE001 - BadGzipFile, zlib.error, ZstdError, missing file: one record
            yield line_no + 1, quarantine_record(shown, "line", line_no + 1, "unreadable_file", repr(err))

    def _parse_line(self, raw: bytes, shown: str, line_no: int) -> Document | dict[str, Any]:
        """One jsonl line to a Document, or to its quarantine record."""
        outcome = _line_problem(raw)
        if isinstance(outcome, dict):
            outcome = self._to_document(outcome, shown, line_no)
        if isinstance(outcome, str):
            return quarantine_record(shown, "line", line_no, outcome, raw.rstrip(b"\r\n"))
        return outcome

    def _parquet_records(self, path: str, shown: str) -> Iterator[tuple[int, Document | dict[str, Any]]]:
        """(row number, Document or quarantine record) per row; one record for an unusable file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as err:
            yield 0, quarantine_record(shown, "row", None, "unreadable_file", repr(err))
            return
        with parquet:
            if self.text_key not in parquet.schema_arrow.names:
                raw = f"text_key {self.text_key!r} not in columns {parquet.schema_arrow.names}"
                yield 0, quarantine_record(shown, "row", None, "missing_text_column", raw)
                return
            row = 0
            for batch in parquet.iter_batches(batch_size=self.batch_size):
                for data in batch.to_pylist():
                    original = dict(data)  # _to_document may fill in the id
                    outcome = self._to_document(data, shown, row)
                    if isinstance(outcome, str):
                        raw = orjson.dumps(original, default=str)
                        outcome = quarantine_record(shown, "row", row, outcome, raw)
                    yield row, outcome
                    row += 1

    def _to_document(self, data: dict[str, Any], shown: str, position: int) -> Document | str:
        """Validate the text and build the Document (datatrove's adapter: other keys go to metadata).

        Returns the quarantine reason instead when the record has no usable text.
        """
        text = data.get(self.text_key)
        if text is None:
            return "missing_text"
        if not isinstance(text, str):
            return "non_string_text"
        if not text.strip():
            return "empty_text"
        if len(text) > self.max_chars:
            return "too_long"
        if data.get(self.id_key) is None:
            data[self.id_key] = f"{shown}:{position}"
        data[self.id_key] = str(data[self.id_key])
        parsed = self.adapter(data, shown, position)
        return Document(text=parsed["text"], id=parsed["id"], metadata=parsed["metadata"])


def _line_problem(raw: bytes) -> dict[str, Any] | str:
    """The parsed JSON object of a jsonl line, or the reason it is not one."""
    stripped = raw.strip()
    if not stripped:
        return "blank_line"
    try:
        stripped.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    try:
        data = orjson.loads(stripped)
    except orjson.JSONDecodeError as err:
        return "invalid_utf8" if "surrogate" in str(err) else "malformed_json"
    return data if isinstance(data, dict) else "not_an_object"


def _raw(document: Document) -> bytes:
    return orjson.dumps(
        {"id": document.id, "text": document.text, "metadata": document.metadata}, default=str
    )


def _open_binary(path: str) -> Any:
    """Open a file for binary line iteration, decompressing ``.gz`` / ``.zst`` by suffix."""
    if path.endswith(".gz"):
        import gzip

        return gzip.open(path, "rb")
    if path.endswith(".zst"):
        import io

        import zstandard

        raw = open(path, "rb")  # noqa: SIM115 - closed by the wrapper
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))
    return open(path, "rb")  # noqa: SIM115 - caller closes
