"""One reader of source documents and one reader of ``source.json``, for every stage that reads documents.

Formats: jsonl (plain, gzip or zstd: compression is recognised by the first bytes of the file, never by its
name), parquet (streamed by row group), and Hugging Face datasets (a ``save_to_disk`` folder, or a
``load_dataset`` folder / id). Every record that cannot become a document gets one of ``REASONS`` and a
quarantine record ``{"source_file", "line"|"row", "reason", "raw"}``; nothing is dropped silently:
``records_in == documents + sum(quarantined)``.

Reasons, per record: ``blank_line``, ``invalid_utf8``, ``malformed_json``, ``not_an_object``, ``missing_text``
(no text field, or null), ``non_string_text``, ``empty_text`` (present but only whitespace), ``too_long``
(> ``max_chars``, default ``DEFAULT_MAX_CHARS``; ``source.max_chars``), ``duplicate_id`` (an id already seen in
the same file); per file, counted once: ``missing_text_column`` (parquet / dataset schema), ``truncated_file``
(the gzip or zstd stream ends early, e.g. a copy cut short: the records before the cut are kept) and
``unreadable_file`` (corrupt compression, not a parquet file); per parquet row group, counted once:
``unreadable_row_group`` (its pages cannot be decoded: the rows of the other row groups are kept; ``raw``
names the row group, its rows and the error).

A UTF-8 byte order mark at the start of a jsonl file is skipped; a parquet text column of type binary (as
some Spark / Hive writers store strings) is decoded as UTF-8, and a value that is not UTF-8 is
``invalid_utf8``. A record without an id gets ``<shown path>:<position>``, where the shown path is relative
to the source's root folder (``SourceSpec.shown_paths``), so ids do not change when a corpus moves.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from core.errors import InputDataError

SOURCE_JSON = "source.json"
SOURCE_FORMATS = ("jsonl", "parquet")
DEFAULT_MAX_CHARS = 1_000_000
RAW_MAX_CHARS = 10_000
"""Quarantine records keep at most this many characters of the raw input."""
GZIP_MAGIC, ZSTD_MAGIC, PARQUET_MAGIC = b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"PAR1"
REASONS = (
    "blank_line", "invalid_utf8", "malformed_json", "not_an_object", "missing_text", "non_string_text",
    "empty_text", "too_long", "duplicate_id", "missing_text_column", "truncated_file", "unreadable_file",
    "unreadable_row_group",
)
UTF8_BOM = b"\xef\xbb\xbf"


def sniff(path: str | Path) -> str:
    """What a file holds, from its first bytes: ``gzip``, ``zstd``, ``parquet`` or ``plain`` (text)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head == ZSTD_MAGIC:
        return "zstd"
    return "parquet" if head == PARQUET_MAGIC else "plain"


def file_format(path: str | Path) -> str:
    """``parquet`` or ``jsonl`` (plain or compressed), by content: for files whose format is not declared."""
    return "parquet" if sniff(path) == "parquet" else "jsonl"


def is_saved_dataset(folder: str | Path) -> bool:
    """Whether ``folder`` was written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    folder = Path(folder)
    return (folder / "dataset_dict.json").is_file() or (
        (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file()
    )


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a file for binary line iteration, decompressing gzip / zstd recognised by content."""
    kind = sniff(path)
    if kind == "gzip":
        import gzip

        return gzip.open(path, "rb")  # type: ignore[return-value]
    raw = open(path, "rb")  # noqa: SIM115 - the caller closes (through the wrapper for zstd)
    if kind == "zstd":
        return io.BufferedReader(_ZstdStream(raw))
    return raw


