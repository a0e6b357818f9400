"""The content-addressed artifact store.

Every stage instance lives in ``<store>/<stage>/<name>-<hash>/`` where the hash covers the stage kind, its
implementation and version, its resolved config, its seed, the keys of its inputs and (for user files) a
fingerprint of their bytes: a changed setting or input always gives a new folder, never a stale one.

Writing is atomic: a stage works in ``<name>-<hash>.partial/`` under an inter-process lock, writes
``manifest.json`` then the ``.complete`` marker, and only then is the folder renamed into place. A complete
folder is reused, never redone. A crashed attempt leaves its ``.partial`` folder for the next attempt to resume.
Under ``torchrun`` only rank 0 locks, writes and finalises; the other ranks run the stage in its work folder.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import platform
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import fasteners

from core.errors import StageError, StoreError
from core.stage import PartComplete, StageContext
from core.usage import UsageMeter, total_usage, write_part_usage

MARKER = ".complete"
STAGE_LOG = "stage.log"
MANIFEST = "manifest.json"
FOLLOWER_WAIT_S = 600.0
"""How long a non-zero torchrun rank waits for rank 0 to open the stage's work folder."""
TRACKED_PACKAGES = ("propensity", "torch", "datatrove", "transformers", "tokenizers", "datasets", "pyarrow",
                    "fasttext-numpy2-wheel", "numpy", "pydantic")


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the bytes that get hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def stable_hash(obj: Any, length: int = 12) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


KEYED_IMPL: dict[str, str] = {
    "synth.stage:run": "propensity.synth.stage:run",
    "conditional_tags.document_tag:run": "filters.variants:run",
    "pretrain.build_tokenizer:run": "pretrain.tokenizer:run",
    "pretrain.tokenize_docs:run": "pretrain.tokenize:run",
    "filters.score_stage:run": "filters.scoring:run",
}
"""Implementations that moved module, by the path their keys were first made with. A stage's key hashes its
implementation path; hashing the original path keeps every store made before the move valid. Add a line here
whenever a stage implementation moves; never change one."""
MOVED_IMPL: dict[str, str] = {old: new for new, old in KEYED_IMPL.items()}
"""Where each moved implementation lives now, by its old path (used only when the old module is gone:
``filters.variants:run`` still builds baseline and filter variants)."""


@dataclass
class StageSpec:
    """One node of the stage graph: what to run, with which config, on which upstream artifacts."""

    stage: str
    name: str
    impl: str
    """``module:function`` implementing the stage contract."""
    config: dict[str, Any]
    inputs: dict[str, StageSpec] = field(default_factory=dict)
    seed: int = 0
    version: int = 1
    """Bump when the stage's output format or semantics change: old artifacts are then not reused."""
    fingerprint: str | None = None
    """Hash of external inputs (user files) the config names only by path."""
    resources: str = "cpu"
    """Resource class for executors (``cpu``, ``train``, ``eval``)."""
    threads: int | None = None
    """Fixed worker/thread count for stages whose bytes depend on it (CPU training); part of the hash."""
    cores: int | None = None
    """Cores of the local executor the stage occupies (None: all its workers); stages needing fewer run side
    by side in worker processes. Scheduling only: not part of the hash."""

    @cached_property
    def hash(self) -> str:
        return stable_hash({
            "stage": self.stage, "name": self.name, "impl": KEYED_IMPL.get(self.impl, self.impl),
            "version": self.version,
            "config": self.config, "seed": self.seed, "fingerprint": self.fingerprint, "threads": self.threads,
            "inputs": {role: spec.key for role, spec in sorted(self.inputs.items())},
        })

    @property
    def key(self) -> str:
        return f"{self.stage}/{self.name}-{self.hash}"

    def load_impl(self) -> Callable[[StageContext], dict]:
        """The implementation; a path that no longer exists (a Slurm graph file written before a move) loads
        where the implementation moved (``KEYED_IMPL``)."""
        module, _, func = self.impl.partition(":")
        try:
            loaded = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module or self.impl not in MOVED_IMPL:
                raise
            module, _, func = MOVED_IMPL[self.impl].partition(":")
            loaded = importlib.import_module(module)
        return getattr(loaded, func)


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


