"""Looking after a shared store: which artifacts exist, which experiments use them, and garbage collection.

Experiments share a store: two configs with the same source and classifier share the scored shards and every
identical variant (same key = same folder). An experiment *uses* every artifact in the input closure of its
report folder, found by following each ``manifest.json``'s ``inputs`` transitively. ``gc`` removes complete
artifacts no report (and no ``keep`` config) uses, and ``.partial`` folders whose lock no process holds; it
never touches a folder whose lock is held, and nothing at all while any stage of the store is running.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fasteners

from core.errors import StoreError
from core.lineage import ARTIFACT_NAME, PARTIAL, walk
from core.store import MANIFEST, MARKER, Store

"""Folder names of stage artifacts, ``<name>-<12 hex>``; other folders (e.g. ``slurm/``) are never touched."""
SUBMITTED = "experiments"
"""``<store>/experiments/*.yaml``: configs submitted to Slurm (``propensity.slurm_exec.write_config``)."""


@dataclass
class Artifact:
    """One folder of the store."""

    key: str
    """``<stage>/<name>-<hash>`` (without ``.partial``)."""
    path: Path
    state: str
    """``complete``, ``partial`` (a crashed or running attempt) or ``broken`` (no ``.complete`` marker)."""
    size: int
    age_s: float
    """Seconds since the folder (or its manifest, when complete) was last written."""
    used_by: list[str] = field(default_factory=list)
    """Experiments (report keys' names) whose report closure holds this artifact."""


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def scan(store_root: Path) -> list[Artifact]:
    """Every artifact folder of the store (complete, partial or broken), sorted by key; ``used_by`` unset."""
    root = Path(store_root)
    if not root.is_dir():
        raise StoreError(f"store {str(root)!r} is not a folder")
    now = time.time()
    out = []
    from propensity.graph import STAGE_ORDER

    stages = sorted(root / s for s in STAGE_ORDER if (root / s).is_dir())
    folders = [p for s in stages for p in s.iterdir() if p.is_dir() and ARTIFACT_NAME.fullmatch(p.name)]
    for folder in sorted(folders):
        partial = folder.name.endswith(PARTIAL)
        key = f"{folder.parent.name}/{folder.name.removesuffix(PARTIAL)}"
        state = "partial" if partial else "complete" if (folder / MARKER).is_file() else "broken"
        stamp = folder / MANIFEST if state == "complete" else folder
        out.append(Artifact(key, folder, state, _size(folder), now - stamp.stat().st_mtime))
    return sorted(out, key=lambda a: (natural_key(a.key), a.state))


def natural_key(text: str) -> list[Any]:
    """Sort key with digit runs compared as numbers: ``train/a-s2-...`` before ``train/a-s10-...``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def closure(store: Store, key: str) -> set[str]:
    """``key`` and every key upstream of it, following complete manifests' ``inputs``."""
    return {k for k, _ in walk(store, key)}


def usage(store_root: Path, keep: list[str] | None = None) -> dict[str, list[str]]:
    """``{artifact key: [experiments using it]}``: every complete report's closure, every stage of the
    configs submitted to Slurm (``<store>/experiments/*.yaml``: jobs may be pending) and ``keep`` (keys)."""
    store = Store(store_root)
    users: dict[str, set[str]] = {}
    report_dir = store.root / "report"
    reports = sorted(p for p in report_dir.iterdir() if (p / MARKER).is_file()) if report_dir.is_dir() else []
    for rep in reports:
        name = json.loads((rep / MANIFEST).read_text()).get("config", {}).get("experiment", rep.name)
        for k in closure(store, f"report/{rep.name}"):
            users.setdefault(k, set()).add(name)
    for k in keep or []:
        for dep in closure(store, k):
            users.setdefault(dep, set()).add(f"keep:{k}")
    for config in sorted((store.root / SUBMITTED).glob("*.yaml")):
        try:
            keys = keys_of_configs([config])
        except Exception as err:  # noqa: BLE001 - an unreadable config must stop gc, whatever the cause
            raise StoreError(f"cannot tell which artifacts the submitted config {config} uses ({err}); "
                             "fix or delete it, then retry") from err
        for k in keys:
            users.setdefault(k, set()).add(f"submitted:{config.stem}")
    return {k: sorted(v) for k, v in users.items()}


def keys_of_configs(configs: list[Path]) -> list[str]:
    """Every stage key of these experiment configs (to protect experiments that have no report yet)."""
    from propensity.config import load_config
    from propensity.graph import build_graph

    return [s.key for c in configs for s in build_graph(load_config(c, []))]


def ls(store_root: Path, keep: list[str] | None = None) -> list[Artifact]:
    """Every artifact with its size, age, state and the experiments that use it."""
    used = usage(store_root, keep)
    arts = scan(store_root)
    for a in arts:
        a.used_by = used.get(a.key, []) if a.state == "complete" else []
    return arts


def _lock(path: Path) -> fasteners.InterProcessLock | None:
    """The artifact's lock, acquired without waiting; ``None`` when another process holds it."""
    lock = fasteners.InterProcessLock(str(path.parent / path.name.removesuffix(PARTIAL)) + ".lock")
    return lock if lock.acquire(blocking=False) else None


def running(store_root: Path) -> list[str]:
    """Lock files some process holds right now (stages being run)."""
    held = []
    for lock_file in sorted(Path(store_root).glob("*/*.lock")):
        lock = fasteners.InterProcessLock(str(lock_file))
        if lock.acquire(blocking=False):
            lock.release()
        else:
            held.append(f"{lock_file.parent.name}/{lock_file.name.removesuffix('.lock')}")
    return held


