"""``status``, ``wait`` and ``cancel`` of a submitted stage graph (see :mod:`slurm.graph`).

``status`` joins the store's view of every stage (complete / partial / missing) with the scheduler's (job
state, elapsed, the log tail of failed jobs) and, for stages run as job arrays, the state of every part.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from core.store import Store
from slurm.errors import SlurmError
from slurm.graph import Experiment, is_active, load_jobs, parts_done, record_states
from slurm.submit import FAILED_STATES, JobState, array_states
from slurm.submit import cancel as scancel
from slurm.submit import wait as slurm_wait

LOG_TAIL_LINES = 12
CANCELLED = "CANCELLED"
"""A job someone cancelled (``propensity cancel``, scancel), or Slurm cancelled because a job it depended on
failed or was cancelled: not a failure of its own, shown apart from failures."""
EXIT_COMPLETE, EXIT_INCOMPLETE, EXIT_FAILED, EXIT_CANCELLED = 0, 1, 3, 4
"""``propensity status`` exit codes: every stage complete; some not complete, but none of their jobs failed
or was cancelled (pending, running or never submitted); a job (or array part) of an incomplete stage failed;
none failed but some were cancelled. (2 is the command line's: an error before any status.)"""


@dataclass
class PartStatus:
    """One task of a stage's job array."""

    index: int
    state: str
    """The scheduler's state, or ``COMPLETED (earlier array)`` for a part an earlier submission finished."""
    elapsed: float | None = None
    log: Path | None = None

    @property
    def failed(self) -> bool:
        return self.state in FAILED_STATES and self.state != CANCELLED

    @property
    def cancelled(self) -> bool:
        return self.state == CANCELLED


@dataclass
class StageStatus:
    """One row of ``propensity status``."""

    key: str
    store: str
    """``complete``, ``partial`` (a crashed or running attempt left its work folder) or ``missing``."""
    job_id: str | None
    state: str | None
    elapsed: float | None
    log: Path | None
    """The job's log when the job failed or was cancelled and the log exists."""
    reason: str | None = None
    parts: list[PartStatus] = field(default_factory=list)
    """The parts of the stage's job array (empty for a one-job stage)."""

    @property
    def failed(self) -> bool:
        """The stage's (finishing) job failed and the stage is not complete."""
        return self.store != "complete" and self.state in FAILED_STATES and self.state != CANCELLED

    @property
    def cancelled(self) -> bool:
        """The stage's (finishing) job was cancelled and the stage is not complete."""
        return self.store != "complete" and self.state == CANCELLED

    @property
    def outcome(self) -> int:
        """This stage's share of the exit code: ``EXIT_*`` (a failed array part makes the stage failed)."""
        if self.store == "complete":
            return EXIT_COMPLETE
        if self.failed or any(p.failed for p in self.parts):
            return EXIT_FAILED
        if self.cancelled or any(p.cancelled for p in self.parts):
            return EXIT_CANCELLED
        return EXIT_INCOMPLETE


def _parts(exp: Experiment, key: str, record: dict) -> list[PartStatus]:
    array = record.get("array")
    if not array:
        return []
    try:
        states = array_states(str(array["job_id"]))
    except SlurmError:
        states = {}
    spec = next(s for s in exp.specs if s.key == key)
    earlier = parts_done(exp, spec, int(array["count"]))
    out = []
    for i in range(int(array["count"])):
        st = states.get(i)
        log = Path(array["log"].replace("%A", str(array["job_id"])).replace("%a", str(i)))
        if st is not None:
            out.append(PartStatus(i, st.state, st.elapsed, log))
        elif i in earlier:
            out.append(PartStatus(i, "COMPLETED (earlier array)"))
        else:
            out.append(PartStatus(i, "UNKNOWN", None, log))
    return out


def collect_status(exp: Experiment) -> list[StageStatus]:
    """Store state, recorded job, scheduler state (and array parts) of every stage, in graph order."""
    store = Store(exp.store)
    records = load_jobs(exp)["jobs"]
    try:
        states = record_states(records, [s.key for s in exp.specs])
    except SlurmError:  # no Slurm client here: the store's view alone
        states = {}
    rows = []
    for spec in exp.specs:
        kind = "complete" if store.is_complete(spec) else "partial" if store.has_partial(spec) else "missing"
        rec, st = records.get(spec.key), states.get(spec.key)
        log = Path(rec["log"]) if rec and rec.get("log") else None
        parts = _parts(exp, spec.key, rec) if rec and states else []
        rows.append(StageStatus(spec.key, kind, rec["job_id"] if rec else None, st.state if st else None,
                                st.elapsed if st else None, log, st.reason if st else None, parts))
    return rows


def hms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of a log (reads at most the last 64 KiB)."""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 65536))
        return f.read().decode(errors="replace").splitlines()[-lines:]


def _parts_cell(parts: list[PartStatus]) -> str:
    counts: dict[str, int] = {}
    for p in parts:
        counts[p.state.split()[0]] = counts.get(p.state.split()[0], 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) if parts else ""


def exit_code(rows: list[StageStatus]) -> int:
    """``EXIT_COMPLETE`` when every stage is complete, else ``EXIT_FAILED`` when a job failed, else
    ``EXIT_CANCELLED`` when one was cancelled, else ``EXIT_INCOMPLETE``."""
    outcomes = {r.outcome for r in rows}
    for code in (EXIT_FAILED, EXIT_CANCELLED, EXIT_INCOMPLETE):
        if code in outcomes:
            return code
    return EXIT_COMPLETE


def status(exp: Experiment) -> int:
    """Print the status table, the parts of array stages and log tails of failures; return :func:`exit_code`."""
    from rich.console import Console
    from rich.table import Table

    rows = collect_status(exp)
    console = Console(width=None if sys.stdout.isatty() else 200, highlight=False)
    table = Table(title=f"{exp.name}: {Store(exp.store).root}")
    for col in ("stage", "store", "job", "slurm state", "elapsed", "array parts", "log (failed jobs)"):
        table.add_column(col, overflow="fold")
    colours = {"complete": "green", "partial": "yellow", "missing": "red"}
    for r in rows:
        state = (r.state or "-") + (f" ({r.reason})" if r.reason and r.state != "RUNNING" else "")
        log = str(r.log) if r.failed and r.log and r.log.is_file() else ""
        table.add_row(r.key, f"[{colours[r.store]}]{r.store}[/]", r.job_id or "-", state, hms(r.elapsed),
                      _parts_cell(r.parts), log)
    console.print(table)
    for r in rows:
        if r.parts and r.store != "complete":
            console.print(f"{r.key}: parts " + ", ".join(f"{p.index} {p.state} {hms(p.elapsed)}"
                                                         for p in r.parts), markup=False)
        for p in r.parts:
            if p.failed and p.log and p.log.is_file() and r.store != "complete":
                console.print(f"[bold red]{r.key}[/] part {p.index} {p.state}; last lines of {p.log}:")
                for line in log_tail(p.log):
                    console.print("  " + line, markup=False)
        if r.failed and r.log and r.log.is_file():
            console.print(f"[bold red]{r.key}[/] failed (job {r.job_id}, {r.state}); last lines of {r.log}:")
            for line in log_tail(r.log):
                console.print("  " + line, markup=False)
    cancelled = [r for r in rows if r.outcome == EXIT_CANCELLED]
    if cancelled:
        upstream = sum(r.reason == "DependencyNeverSatisfied" for r in cancelled)
        console.print(f"cancelled (not failed): {len(cancelled)} stage(s)"
                      + (f", {upstream} of them because a job they waited for failed or was cancelled"
                         if upstream else "")
                      + "; `propensity run` submits them again", markup=False)
    submissions = load_jobs(exp)["submissions"]
    other = sorted(set(submissions[-1]["jobs"]) - {r.key for r in rows}) if submissions else []
    if other:  # the jobs run their frozen stages; this config/code builds different ones
        console.print(f"note: {len(other)} job(s) of the last submission run stages this config and code no "
                      f"longer build ({', '.join(other)}); `propensity run` submits the current graph")
    done = sum(r.store == "complete" for r in rows)
    failed = sum(r.outcome == EXIT_FAILED for r in rows)
    console.print(f"{done}/{len(rows)} stages complete" + (f", {failed} failed" if failed else "")
                  + (f", {len(cancelled)} cancelled" if cancelled else ""))
    return exit_code(rows)


def wait_experiment(exp: Experiment, timeout: float, poll: float = 1.0) -> dict[str, JobState]:
    """Block until every recorded (finishing) job is finished; return ``{stage key: state}``.

    Raises :class:`slurm.SlurmTimeoutError` after ``timeout`` seconds.
    """
    records = load_jobs(exp)["jobs"]
    by_id = {str(r["job_id"]): key for key, r in records.items()}
    states = slurm_wait(list(by_id), timeout, poll=poll)
    return {by_id[i]: s for i, s in states.items()}


def cancel(exp: Experiment) -> int:
    """Cancel the experiment's recorded jobs (and arrays) that are still pending or running; return 0."""
    records = load_jobs(exp)["jobs"]
    states = record_states(records, list(records))
    live = [s.job_id for s in states.values() if is_active(s)]
    live += [str(records[k]["array"]["job_id"]) for k, s in states.items()
             if is_active(s) and records[k].get("array")]
    live = sorted(set(live), key=lambda i: (len(i), i))
    scancel(live)
    print(f"cancelled {len(live)} job(s) of {exp.name}" + (f": {' '.join(live)}" if live else ""))
    return 0
