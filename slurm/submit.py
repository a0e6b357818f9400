"""Submit a graph of :class:`~slurm.jobs.JobSpec` to Slurm, query job states, cancel and wait.

Job states come from ``sacct`` where the cluster has accounting, else from ``scontrol show job -o`` (jobs
finished within ``MinJobAge``), else from the ``jobcomp/filetxt`` log that slurm.conf names.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.errors import ConfigError
from slurm.errors import SlurmError, SlurmTimeoutError
from slurm.jobs import _JOB_ID, JobSpec, render_sbatch

log = logging.getLogger("propensity.slurm")

TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
                             "PREEMPTED", "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"})
"""Job states after which a job does not run again without intervention."""
FAILED_STATES = TERMINAL_STATES - {"COMPLETED"}
"""Terminal states of a job that did not complete its work (``CANCELLED`` included)."""
CANCELLED_REASONS = frozenset({"DependencyNeverSatisfied"})
"""The only reasons Slurm keeps for a ``CANCELLED`` job that say why it ended (its dependency failed or was
cancelled, ``kill_invalid_depend``); any other is the stale reason it was pending for (``Priority``,
``Resources``, ``JobHeldUser``) before someone cancelled it."""


@dataclass(frozen=True)
class JobState:
    """What the scheduler knows about one job."""

    job_id: str
    state: str
    """Slurm state name (``PENDING``, ``RUNNING``, ``COMPLETED``, ``FAILED``, ``CANCELLED``, ...) or
    ``UNKNOWN`` when no source knows the job."""
    exit_code: int | None = None
    """The batch script's exit status (``None`` while it has not finished)."""
    signal: int | None = None
    """The signal that ended it, 0 if none."""
    elapsed: float | None = None
    """Seconds it ran (so far)."""
    reason: str | None = None
    """Why it is pending or ended (``Dependency``, ``DependencyNeverSatisfied``, ``NonZeroExitCode``)."""
    restarts: int | None = None
    """Times it was requeued (``scontrol`` only)."""
    source: str = "none"
    """Where the state came from: ``sacct``, ``scontrol``, ``jobcomp`` or ``none``."""

    @property
    def done(self) -> bool:
        """True when the job is in a terminal state."""
        return self.state in TERMINAL_STATES


def ending_reason(state: str, reason: str | None) -> str | None:
    """``reason`` as Slurm reports it for a job in ``state``, without the stale pending reason of a job
    cancelled while it waited (``CANCELLED`` + ``Resources``: the scheduler does not clear it)."""
    if not reason or reason == "None" or (state == "CANCELLED" and reason not in CANCELLED_REASONS):
        return None
    return reason


def _run(argv: Sequence[str], env: Mapping[str, str] | None, *, stdin: str | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.run(list(argv), input=stdin, env=full_env, capture_output=True, text=True,
                              timeout=120)
    except FileNotFoundError as exc:
        raise SlurmError(f"`{argv[0]}` not found on PATH: is this a Slurm client machine?") from exc
    if check and proc.returncode != 0:
        raise SlurmError(f"`{shlex.join(argv)}` exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def topological_order(jobs: Sequence[JobSpec]) -> list[JobSpec]:
    """Jobs ordered so that every job comes after its dependencies (stable: input order breaks ties).

    Dependencies on names not in ``jobs`` are taken as already complete (the caller leaves complete
    stages out). Duplicate names and cycles are :class:`ConfigError`.
    """
    by_name: dict[str, JobSpec] = {}
    for job in jobs:
        if job.name in by_name:
            raise ConfigError(f"job name {job.name!r} appears twice in the graph; names must be unique")
        by_name[job.name] = job
    order: list[JobSpec] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name):] + [name]
            raise ConfigError(f"job dependencies form a cycle: {' -> '.join(cycle)}")
        state[name] = "visiting"
        for dep in by_name[name].dependencies:
            if dep in by_name:
                visit(dep, path + [dep])
        state[name] = "done"
        order.append(by_name[name])

    for job in jobs:
        visit(job.name, [job.name])
    return order


