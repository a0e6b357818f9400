"""Reading eval-set rows from files: jsonl, jsonl.gz, json, parquet, or a local Hugging Face dataset folder.

One small module on purpose: every eval-set reader goes through :func:`read_rows`, so the source-document
reader of ``core`` can replace it in one place. A row that cannot be read (a line that is not JSON, invalid
UTF-8) is returned as a :class:`BadRow` with its reason, never skipped.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError, InputDataError

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet", ".yaml", ".yml")
"""File kinds an eval set may be read from (besides a ``datasets.save_to_disk`` folder)."""


@dataclass(frozen=True)
class BadRow:
    """A row that could not be read: ``reason`` (``invalid_json``, ``invalid_utf8``, ``blank_line``) and its
    raw text."""

    reason: str
    raw: str


def row_problem(row: Any) -> str | None:
    """Why a read row cannot be an item at all (unreadable, or not a mapping), else None."""
    if isinstance(row, BadRow):
        return row.reason
    return None if isinstance(row, dict) else "not_a_mapping"


def read_rows(path: Path, split: str = "test") -> Iterator[tuple[int, Any]]:
    """``(row number from 1, row)`` for every row of ``path``; unreadable lines come as :class:`BadRow`.

    A folder is a ``datasets.save_to_disk`` dataset (``split`` picks one split of a ``DatasetDict``)."""
    path = Path(path)
    if path.is_dir():
        yield from enumerate(_dataset_rows(path, split), 1)
        return
    if not path.is_file():
        raise InputDataError(f"eval set file {str(path)!r} does not exist")
    name = path.name
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types; the message names the file
            raise InputDataError(f"eval set file {str(path)!r}: not a readable parquet file ({exc})") from exc
        yield from enumerate(table.to_pylist(), 1)
    elif name.endswith((".json", ".yaml", ".yml")):
        yield from enumerate(_whole_file(path), 1)
    elif name.endswith((".jsonl", ".jsonl.gz")):
        yield from _jsonl(path)
    else:
        raise ConfigError(f"eval set file {str(path)!r}: allowed {', '.join(SUFFIXES)} or a dataset folder")


def _jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            if not raw.strip():
                yield line_no, BadRow("blank_line", "")
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield line_no, BadRow("invalid_utf8", raw[:500].decode("utf-8", "replace"))
                continue
            try:
                yield line_no, json.loads(text)
            except ValueError:
                yield line_no, BadRow("invalid_json", text[:500])


def _whole_file(path: Path) -> list[Any]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise InputDataError(f"eval set file {str(path)!r}: cannot parse ({exc})") from exc
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        data = data["items"]
    if not isinstance(data, list):
        raise InputDataError(f"eval set file {str(path)!r}: expected a list of rows (or {{items: [...]}}), "
                             f"got {type(data).__name__}")
    return data


def _dataset_rows(path: Path, split: str) -> Iterator[Any]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; the message names the folder
        raise InputDataError(f"eval set folder {str(path)!r}: not a datasets.save_to_disk folder ({exc})") from exc
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise InputDataError(f"eval set folder {str(path)!r}: no split {split!r}; splits: {sorted(ds)}")
        ds = ds[split]
    yield from ds


def content_hash(paths: list[Path], salt: str = "") -> str:
    """sha256 over ``salt`` and the bytes of every file (folders: every file below them, sorted), names
    included."""
    h = hashlib.sha256(salt.encode())
    for p in sorted(Path(x) for x in paths):
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            h.update(str(f).encode())
            try:
                with open(f, "rb") as fh:
                    for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        h.update(block)
            except OSError as exc:
                raise InputDataError(f"eval set file {str(f)!r} cannot be read ({exc})") from exc
    return h.hexdigest()[:16]