def gc(store_root: Path, dry_run: bool = False, keep: list[str] | None = None, min_age_s: float = 0.0,
       echo: bool = True) -> list[Artifact]:
    """Remove unused complete artifacts and stale ``.partial`` folders; return what was (or would be) removed.

    Kept: everything in a complete report's closure or in ``keep`` (stage keys, e.g. ``keys_of_configs``),
    anything younger than ``min_age_s``, and any folder whose lock another process holds. While any stage of
    the store is running, complete artifacts are all kept (its experiment may not have a report yet).
    """
    busy = running(store_root)
    removed = []
    for a in ls(store_root, keep):
        if a.used_by or a.age_s < min_age_s or (busy and a.state != "partial"):
            continue
        lock = _lock(a.path)
        if lock is None:  # a process is working on it right now
            continue
        try:
            if echo:
                verb = "would remove" if dry_run else "removing"
                print(f"{verb} {a.state:<8} {a.key}  {human_size(a.size)}")
            if not dry_run:
                shutil.rmtree(a.path)
            removed.append(a)
        finally:
            lock.release()
    if busy and echo:
        print(f"stages running ({', '.join(busy)}): kept every complete artifact; only stale partials go")
    return removed


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def human_age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def print_ls(arts: list[Artifact]) -> None:
    """A rich table of ``ls`` rows and the total size."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="store artifacts")
    for h in ("key", "state", "size", "age", "used by"):
        table.add_column(h, justify="right" if h in ("size", "age") else "left")
    for a in arts:
        table.add_row(a.key, a.state, human_size(a.size), human_age(a.age_s), ", ".join(a.used_by) or "-")
    console = Console(width=160)
    console.print(table)
    unused = sum(a.size for a in arts if not a.used_by)
    console.print(f"{len(arts)} artifacts, {human_size(sum(a.size for a in arts))}; "
                  f"unused: {human_size(unused)} (`propensity store gc STORE --dry-run` shows what would go)")


def add_parser(sub: Any) -> None:
    """The ``propensity store ls|gc|export`` subcommands (``sub`` = the CLI's ``add_subparsers()`` object)."""
    parent = sub.add_parser("store", help="shared store: ls | gc | export")
    store = parent.add_subparsers(dest="store_command", required=True)
    p = store.add_parser("ls", help="artifacts with size, age, state and the experiments that use them")
    p.add_argument("store", help="store folder")
    p.add_argument("--keep", nargs="*", default=[], metavar="CONFIG", help="configs whose stages are used")
    p = store.add_parser("gc", help="remove unused complete artifacts and stale .partial folders")
    p.add_argument("store", help="store folder")
    p.add_argument("--dry-run", action="store_true", help="print what would be removed, remove nothing")
    p.add_argument("--keep", nargs="*", default=[], metavar="CONFIG", help="configs whose stages are kept")
    p.add_argument("--min-age", type=float, default=0.0, metavar="HOURS", help="keep younger artifacts")
    p = store.add_parser("export", help="export an artifact's shards as a Hugging Face dataset folder")
    p.add_argument("artifact", help="artifact folder (<store>/<stage>/<name>-<hash>) with shards/*.jsonl.gz")
    p.add_argument("out", help="output folder")
    p.add_argument("--subdir", default="shards", help="documents folder in the artifact (shards, excluded)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    for name, func in (("ls", _cmd_ls), ("gc", _cmd_gc), ("export", _cmd_export)):
        store.choices[name].set_defaults(func=func)


def _cmd_ls(args: Any) -> int:
    print_ls(ls(Path(args.store), keys_of_configs([Path(c) for c in args.keep])))
    return 0


def _cmd_gc(args: Any) -> int:
    removed = gc(Path(args.store), dry_run=args.dry_run, keep=keys_of_configs([Path(c) for c in args.keep]),
                 min_age_s=args.min_age * 3600)
    verb = "would free" if args.dry_run else "freed"
    print(f"{len(removed)} artifact(s); {verb} {human_size(sum(a.size for a in removed))}")
    return 0


def _cmd_export(args: Any) -> int:
    import yaml

    from propensity.export import export_shards, import_source_config

    result = export_shards(Path(args.artifact), Path(args.out), subdir=args.subdir, overwrite=args.overwrite)
    print(f"{result['documents']:,} documents in {result['files']} parquet file(s), {result['quarantined']} "
          f"quarantined -> {result['out']}\nre-import with:\n"
          + yaml.safe_dump({"source": import_source_config(Path(args.out))}, sort_keys=False))
    return 0