def submit_graph(jobs: Sequence[JobSpec], *, dry_run_dir: Path | None = None,
                 env: Mapping[str, str] | None = None,
                 existing: Mapping[str, str] | None = None, prelude: Sequence[str] = ()) -> dict[str, str]:
    """Submit ``jobs`` in dependency order with ``sbatch --parsable``; return ``{name: job_id}``.

    With ``dry_run_dir`` nothing is submitted: every script is written there (``NN-<name>.sbatch``, without
    the ``--dependency`` line, whose ids do not exist yet) with ``plan.json`` and a runnable ``submit.sh``
    that submits them in order and wires the dependencies; the returned ids are ``dry-run-NN``. ``prelude``:
    shell lines (already quoted) that ``submit.sh`` runs in that folder before its first ``sbatch``.
    If an ``sbatch`` fails, the jobs already submitted by this call are cancelled and :class:`SlurmError`
    is raised. ``existing`` maps names of jobs submitted earlier (still pending or running, not in ``jobs``)
    to their ids: dependencies on them become ``afterok`` on those ids. Dependencies on other names outside
    ``jobs`` are taken as already complete.
    """
    order = topological_order(jobs)
    existing = dict(existing or {})
    clash = sorted(set(existing) & {job.name for job in order})
    if clash:
        raise ConfigError(f"jobs {clash} are both in the graph and already submitted (existing=)")
    bad = {name: i for name, i in existing.items() if not _JOB_ID.match(str(i))}
    if bad:
        raise ConfigError(f"existing job ids {bad} are not Slurm job ids (digits, or digits_digits)")
    if dry_run_dir is not None:
        return _write_dry_run(order, Path(dry_run_dir), existing, prelude)
    ids: dict[str, str] = {}
    for job in order:
        missing = [d for d in job.dependencies if d not in ids and d not in existing]
        if missing:
            log.info("job %r: dependencies %s not in the graph, taken as complete", job.name, missing)
        deps = [ids[d] if d in ids else existing[d] for d in job.dependencies if d in ids or d in existing]
        script = render_sbatch(job, deps)
        job.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            out = _run(["sbatch", "--parsable"], env, stdin=script).stdout.strip()
        except SlurmError as exc:
            if ids:
                cancel(list(ids.values()), env=env)
            raise SlurmError(f"submitting job {job.name!r} failed (cancelled the {len(ids)} job(s) "
                             f"submitted before it): {exc}") from exc
        ids[job.name] = out.split(";", 1)[0]
        log.info("submitted %r as job %s (after %s)", job.name, ids[job.name], deps or "nothing")
    return ids