class Store:
    """A folder of stage artifacts addressed by ``StageSpec.key``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

    def path(self, key: str) -> Path:
        """The folder of a stage key, refusing keys that would leave the store."""
        p = (self.root / key).resolve()
        if self.root not in p.parents:
            raise StoreError(f"store key {key!r} escapes the store root {self.root}")
        return p

    def is_complete(self, spec_or_key: StageSpec | str) -> bool:
        key = spec_or_key.key if isinstance(spec_or_key, StageSpec) else spec_or_key
        return (self.path(key) / MARKER).is_file()

    def manifest(self, spec_or_key: StageSpec | str) -> dict[str, Any]:
        key = spec_or_key.key if isinstance(spec_or_key, StageSpec) else spec_or_key
        f = self.path(key) / MANIFEST
        if not f.is_file():
            raise StoreError(f"no manifest for {key}: the stage has not completed")
        return json.loads(f.read_text())

    def _require_inputs(self, spec: StageSpec) -> None:
        missing = [s.key for s in spec.inputs.values() if not self.is_complete(s)]
        if missing:
            raise StageError(f"{spec.key}: inputs not complete: {missing}")

    def has_partial(self, spec: StageSpec) -> bool:
        return self.path(spec.key).with_name(self.path(spec.key).name + ".partial").exists()

    def run(self, spec: StageSpec, *, workers: int = 1, show_progress: bool = True) -> Path:
        """Run a stage unless its artifact is complete; return the artifact folder."""
        final = self.path(spec.key)
        if (final / MARKER).is_file():
            return final
        self._require_inputs(spec)
        final.parent.mkdir(parents=True, exist_ok=True)
        if launcher_rank() > 0:
            return self._run_follower(spec, final, workers)
        lock = fasteners.InterProcessLock(str(final) + ".lock")
        with lock:
            if (final / MARKER).is_file():  # another process finished it while we waited
                return final
            work = final.with_name(final.name + ".partial")
            work.mkdir(exist_ok=True)
            log_path = work / STAGE_LOG
            started = time.time()
            meter = UsageMeter()
            with capture_stderr(log_path) as terminal, warnings_to(terminal, spec.key):
                ctx = self._context(spec, work, workers, show_progress, terminal)
                try:
                    result = spec.load_impl()(ctx) or {}
                except Exception as e:
                    logging.getLogger("propensity").exception("stage %s failed", spec.key)
                    raise StageError(f"stage {spec.key} failed: {type(e).__name__}: {e}\n"
                                     f"  log: {log_path}\n  work folder kept for resume: {work}") from e
            finished = time.time()
            result_usage = total_usage(work, meter.read(work) | {"workers": spec.threads or workers})
            self._write_manifest(spec, work, result, started, finished, result_usage)
            (work / MARKER).write_text(f"{spec.key}\n")
            os.replace(work, final)
        return final

    def _context(self, spec: StageSpec, work: Path, workers: int, show_progress: bool, terminal: Any
                 ) -> StageContext:
        """The stage's context: its config, upstream folders and the work folder it writes into."""
        return StageContext(
            stage=spec.stage, name=spec.name, config=spec.config,
            inputs={role: self.path(s.key) for role, s in spec.inputs.items()},
            out=work, seed=spec.seed, workers=spec.threads or workers, show_progress=show_progress,
            progress_file=terminal,
        )

    def _run_follower(self, spec: StageSpec, final: Path, workers: int) -> Path:
        """A non-zero torchrun rank: run the stage in rank 0's work folder, never lock, write or finalise it.

        Rank 0 takes the lock, opens ``<key>.partial`` and alone writes the manifest and marker (the trainer
        already writes checkpoints and logs on rank 0 only). The other ranks wait for the work folder, then
        run the same stage function in it (they join rank 0 in the process group, and read its checkpoints
        to resume); their stderr goes to ``stage.rank<N>.log`` there.
        """
        rank = launcher_rank()
        work = final.with_name(final.name + ".partial")
        deadline = time.time() + FOLLOWER_WAIT_S
        while not work.is_dir():
            if (final / MARKER).is_file():
                return final
            if time.time() > deadline:
                raise StageError(
                    f"{spec.key}: rank {rank} waited {FOLLOWER_WAIT_S:.0f}s for rank 0 to open {work}"
                )
            time.sleep(0.1)
        with capture_stderr(work / f"stage.rank{rank}.log") as terminal:
            ctx = self._context(spec, work, workers, False, terminal)
            try:
                spec.load_impl()(ctx)
            except Exception as e:
                logging.getLogger("propensity").exception("stage %s failed on rank %d", spec.key, rank)
                raise StageError(f"stage {spec.key} failed on rank {rank}: {type(e).__name__}: {e}") from e
        return final

    def run_part(self, spec: StageSpec, index: int, count: int, *, workers: int = 1) -> Path:
        """Run part ``index`` of ``count`` of a ranked stage (one task of a job array) in its work folder.

        Parts run at the same time, so none takes the stage's lock, writes its manifest or renames the
        folder: each runs its share of the ranks (datatrove marks each finished rank in ``completions/``)
        and records its usage; the finishing run (:meth:`run`) skips the finished ranks, sums the counts,
        writes the manifest and marker and renames the folder into place. Returns the work folder (or the
        final folder when the stage is already complete).
        """
        final = self.path(spec.key)
        if (final / MARKER).is_file():
            return final
        self._require_inputs(spec)
        work = final.with_name(final.name + ".partial")
        work.mkdir(parents=True, exist_ok=True)
        meter = UsageMeter()
        log_path = work / f"stage.part{index}.log"
        with capture_stderr(log_path) as terminal:
            ctx = self._context(spec, work, workers, False, terminal)
            ctx.part = (index, count)
            try:
                spec.load_impl()(ctx)
            except PartComplete:
                pass
            except Exception as e:
                logging.getLogger("propensity").exception("stage %s part %d failed", spec.key, index)
                raise StageError(f"stage {spec.key} part {index}/{count} failed: {type(e).__name__}: {e}\n"
                                 f"  log: {log_path}\n  work folder kept for resume: {work}") from e
            else:
                raise StageError(f"stage {spec.key} ({spec.impl}) does not run in parts: it returned "
                                 "without raising PartComplete")
        write_part_usage(work, index, meter.read() | {"of": count})
        return work

    def _write_manifest(self, spec: StageSpec, work: Path, result: dict, started: float, finished: float,
                        usage: dict[str, Any] | None = None) -> None:
        manifest = {
            "key": spec.key, "stage": spec.stage, "name": spec.name, "hash": spec.hash, "impl": spec.impl,
            "version": spec.version, "seed": spec.seed, "config": spec.config, "fingerprint": spec.fingerprint,
            "inputs": {role: {"key": s.key, "hash": s.hash} for role, s in sorted(spec.inputs.items())},
            "versions": package_versions(), "result": result,
            "timings": {"started": _iso(started), "finished": _iso(finished), "seconds": round(finished - started, 3)},
            "host": socket.gethostname(), "machine": machine_class(),
        }
        if usage is not None:
            manifest["usage"] = usage
        tmp = work / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp, work / MANIFEST)

    def discard_partial(self, spec: StageSpec) -> None:
        work = self.path(spec.key).with_name(self.path(spec.key).name + ".partial")
        if work.exists():
            shutil.rmtree(work)