class _ZstdStream(io.RawIOBase):
    """The decompressed bytes of a zstd file (one or more frames), raising EOFError when the file ends
    inside a frame: ``zstandard``'s ``stream_reader`` reports a truncated file as a clean end of stream, so
    a file cut short would lose its last records without a trace (gzip raises EOFError there)."""

    CHUNK = 1 << 17

    def __init__(self, raw: IO[bytes]) -> None:
        import zstandard

        self._raw = raw
        self._new = zstandard.ZstdDecompressor().decompressobj
        self._decoder = self._new()
        self._pending = b""
        self._started = False  # bytes of the current frame were fed to the decoder

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = self._raw.read(self.CHUNK)
            if not chunk:
                if self._started and not self._decoder.eof:
                    raise EOFError("zstd stream ends before the end of its frame (the file is truncated)")
                return 0
            self._feed(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def _feed(self, chunk: bytes) -> None:
        out = []
        while chunk:
            if self._decoder.eof:
                self._decoder, self._started = self._new(), False
            self._started = True
            out.append(self._decoder.decompress(chunk))
            chunk = self._decoder.unused_data if self._decoder.eof else b""
        self._pending += b"".join(out)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def quarantine_record(
    source_file: str | None, position_key: str, position: int | None, reason: str, raw: str | bytes
) -> dict[str, Any]:
    """The on-disk quarantine entry: where the record came from, why it was set aside, its raw text."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    return {"source_file": source_file, position_key: position, "reason": reason, "raw": raw[:RAW_MAX_CHARS]}


def parse_line(raw: bytes) -> dict[str, Any] | str:
    """The JSON object of a jsonl line, or the reason it is not one."""
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


def text_problem(data: dict[str, Any], text_key: str, max_chars: int = DEFAULT_MAX_CHARS) -> str | None:
    """Why a record's text is unusable (``missing_text``, ``non_string_text``, ``empty_text``, ``too_long``)."""
    return text_value_problem(data.get(text_key), max_chars)


def text_value_problem(text: Any, max_chars: int = DEFAULT_MAX_CHARS) -> str | None:
    """:func:`text_problem` of a text value itself (None: the record has no text)."""
    if text is None:
        return "missing_text"
    if isinstance(text, bytes):  # a parquet binary text value that is not UTF-8 (_decode_texts)
        return "invalid_utf8"
    if not isinstance(text, str):
        return "non_string_text"
    if not text or text.isspace():  # = not text.strip(), without copying the text
        return "empty_text"
    return "too_long" if len(text) > max_chars else None


@dataclass
class Row:
    """One record of a file: its parsed object, or the reason it has none (then ``raw`` is kept)."""

    position: int | None
    data: dict[str, Any] | None
    reason: str | None = None
    raw: bytes | str = b""


def iter_rows(path: str | Path, fmt: str, *, text_key: str | None = "text", batch_size: int = 1000
              ) -> Iterator[Row]:
    """Every record of one file (``fmt`` ``jsonl`` or ``parquet``); file-level problems are one Row each.

    jsonl positions are line numbers from 1; parquet positions are row numbers from 0. A parquet file
    without the ``text_key`` column is one ``missing_text_column`` Row (no check when ``text_key`` is None)."""
    if fmt == "parquet":
        yield from _parquet_rows(path, text_key, batch_size)
    elif fmt == "jsonl":
        yield from _jsonl_rows(path)
    else:
        raise ValueError(f"format must be one of {SOURCE_FORMATS}, got {fmt!r}")


def _jsonl_rows(path: str | Path) -> Iterator[Row]:
    line_no = 0
    try:
        with open_binary(path) as handle:
            for line_no, raw in enumerate(handle, start=1):
                if line_no == 1 and raw.startswith(UTF8_BOM):
                    raw = raw[len(UTF8_BOM):]  # noqa: PLW2901 - a leading byte order mark, as utf-8-sig
                outcome = parse_line(raw)
                if isinstance(outcome, str):
                    yield Row(line_no, None, outcome, raw.rstrip(b"\r\n"))
                else:
                    yield Row(line_no, outcome, None, raw.rstrip(b"\r\n"))
    except EOFError as err:
        yield Row(line_no + 1, None, "truncated_file", str(err))
    except Exception as err:  # noqa: BLE001 - BadGzipFile, zlib.error, ZstdError, missing file: one record
        yield Row(line_no + 1, None, "unreadable_file", repr(err))


@dataclass(frozen=True)
class ColumnBatch:
    """One parquet record batch as Python lists, one per column: for readers that build their records column
    by column instead of through a dict per row (``iter_rows`` builds those dicts from it)."""

    start: int
    """Row number (from 0, in the file) of the batch's first row."""
    names: list[str]
    columns: list[list[Any]]

    def row(self, offset: int) -> dict[str, Any]:
        """The record of one row of the batch (``offset`` from 0), as ``iter_rows`` gives it."""
        return {name: column[offset] for name, column in zip(self.names, self.columns, strict=True)}


def iter_parquet_batches(path: str | Path, text_key: str | None, batch_size: int = 1000
                         ) -> Iterator[Row | ColumnBatch]:
    """The record batches of one parquet file, or one Row for a file-level problem (``unreadable_file``,
    ``missing_text_column`` when ``text_key`` is not a column; no check when it is None) and one Row per row
    group that cannot be decoded (``unreadable_row_group``, positioned at its first unread row; the other row
    groups are read). A binary text column is decoded as UTF-8 (values that are not UTF-8 stay bytes:
    ``invalid_utf8``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as err:
        yield Row(None, None, "unreadable_file", repr(err))
        return
    with parquet:
        if text_key is not None and text_key not in parquet.schema_arrow.names:
            raw = f"text_key {text_key!r} not in columns {parquet.schema_arrow.names}"
            yield Row(None, None, "missing_text_column", raw)
            return
        start = 0
        for group in range(parquet.num_row_groups):
            group_start, group_rows = start, parquet.metadata.row_group(group).num_rows
            try:
                for batch in parquet.iter_batches(batch_size=batch_size, row_groups=[group]):
                    columns = [column.to_pylist() for column in batch.columns]
                    names = batch.schema.names
                    if text_key in names and _is_binary(batch.schema.field(text_key).type):
                        index = names.index(text_key)
                        columns[index] = _decode_texts(columns[index])
                    yield ColumnBatch(start, names, columns)
                    start += batch.num_rows
            except (OSError, pa.ArrowException) as err:
                unread = group_rows - (start - group_start)
                raw = (f"row group {group} (rows {group_start}-{group_start + group_rows - 1}): {unread} row(s) "
                       f"unread: {err!r}")
                yield Row(start, None, "unreadable_row_group", raw)
                start = group_start + group_rows


def _is_binary(kind: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return bool(pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind)
                or getattr(pa.types, "is_binary_view", lambda _: False)(kind))


def _decode_texts(values: list[Any]) -> list[Any]:
    """Binary text values as str; a value that is not UTF-8 stays bytes (``text_value_problem``: invalid_utf8)."""
    out = []
    for value in values:
        if type(value) is bytes:
            try:
                value = value.decode("utf-8")  # noqa: PLW2901
            except UnicodeDecodeError:
                pass
        out.append(value)
    return out


def _parquet_rows(path: str | Path, text_key: str | None, batch_size: int) -> Iterator[Row]:
    for batch in iter_parquet_batches(path, text_key, batch_size):
        if isinstance(batch, Row):
            yield batch
            continue
        names = batch.names  # = pyarrow's batch.to_pylist(), built with dict(zip(...)): a third of its time
        for offset, values in enumerate(zip(*batch.columns, strict=True)):
            yield Row(batch.start + offset, dict(zip(names, values, strict=True)))


def iter_dataset_rows(hf_path: str, name: str | None = None, split: str = "train", revision: str | None = None
                      ) -> Any:
    """A Hugging Face dataset split: ``load_from_disk`` for a ``save_to_disk`` folder, else ``load_dataset``.

    Raises InputDataError naming ``hf_path`` when it cannot be loaded (offline and not cached, no such split)."""
    import datasets

    try:
        if Path(hf_path).expanduser().is_dir() and is_saved_dataset(Path(hf_path).expanduser()):
            loaded = datasets.load_from_disk(str(Path(hf_path).expanduser()))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise InputDataError(f"saved dataset {hf_path!r} has no split {split!r}; splits: "
                                         f"{sorted(loaded)}")
                loaded = loaded[split]
            return loaded
        return datasets.load_dataset(hf_path, name, split=split, revision=revision)
    except InputDataError:
        raise
    except Exception as err:  # noqa: BLE001 - datasets raises many types; name the dataset and re-raise ours
        raise InputDataError(f"cannot load HF dataset hf_path={hf_path!r} (split {split!r}): {err}") from err


@dataclass
class DocumentReader:
    """Documents ``(id, text, record)`` of files in one format, with the quarantine policy of the module.

    Ids are the record's ``id_key`` as a string, or ``<shown path>:<position>``; duplicates are detected per
    file (as the score stage, one datatrove rank per file, does). ``counts`` has ``records_in``,
    ``documents`` and ``quarantined_<reason>``; ``quarantined`` the records (up to ``keep_quarantined``)."""

    paths: list[str]
    fmt: str
    text_key: str = "text"
    id_key: str = "id"
    shown: list[str] | None = None
    max_chars: int = DEFAULT_MAX_CHARS
    keep_quarantined: int = 100_000
    counts: Counter[str] = field(default_factory=Counter)
    quarantined: list[dict[str, Any]] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        pos_key = "row" if self.fmt == "parquet" else "line"
        for path, shown in zip(self.paths, self.shown or self.paths, strict=True):
            seen: set[str] = set()
            for row in iter_rows(path, self.fmt, text_key=self.text_key):
                self.counts["records_in"] += 1
                reason, raw = row.reason, row.raw
                if row.data is not None:
                    reason = text_problem(row.data, self.text_key, self.max_chars)
                    raw = row.raw or orjson.dumps(row.data, default=str)
                    doc_id = row.data.get(self.id_key)
                    doc_id = f"{shown}:{row.position}" if doc_id is None else str(doc_id)
                    if reason is None and doc_id in seen:
                        reason = "duplicate_id"
                    if reason is None:
                        seen.add(doc_id)
                        self.counts["documents"] += 1
                        yield doc_id, row.data[self.text_key], row.data
                        continue
                self.counts[f"quarantined_{reason}"] += 1
                if len(self.quarantined) < self.keep_quarantined:
                    self.quarantined.append(quarantine_record(shown, pos_key, row.position, str(reason), raw))

    @property
    def quarantine_counts(self) -> dict[str, int]:
        """Quarantined records per reason."""
        prefix = "quarantined_"
        return {k[len(prefix):]: v for k, v in sorted(self.counts.items()) if k.startswith(prefix)}


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``source.json``: the files to read and how to read them."""

    folder: Path
    format: str
    paths: list[str]
    """As written in source.json (relative to ``folder`` or absolute): used in ids and quarantine records."""
    text_key: str = "text"
    id_key: str = "id"
    heldout: str | None = None
    labelled: dict[str, str] = field(default_factory=dict)
    root: str | None = None
    """The folder ids and quarantine records name files relative to (``source.json``'s ``root``; for a
    source.json without one, the common folder of its absolute paths)."""
    max_chars: int = DEFAULT_MAX_CHARS

    def resolve(self, path: str) -> Path:
        """An absolute path for a path listed in source.json."""
        return Path(path) if Path(path).is_absolute() else self.folder / path

    @property
    def absolute_paths(self) -> list[str]:
        return [str(self.resolve(p)) for p in self.paths]

    @property
    def shown_paths(self) -> list[str]:
        """The paths ids (``<shown path>:<position>``) and quarantine records name: relative to ``root``, so
        the same bytes give the same ids wherever the corpus lies; paths listed relative stay as listed."""
        root = self.root
        absolute = [p for p in self.paths if Path(p).is_absolute()]
        if root is None and absolute:
            root = os.path.commonpath([str(Path(p).parent) for p in absolute])
        return [_relative(p, root) for p in self.paths]

    @property
    def heldout_path(self) -> Path | None:
        """The held-out documents file (absolute), or None when the source has none."""
        return self.resolve(self.heldout) if self.heldout else None

    def reader(self, **kwargs: Any) -> DocumentReader:
        """A DocumentReader over the source's documents (ids and quarantine records name ``shown_paths``)."""
        kwargs.setdefault("max_chars", self.max_chars)
        return DocumentReader(self.absolute_paths, self.format, self.text_key, self.id_key, self.shown_paths,
                              **kwargs)


def _relative(path: str, root: str | None) -> str:
    if root is None or not Path(path).is_absolute():
        return path
    relative = os.path.relpath(path, root)
    return path if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative


def load_source(folder: str | Path) -> SourceSpec:
    """Read ``<folder>/source.json``; raise InputDataError naming the file when it is missing or unusable."""
    path = Path(folder) / SOURCE_JSON
    if not path.is_file():
        raise InputDataError(f"source artifact {folder} has no {SOURCE_JSON}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputDataError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or data.get("format") not in SOURCE_FORMATS:
        got = data.get("format") if isinstance(data, dict) else data
        raise InputDataError(f"{path}: format must be one of {list(SOURCE_FORMATS)}, got {got!r}")
    if not isinstance(data.get("paths"), list):
        raise InputDataError(f"{path}: paths must be a list, got {data.get('paths')!r}")
    return SourceSpec(
        folder=Path(folder).resolve(),
        format=data["format"],
        paths=[str(p) for p in data["paths"]],
        text_key=data.get("text_key", "text"),
        id_key=data.get("id_key", "id"),
        heldout=data.get("heldout"),
        labelled=dict(data.get("labelled") or {}),
        root=data.get("root"),
        max_chars=int(data.get("max_chars", DEFAULT_MAX_CHARS)),
    )