def _write_dry_run(order: list[JobSpec], folder: Path, existing: Mapping[str, str],
                   prelude: Sequence[str] = ()) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    index = {job.name: i for i, job in enumerate(order)}
    plan, sh = [], ["#!/bin/bash", "# Submits the dry-run scripts in dependency order.", "set -euo pipefail",
                    'cd "$(dirname "$0")"', *prelude]
    for i, job in enumerate(order):
        file = f"{i:02d}-{job.slug}.sbatch"
        (folder / file).write_text(render_sbatch(job))
        deps = [index[d] for d in job.dependencies if d in index]
        dep_ids = [f"${{id{d}}}" for d in deps] + [existing[d] for d in job.dependencies if d in existing]
        dep_arg = " --dependency=afterok:" + ":".join(dep_ids) if dep_ids else ""
        sh += [f"mkdir -p {shlex.quote(str(job.log_dir.absolute()))}",
               f"id{i}=$(sbatch --parsable{dep_arg} {shlex.quote(file)})",
               f'id{i}="${{id{i}%%;*}}"',
               f'echo "submitted {i:02d} as job ${{id{i}}}"']
        plan.append({"name": job.name, "script": file, "dependencies": list(job.dependencies),
                     "dependency_scripts": [order[d].name for d in deps],
                     "dependency_jobs": {d: existing[d] for d in job.dependencies if d in existing},
                     "command": list(job.command)})
    (folder / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    (folder / "submit.sh").write_text("\n".join(sh) + "\n")
    os.chmod(folder / "submit.sh", 0o755)
    return {job.name: f"dry-run-{i:02d}" for i, job in enumerate(order)}


def cancel(ids: Iterable[str], *, env: Mapping[str, str] | None = None) -> None:
    """Cancel jobs (``scancel``); ids that already finished are ignored."""
    ids = [str(i) for i in ids]
    if ids:
        _run(["scancel", *ids], env, check=False)


def wait(ids: Iterable[str], timeout: float, *, env: Mapping[str, str] | None = None,
         poll: float = 1.0) -> dict[str, JobState]:
    """Poll until every job is in a terminal state; return their states or raise SlurmTimeoutError."""
    ids = [str(i) for i in ids]
    deadline = time.monotonic() + timeout
    while True:
        states = job_states(ids, env=env)
        if all(s.done for s in states.values()):
            return states
        if time.monotonic() >= deadline:
            pending = {i: s.state for i, s in states.items() if not s.done}
            raise SlurmTimeoutError(f"jobs not finished after {timeout:.0f} s: {pending}")
        time.sleep(poll)


def job_states(ids: Iterable[str], *, env: Mapping[str, str] | None = None) -> dict[str, JobState]:
    """States of ``ids`` from sacct, then ``scontrol show job``, then the jobcomp log (first that knows)."""
    ids = [str(i) for i in ids]
    found = _from_sacct(ids, env) if ids else {}
    for job_id in ids:
        if job_id not in found:
            state = _from_scontrol(job_id, env)
            if state is not None:
                found[job_id] = state
    missing = [i for i in ids if i not in found]
    if missing:
        found.update(_from_jobcomp(missing, env))
    return {i: found.get(i, JobState(i, "UNKNOWN")) for i in ids}


def _exit(text: str | None) -> tuple[int | None, int | None]:
    if not text or ":" not in text:
        return None, None
    code, sig = text.split(":", 1)
    return int(code), int(sig)


def _from_sacct(ids: list[str], env: Mapping[str, str] | None) -> dict[str, JobState]:
    fmt = "--format=JobIDRaw,State,ExitCode,ElapsedRaw,Reason"
    proc = _run(["sacct", "-n", "-P", "-X", "-j", ",".join(ids), fmt], env, check=False)
    if proc.returncode != 0:  # "Slurm accounting storage is disabled" on clusters without slurmdbd
        return {}
    found: dict[str, JobState] = {}
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) < 4 or parts[0] not in ids:
            continue
        code, sig = _exit(parts[2])
        state = parts[1].split()[0] if parts[1] else "UNKNOWN"  # "CANCELLED by 0"
        found[parts[0]] = JobState(parts[0], state, code if state in TERMINAL_STATES else None, sig,
                                   float(parts[3]) if parts[3].isdigit() else None,
                                   ending_reason(state, parts[4] if len(parts) > 4 else None), None, "sacct")
    return found


def _fields(text: str) -> dict[str, str]:
    """``Key=value`` pairs of one line; the first occurrence of a key wins."""
    out: dict[str, str] = {}
    for match in re.finditer(r"(?:^|\s)([A-Za-z_/:]+)=(\S*)", text):
        out.setdefault(match.group(1), match.group(2))
    return out


def _seconds(runtime: str | None) -> float | None:
    match = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d+):(\d+)", runtime or "")
    if not match:
        return None
    days, h, m, s = (int(g or 0) for g in match.groups())
    return float(((days * 24 + h) * 60 + m) * 60 + s)