@contextmanager
def capture_stderr(log_path: Path) -> Iterator[Any]:
    """Send the process's stderr (fd 2, inherited by worker processes) to ``log_path`` for the duration.

    Yields a text stream on the original stderr for progress bars. Library chatter (datatrove's per-task
    logs and stats, transformers warnings) lands in the stage's own log instead of the terminal.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    terminal = os.fdopen(os.dup(saved), "w", buffering=1)
    with open(log_path, "ab") as log_file:
        os.dup2(log_file.fileno(), 2)
    try:
        yield terminal
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        terminal.close()


class _WarningsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno == logging.WARNING


@contextmanager
def warnings_to(terminal: Any, key: str) -> Iterator[None]:
    """Also print the ``propensity`` logger's warnings (not errors: a failure is raised with its log path) to
    ``terminal`` while a stage runs, so a user sees them, and not only its ``stage.log``."""
    handler = logging.StreamHandler(terminal)
    handler.addFilter(_WarningsOnly())
    handler.setFormatter(logging.Formatter(f"warning ({key}): %(message)s"))
    logger = logging.getLogger("propensity")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def machine_class() -> str:
    """This kind of machine, for throughputs measured here: ``<arch>-<cores>c-<cpu model>`` (no host name)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}-{os.cpu_count()}c-{model}"


def launcher_rank() -> int:
    """This process's rank under ``torchrun`` (``RANK`` when ``WORLD_SIZE`` > 1), else 0."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return int(os.environ.get("RANK", "0"))
    return 0


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
