"""The local executor: run a stage graph on this machine, stages that need few cores side by side.

Each stage declares the cores it occupies (``StageSpec.cores``; None: all ``workers``). A stage that needs
them all runs alone, in this process, with its progress bars, as it always has. Stages that need fewer (CPU
training with ``executor.train_threads`` below ``workers``, a one-GPE eval) run in a pool of ``workers``
spawned processes, as many at once as their cores fit, each as soon as its inputs are complete: on two cores,
two one-thread training runs of a small model take ~0.58x the time of the same two runs one after the other
on two threads each. A stage's bytes do not depend on what ran beside it (its thread count is in its key).

On the first failure nothing new starts; the stages already running finish (their artifacts are complete
and reused by the next run) and the failure is raised with its stage's key and log.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import TextIO

from tqdm.auto import tqdm

from core.store import StageSpec, Store


def _run_in_worker(root: str, spec: StageSpec, cores: int) -> float:
    """One stage in a pool process (no progress bars: several share the terminal); its wall seconds."""
    t0 = time.time()
    Store(root).run(spec, workers=cores, show_progress=False)
    return time.time() - t0


class _Lines:
    """``[i/N] run|done|reuse <key>`` lines, written above the stage bar when there is one."""

    def __init__(self, total: int, stream: TextIO, bar: tqdm | None):
        self.total, self.stream, self.bar = total, stream, bar

    def __call__(self, i: int, action: str, key: str, tail: str = "") -> None:
        line = f"[{i:>2}/{self.total}] {action:<6} {key}{tail}"
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)


def run_graph(store: Store, specs: list[StageSpec], workers: int, *, show_progress: bool, stream: TextIO,
              before_stage: Callable[[StageSpec], None] | None = None) -> None:
    """Run every incomplete stage of ``specs`` (topologically ordered) on ``workers`` cores.

    ``before_stage(spec)`` is called in this process just before a stage starts (the runner checks the token
    budgets before the first training run there)."""
    index = {s.key: i for i, s in enumerate(specs, 1)}
    lines = _Lines(len(specs), stream, None)
    done = {s.key for s in specs if store.is_complete(s)}
    for s in specs:
        if s.key in done:
            lines(index[s.key], "reuse", s.key)
    pending = [s for s in specs if s.key not in done]
    if all(cores_of(s, workers) >= workers for s in pending):  # nothing can share the machine: in this process
        for spec in pending:
            _run_here(store, spec, workers, show_progress, lines, index[spec.key], before_stage)
        return
    bar = tqdm(total=len(pending), desc="stages", unit="stage", disable=not show_progress, dynamic_ncols=True,
               file=stream)
    lines.bar = None if bar.disable else bar
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    running: dict[Future, StageSpec] = {}
    failure: BaseException | None = None
    try:
        while pending or running:
            free = workers - sum(cores_of(s, workers) for s in running.values())
            startable = _startable(pending, done, free, workers, not running)
            if not startable and not running:  # what is left waits on inputs that never completed
                raise RuntimeError(f"local executor: stuck with {len(pending)} stages whose inputs are missing")
            for spec in startable:
                pending.remove(spec)
                if cores_of(spec, workers) >= workers:  # the whole machine (_startable: alone, nothing running)
                    _run_here(store, spec, workers, show_progress, lines, index[spec.key], before_stage)
                    done.add(spec.key)
                    bar.update()
                    continue
                if before_stage is not None:
                    before_stage(spec)
                lines(index[spec.key], "run", spec.key, " ...")
                running[pool.submit(_run_in_worker, str(store.root), spec, cores_of(spec, workers))] = spec
            if not running:
                continue
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                spec = running.pop(future)
                try:
                    seconds = future.result()
                except BaseException as err:  # noqa: BLE001 - re-raised once the running stages are done
                    failure = failure or err
                    pending.clear()  # nothing new starts
                    lines(index[spec.key], "FAILED", spec.key)
                    continue
                done.add(spec.key)
                bar.update()
                lines(index[spec.key], "done", spec.key, f" ({seconds:.1f}s)")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    if failure is not None:
        raise failure


def cores_of(spec: StageSpec, workers: int) -> int:
    """Cores of ``workers`` the stage occupies on the local executor (``StageSpec.cores``; None: all)."""
    return min(spec.cores or workers, workers)


def _startable(pending: list[StageSpec], done: set[str], free: int, workers: int, idle: bool
               ) -> list[StageSpec]:
    """Stages to start now, in graph order: inputs complete and cores free. A whole-machine stage starts only
    on an idle machine, and then alone; while one waits for the machine, nothing after it jumps the queue
    (so data stages are never starved by a stream of small ones)."""
    out: list[StageSpec] = []
    for spec in pending:
        if not all(i.key in done for i in spec.inputs.values()):
            continue
        need = cores_of(spec, workers)
        if need >= workers:
            if idle and not out:
                return [spec]
            break
        if need <= free:
            out.append(spec)
            free -= need
    return out


def _run_here(store: Store, spec: StageSpec, workers: int, show_progress: bool, lines: _Lines, i: int,
              before_stage: Callable[[StageSpec], None] | None) -> Path:
    if before_stage is not None:
        before_stage(spec)
    lines(i, "run", spec.key, " ...")
    t0 = time.time()
    folder = store.run(spec, workers=workers, show_progress=show_progress)
    lines(i, "done", spec.key, f" ({time.time() - t0:.1f}s)")
    return folder