def _from_scontrol(job_id: str, env: Mapping[str, str] | None) -> JobState | None:
    proc = _run(["scontrol", "show", "job", "-o", job_id], env, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None  # "Invalid job id specified": purged after MinJobAge
    return _scontrol_line(job_id, proc.stdout.strip().splitlines()[0])[0]


def _scontrol_line(job_id: str, line: str) -> tuple[JobState, dict[str, str]]:
    """The state in one ``scontrol show job -o`` line, and the line's fields."""
    # the job name is free text: parse only what follows it (" UserId=name(uid) GroupId=")
    tail = re.split(r" UserId=\S*\(\d+\) GroupId=", line)[-1]
    f = _fields(tail) | {k: v for k, v in _fields(line.split(" JobName=", 1)[0]).items()}
    state = f.get("JobState", "UNKNOWN")
    code, sig = _exit(f.get("ExitCode"))
    done = state in TERMINAL_STATES
    restarts = int(f["Restarts"]) if f.get("Restarts", "").isdigit() else None
    # a job that never got a node (pending, or cancelled while pending) has no elapsed time: its StartTime is
    # Unknown (RunTime then counts from the epoch) or the scheduler's estimate, and its NodeList is empty
    never_ran = f.get("StartTime") == "Unknown" or f.get("NodeList", "") in ("", "(null)")
    elapsed = None if never_ran else _seconds(f.get("RunTime"))
    return JobState(job_id, state, code if done else None, sig if done else None, elapsed,
                    ending_reason(state, f.get("Reason")), restarts,
                    "scontrol"), f


def _indices(spec: str) -> list[int]:
    """Task indices of an ``ArrayTaskId`` value: ``3``, ``2-3%2``, ``1,4-5``."""
    out: list[int] = []
    for part in spec.split("%", 1)[0].split(","):
        low, _, high = part.partition("-")
        if low.isdigit():
            out += list(range(int(low), int(high or low) + 1))
    return out


def array_states(array_id: str, *, env: Mapping[str, str] | None = None) -> dict[int, JobState]:
    """States of the tasks of job array ``array_id`` by task index (sacct, else ``scontrol show job``).

    Tasks still pending as one record (``ArrayTaskId=2-3%2``) each get that record's state. Without sacct a
    finished array is known only while ``scontrol`` remembers it (``MinJobAge``); then this returns {}.
    """
    array_id = str(array_id)
    fmt = "--format=JobID,JobIDRaw,State,ExitCode,ElapsedRaw,Reason"
    proc = _run(["sacct", "-n", "-P", "-X", "-j", array_id, fmt], env, check=False)
    found: dict[int, JobState] = {}
    if proc.returncode == 0:
        for line in proc.stdout.splitlines():
            parts = line.split("|")
            if len(parts) < 5 or not parts[0].startswith(f"{array_id}_"):
                continue
            code, sig = _exit(parts[3])
            state = parts[2].split()[0] if parts[2] else "UNKNOWN"
            for index in _indices(parts[0].split("_", 1)[1].strip("[]")):
                found[index] = JobState(parts[1], state, code if state in TERMINAL_STATES else None, sig,
                                        float(parts[4]) if parts[4].isdigit() else None,
                                        ending_reason(state, parts[5] if len(parts) > 5 else None), None,
                                        "sacct")
        if found:
            return found
    proc = _run(["scontrol", "show", "job", "-o", array_id], env, check=False)
    if proc.returncode != 0:
        return {}
    for line in proc.stdout.strip().splitlines():
        job = re.match(r"JobId=(\d+)", line)
        if not job:
            continue
        state, fields = _scontrol_line(job.group(1), line)
        for index in _indices(fields.get("ArrayTaskId", "")):
            found[index] = state
    return found


def _jobcomp_path(env: Mapping[str, str] | None) -> Path | None:
    proc = _run(["scontrol", "show", "config"], env, check=False)
    conf = dict(re.findall(r"^(\w+)\s*=\s*(.*?)\s*$", proc.stdout, flags=re.M))
    if conf.get("JobCompType") != "jobcomp/filetxt" or not conf.get("JobCompLoc"):
        return None
    return Path(conf["JobCompLoc"])


def _from_jobcomp(ids: list[str], env: Mapping[str, str] | None) -> dict[str, JobState]:
    path = _jobcomp_path(env)
    if path is None or not path.is_file():
        return {}
    found: dict[str, JobState] = {}
    for line in path.read_text(errors="replace").splitlines():
        # the name is free text before " JobState=<state> Partition=" (greedy: names rarely hold that)
        match = re.match(r"JobId=(\S+) .* JobState=(\S+) Partition=", line)
        if not match or match.group(1) not in ids:
            continue
        f = {**_fields(line[match.end():]), "JobState": match.group(2)}
        exit_code = re.search(r" ExitCode=(\S+)\s*$", line)
        f["ExitCode"] = exit_code.group(1) if exit_code else ""
        code, sig = _exit(f.get("ExitCode"))
        try:
            start, end = datetime.fromisoformat(f["StartTime"]), datetime.fromisoformat(f["EndTime"])
            elapsed = (end - start).total_seconds()
        except (KeyError, ValueError):
            elapsed = None
        if f.get("NodeList", "") in ("(null)", ""):  # never got a node: cancelled while pending, start = end
            elapsed = None
        found[match.group(1)] = JobState(match.group(1), f["JobState"], code, sig, elapsed, None, None,
                                         "jobcomp")  # later lines (after requeues) win
    return found
