"""The ``source`` stage for user data: local jsonl/parquet files, or a Hugging Face dataset exported to jsonl.

Config (``ctx.config``):

- ``kind``: ``"files"`` or ``"hf"``.
- files: ``paths`` (list of files or globs, expanded and sorted; relative ones against the working
  directory), ``format`` (``"jsonl"``, plain or gzip/zstd recognised by content, or ``"parquet"``).
- hf: ``hf_path`` (hub name, a ``save_to_disk`` folder, or a ``load_dataset`` folder / loading script),
  ``hf_name``, ``split`` (default ``"train"``), ``revision``, ``docs_per_shard`` (default 50,000); exported to
  ``shards/*.jsonl.gz``.
- both: ``text_key`` (default ``"text"``), ``id_key`` (default ``"id"``; a non-default key that no record of
  the first ``ID_SAMPLE_ROWS`` of the first ``ID_SAMPLE_FILES`` files holds is a ConfigError naming the fields
  seen), ``max_chars`` (documents longer than this many characters are quarantined as ``too_long``; default
  ``core.documents.DEFAULT_MAX_CHARS``, absent from the config when default), ``heldout`` (optional held-out
  jsonl/parquet for the held-out loss), ``labelled`` (optional ``{"train": path, "heldout": path}`` for the
  classifier).

``source.json`` names the files by absolute path plus a ``root`` folder (the common folder of the glob
roots of ``paths``): a document without an id gets the id ``<path relative to root>:<line or row>``, so ids
(and what picks by id, e.g. the random control) do not depend on where the corpus lies. Store keys still do:
the stage config holds the absolute paths, so a moved corpus is a new source (its results are the same).

``fingerprint(config)`` hashes the contents of every listed file, so the pipeline graph can fold it into
the stage hash: editing a file's bytes changes every downstream artifact's hash.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import orjson

from core.documents import DEFAULT_MAX_CHARS, SOURCE_JSON, file_format, iter_dataset_rows, iter_rows
from core.errors import ConfigError, InputDataError
from core.stage import StageContext
from filters.datatrove_stage import check_keys
from filters.writers import _gzip_mtime0

KINDS = ("files", "hf")
FILES_KEYS = {"paths", "format"}
HF_KEYS = {"hf_path", "hf_name", "split", "revision", "docs_per_shard"}
ALLOWED_KEYS = {"name", "kind", "text_key", "id_key", "max_chars", "heldout", "labelled"} | FILES_KEYS | HF_KEYS
DEFAULT_ID_KEY = "id"
ID_SAMPLE_FILES, ID_SAMPLE_ROWS = 10, 200
"""A non-default ``id_key`` must be in a record among the first ID_SAMPLE_ROWS of the first ID_SAMPLE_FILES."""
GLOB_CHARS = "*?["


def _validate(config: dict[str, Any]) -> None:
    """Strict checks; keys of the other kind may be present (e.g. a full config dump) only when unset."""
    kind = config.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"source.kind must be one of {list(KINDS)}, got {kind!r}")
    check_keys(
        config, ALLOWED_KEYS, {"paths", "format"} if kind == "files" else {"hf_path"}, f"source ({kind})"
    )
    if config.get("format", "jsonl") not in ("jsonl", "parquet"):
        raise ConfigError(f"source.format must be 'jsonl' or 'parquet', got {config['format']!r}")
    max_chars = config.get("max_chars", DEFAULT_MAX_CHARS)
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ConfigError(f"source.max_chars must be an integer >= 1 (characters per document), got {max_chars!r}")
    if kind == "files":
        paths = config["paths"]
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise ConfigError(f"source.paths must be a non-empty list of paths or globs, got {paths!r}")
        stray = sorted(k for k in HF_KEYS - {"split"} if config.get(k) is not None)
        if stray:
            raise ConfigError(f"source keys {stray} are only for kind 'hf' (kind is 'files')")
    else:
        if config.get("paths"):
            raise ConfigError(
                f"source.paths is only for kind 'files' (kind is 'hf'), got {config['paths']!r}"
            )
        if config.get("format", "jsonl") != "jsonl":
            raise ConfigError(f"source.format for kind 'hf' is always 'jsonl', got {config['format']!r}")


def expand_paths(patterns: list[str]) -> list[Path]:
    """Absolute, sorted, unique files matching ``patterns``; ConfigError when a pattern matches nothing."""
    found: set[Path] = set()
    for pattern in patterns:
        matches = [Path(m) for m in glob.glob(os.path.expanduser(pattern), recursive=True)]
        files = [m for m in matches if m.is_file()]
        if not files:
            raise ConfigError(f"source.paths entry {pattern!r} {_no_file_hint(pattern, matches)}")
        matches = files
        found.update(m.resolve() for m in matches)
    return sorted(found)


def glob_root(pattern: str) -> Path:
    """The folder a ``source.paths`` entry reads under: its leading components without glob characters
    (a plain file's folder), absolute and resolved."""
    parts = Path(os.path.expanduser(pattern)).parts
    fixed = []
    for part in parts[:-1]:
        if any(c in part for c in GLOB_CHARS):
            break
        fixed.append(part)
    return Path(*fixed).resolve() if fixed else Path.cwd().resolve()


def source_root(patterns: list[str], files: list[Path]) -> Path:
    """The common folder of the glob roots of ``patterns`` (and of ``files``, when a symlink leads out of it):
    ids without an id field and quarantine records name files relative to it."""
    roots = [str(glob_root(p)) for p in patterns] + [str(f.parent) for f in files]
    return Path(os.path.commonpath(roots))


def check_id_key(config: dict[str, Any], files: list[Path]) -> None:
    """A non-default ``id_key`` that no sampled record holds is a typo: every document would get a fallback
    id. Raise ConfigError naming the key and the fields seen (the default ``id`` may be absent: C4, RedPajama)."""
    id_key = config.get("id_key", DEFAULT_ID_KEY)
    if id_key == DEFAULT_ID_KEY or config.get("kind") != "files":
        return
    seen: set[str] = set()
    objects = 0
    for path in files[:ID_SAMPLE_FILES]:
        for number, row in enumerate(iter_rows(path, file_format(path), text_key=None)):
            if number >= ID_SAMPLE_ROWS:
                break
            if row.data is not None:
                if id_key in row.data:
                    return
                objects += 1
                seen.update(row.data)
    if objects:
        raise ConfigError(
            f"source.id_key {id_key!r} is in none of the first {objects} records of {min(len(files), ID_SAMPLE_FILES)} "
            f"file(s) (e.g. {files[0]}); fields seen: {sorted(seen)[:20]} (fix source.id_key, or remove it to get "
            "ids '<file>:<line or row>')"
        )


def _no_file_hint(pattern: str, matches: list[Path]) -> str:
    """Why a ``source.paths`` entry gave no file: a folder (use a glob inside it) or nothing at all."""
    folders = [m for m in matches if m.is_dir()]
    if folders:
        return (f"is a directory ({folders[0]}), not a file: use a glob like "
                f"{str(folders[0]).rstrip('/')}/*.jsonl.gz (or *.parquet)")
    return f"matches no file (relative paths are resolved against the working directory {os.getcwd()})"


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _extra_files(config: dict[str, Any]) -> list[tuple[str, Path]]:
    extra = [("source.heldout", config["heldout"])] if config.get("heldout") else []
    extra += [(f"source.labelled.{k}", p) for k, p in (config.get("labelled") or {}).items() if p]
    return [(field, Path(p).resolve()) for field, p in extra]


def fingerprints(config: dict[str, Any]) -> dict[str, str]:
    """sha256 per file the source reads (data files, held-out and labelled files), keyed by absolute path."""
    _validate(config)
    files = expand_paths(config["paths"]) if config["kind"] == "files" else _local_hf_files(config)
    for field, extra in _extra_files(config):
        if extra.is_dir():
            raise ConfigError(f"{field}: {str(extra)!r} is a directory; it must be one jsonl or parquet file")
        if not extra.is_file():
            raise ConfigError(f"{field}: file {str(extra)!r} does not exist")
        files.append(extra)
    return {str(p): file_sha256(p) for p in sorted(set(files))}


def fingerprint(config: dict[str, Any]) -> str:
    """A stable hash of the source's identity: its config plus the contents of every file it reads.

    For ``kind="hf"`` a hub dataset is identified by name/config/split/revision (pin ``revision``), and a
    local dataset folder by its files' contents. A non-default ``id_key`` is checked here (``check_id_key``),
    so ``propensity plan`` refuses a typo before any stage runs.
    """
    prints = fingerprints(config)
    if config["kind"] == "files":
        check_id_key(config, expand_paths(config["paths"]))
    return _combine(config, prints)


def _combine(config: dict[str, Any], prints: dict[str, str]) -> str:
    payload = {"config": config, "files": prints}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _local_hf_files(config: dict[str, Any]) -> list[Path]:
    local = Path(config["hf_path"]).expanduser()
    if local.is_dir():
        return sorted(p.resolve() for p in local.rglob("*") if p.is_file())
    if local.is_file():
        return [local.resolve()]
    return []


def _export_hf(config: dict[str, Any], out: Path, ctx: StageContext) -> list[str]:
    """Load the dataset (``load_from_disk`` for a ``save_to_disk`` folder, else ``load_dataset``) and write it
    as ``shards/NNNNN.jsonl.gz``."""
    dataset = iter_dataset_rows(
        config["hf_path"], config.get("hf_name"), config.get("split", "train"), config.get("revision")
    )
    text_key, id_key = config.get("text_key", "text"), config.get("id_key", DEFAULT_ID_KEY)
    if text_key not in dataset.column_names:
        raise InputDataError(
            f"HF dataset has no text_key column {text_key!r}; columns: {dataset.column_names}"
        )
    if id_key != DEFAULT_ID_KEY and id_key not in dataset.column_names:
        raise InputDataError(f"HF dataset has no id_key column {id_key!r} (source.id_key); columns: "
                             f"{dataset.column_names} (fix source.id_key, or remove it to get ids "
                             "'<hf_path>/<split>/<row>')")
    per_shard = int(config.get("docs_per_shard", 50_000))
    if per_shard < 1:
        raise ConfigError(f"source.docs_per_shard must be >= 1, got {per_shard}")
    if len(dataset) == 0:
        raise InputDataError(
            f"HF dataset {config['hf_path']!r} split {config.get('split', 'train')!r} is empty"
        )
    (out / "shards").mkdir(parents=True, exist_ok=True)
    paths = [f"shards/{i:05d}.jsonl.gz" for i in range((len(dataset) + per_shard - 1) // per_shard)]
    rows = iter(ctx.progress(dataset, total=len(dataset), desc="export"))
    for shard, rel in enumerate(paths):
        with open(out / rel, "wb") as raw, _gzip_mtime0(raw, mode="wb") as handle:
            for index in range(shard * per_shard, min(len(dataset), (shard + 1) * per_shard)):
                row = next(rows)
                if row.get(id_key) is None:
                    row[id_key] = f"{config['hf_path']}/{config.get('split', 'train')}/{index}"
                handle.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE, default=str))
    return paths


def run(ctx: StageContext) -> dict[str, Any]:
    """Write ``source.json`` (absolute paths for user files) and return the per-file fingerprints."""
    config = ctx.config
    _validate(config)
    prints = fingerprints(config)
    root = None
    if config["kind"] == "files":
        files = expand_paths(config["paths"])
        check_id_key(config, files)
        paths = [str(p) for p in files]
        fmt = config["format"]
        root = str(source_root(config["paths"], files))
    else:
        paths, fmt = _export_hf(config, ctx.out, ctx), "jsonl"
    spec: dict[str, Any] = {
        "format": fmt,
        "paths": paths,
        "text_key": config.get("text_key", "text"),
        "id_key": config.get("id_key", DEFAULT_ID_KEY),
    }
    if root is not None:
        spec["root"] = root
    if config.get("max_chars", DEFAULT_MAX_CHARS) != DEFAULT_MAX_CHARS:
        spec["max_chars"] = config["max_chars"]
    if config.get("heldout"):
        spec["heldout"] = str(Path(config["heldout"]).resolve())
    if config.get("labelled"):
        spec["labelled"] = {k: str(Path(v).resolve()) for k, v in config["labelled"].items()}
    (ctx.out / SOURCE_JSON).write_text(json.dumps(spec, indent=2) + "\n")
    ctx.log.info("source: %d %s file(s)", len(paths), fmt)
    return {
        "files": len(paths),
        "format": fmt,
        "fingerprints": prints,
        "fingerprint": _combine(config, prints),
    }
