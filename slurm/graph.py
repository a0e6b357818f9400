"""The stage-graph executor on Slurm: every incomplete stage becomes a batch job, or a job array + a finishing job.

The caller (``propensity``) builds the stages and says how each kind runs (:class:`StageJobs`); this module
knows only ``core`` and Slurm. ``submit`` freezes the stages into a content-addressed graph file (each
stage's impl, version, config, seed, fingerprint, threads, input keys). Each job runs
``python -m slurm.stage_job stage GRAPH KEY``: it rebuilds its stage from that file with ``core.store``
only, checks that the rebuilt key is the submitted key, and runs it. Jobs never rebuild the graph with
whatever code is installed when they start. Job ids are recorded in ``<store>/slurm/<experiment>/jobs.json``.
Complete stages are never submitted; stages whose job is still pending or running are not submitted twice.

A stage kind with ``array_tasks > 1`` (the data stages: their rank count, one per input shard, is known at
submission) runs as a job array of that many parts, at most ``array_throttle`` at once (``--array=0-7%2``);
each part runs its contiguous share of the ranks (``python -m slurm.stage_job part GRAPH KEY COUNT``) in the
stage's ``.partial`` folder, and a finishing job (``afterok`` on the array) runs the stage as usual: it
skips the finished ranks, sums their counts into the manifest, writes the marker and renames the folder into
place. A failed part cancels the finishing job and what depends on it; the next ``submit`` runs only the
parts that did not finish (each part records ``usage/part-<i>.json`` when it does), and inside a part
datatrove skips ranks already in ``completions/``.

Train jobs are requeueable (``requeue``): preemption or ``scontrol requeue`` restarts them, and the trainer
resumes from the latest checkpoint. With ``torchrun`` set they start under ``srun`` + ``torchrun``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import fasteners

from core.store import StageSpec, Store, stable_hash
from core.usage import USAGE_DIR
from slurm.errors import SlurmError
from slurm.jobs import JobSpec, Resources, TorchRun
from slurm.limits import check_request, cluster_limits
from slurm.submit import JobState, array_states, job_states, submit_graph
from slurm.submit import cancel as scancel

REQUEUE_SIGNAL_SECONDS = 60
"""Requeueable jobs get USR1 this many seconds before their time limit and requeue themselves."""


@dataclass(frozen=True)
class StageJobs:
    """How the stages of one kind are submitted."""

    resources: Resources = field(default_factory=Resources)
    setup: tuple[str, ...] = ()
    """Commands run before the stage (module load, source venv/bin/activate)."""
    array_tasks: int = 1
    """Parts of a job array (1: one job). Fewer when the stage has fewer ranks than this."""
    array_throttle: int | None = None
    """At most this many parts run at once (``%N``); None: as many as the cluster schedules."""
    requeue: bool = False
    """Requeue on preemption and ``REQUEUE_SIGNAL_SECONDS`` before the time limit (training)."""
    torchrun: TorchRun | None = None
    """Start the stage under ``srun`` + ``torchrun`` (multi-node or GPU training)."""
    field: str = "executor.slurm"
    """The config section these settings come from, named in errors."""


@dataclass
class Experiment:
    """What ``submit``, ``status`` and ``cancel`` need from the caller: built stages, how each kind runs."""

    name: str
    store: Path
    specs: list[StageSpec]
    """Every stage, inputs before the stages that read them."""
    jobs: Mapping[str, StageJobs] = field(default_factory=dict)
    """By stage kind; kinds not listed get ``StageJobs()``."""
    workers: int = 1
    config_path: Path | None = None
    """The resolved config the stages were built from (recorded with each submission)."""
    ranks: Mapping[str, int] = field(default_factory=dict)
    """Stage key -> rank count where known at submission (array parts beyond it would be empty)."""
    budget_check: Callable[[], None] | None = None
    """Called before anything is submitted (raises to refuse the submission)."""
    workdir: Path = field(default_factory=Path.cwd)

    @property
    def dir(self) -> Path:
        """``<store>/slurm/<experiment>``: jobs.json, logs/, graphs/ and dry-run scripts."""
        return Store(self.store).root / "slurm" / self.name

    @property
    def jobs_file(self) -> Path:
        return self.dir / "jobs.json"

    def stage_jobs(self, spec: StageSpec) -> StageJobs:
        return self.jobs.get(spec.stage, StageJobs())

    def job_name(self, key: str) -> str:
        """The Slurm job name of a stage (its finishing job, for arrays): ``<experiment>:<stage key>``."""
        return f"{self.name}:{key}"


# ---- the graph file --------------------------------------------------------------------------------------
def graph_record(spec: StageSpec) -> dict[str, Any]:
    """Everything the key of ``spec`` covers, with inputs by key: enough to rebuild the spec exactly."""
    return {"stage": spec.stage, "name": spec.name, "impl": spec.impl, "config": spec.config,
            "seed": spec.seed, "version": spec.version, "fingerprint": spec.fingerprint,
            "resources": spec.resources, "threads": spec.threads,
            "inputs": {role: i.key for role, i in sorted(spec.inputs.items())}}


def _atomic_write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_graph(exp: Experiment) -> Path:
    """Freeze the stages into ``<store>/slurm/<experiment>/graphs/graph-<hash>.json`` (atomic, by content)."""
    data = {"experiment": exp.name, "store": str(Store(exp.store).root), "workers": exp.workers,
            "config": str(exp.config_path), "stages": [{"key": s.key, **graph_record(s)} for s in exp.specs]}
    return _atomic_write(exp.dir / "graphs" / f"graph-{stable_hash(data)}.json",
                         json.dumps(data, indent=1, sort_keys=True) + "\n")


def load_graph(path: Path) -> tuple[dict[str, Any], dict[str, StageSpec]]:
    """The graph file's header and its stages ``{key: StageSpec}``, each checked to hash to its key."""
    try:
        data = json.loads(Path(path).read_text())
        stages = data["stages"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SlurmError(f"graph file {path} is unreadable or not a propensity graph: {exc}") from exc
    specs: dict[str, StageSpec] = {}
    for rec in stages:  # written in graph order: inputs come before the stages that read them
        missing = [k for k in rec["inputs"].values() if k not in specs]
        if missing:
            raise SlurmError(f"graph file {path}: stage {rec['key']} names inputs {missing} "
                             "that the file does not define")
        spec = StageSpec(rec["stage"], rec["name"], rec["impl"], rec["config"],
                         {role: specs[k] for role, k in rec["inputs"].items()}, seed=rec["seed"],
                         version=rec["version"], fingerprint=rec["fingerprint"], resources=rec["resources"],
                         threads=rec["threads"])
        if spec.key != rec["key"]:
            raise SlurmError(f"graph file {path}: stage {rec['key']} rebuilds as {spec.key}; the file was "
                             "edited or written by an incompatible propensity version")
        specs[spec.key] = spec
    return data, specs


# ---- jobs ----------------------------------------------------------------------------------------------
def stage_command(graph_path: Path, key: str) -> list[str]:
    """argv of a stage job: ``<python> -m slurm.stage_job stage GRAPH KEY`` (the submitting interpreter)."""
    return [sys.executable, "-m", "slurm.stage_job", "stage", str(graph_path), key]


def part_command(graph_path: Path, key: str, count: int) -> list[str]:
    """argv of an array task: ``<python> -m slurm.stage_job part GRAPH KEY COUNT`` (index from Slurm)."""
    return [sys.executable, "-m", "slurm.stage_job", "part", str(graph_path), key, str(count)]


def _job(exp: Experiment, spec: StageSpec, name: str, command: list[str], deps: list[str], **extra: Any
         ) -> JobSpec:
    sj = exp.stage_jobs(spec)
    return JobSpec(name=name, command=command, dependencies=deps, resources=sj.resources, setup=sj.setup,
                   env={"PROPENSITY_EXPERIMENT": exp.name, "PROPENSITY_STAGE": spec.key},
                   log_dir=exp.dir / "logs", workdir=exp.workdir, **extra)


def make_job(exp: Experiment, spec: StageSpec, graph_path: Path, dependencies: list[str]) -> JobSpec:
    """The one job running ``spec`` as frozen in ``graph_path``; ``dependencies`` are stage keys."""
    sj = exp.stage_jobs(spec)
    requeue = {"requeue": True, "requeue_before_timeout": REQUEUE_SIGNAL_SECONDS if sj.resources.time
               else None} if sj.requeue else {}
    return _job(exp, spec, exp.job_name(spec.key), stage_command(graph_path, spec.key),
                [exp.job_name(k) for k in dependencies], torchrun=sj.torchrun, **requeue)


def part_count(exp: Experiment, spec: StageSpec) -> int:
    """Parts of the stage's array: ``array_tasks``, or its rank count when that is smaller and known."""
    tasks = exp.stage_jobs(spec).array_tasks
    return max(1, min(tasks, exp.ranks.get(spec.key, tasks)))


def parts_done(exp: Experiment, spec: StageSpec, count: int) -> set[int]:
    """Parts of ``count`` an earlier array finished (their ``usage/part-<i>.json`` in the work folder)."""
    final = Store(exp.store).path(spec.key)
    done = set()
    for path in (final.with_name(final.name + ".partial") / USAGE_DIR).glob("part-*.json"):
        try:
            if json.loads(path.read_text()).get("of") == count:
                done.add(int(path.stem.split("-", 1)[1]))
        except (OSError, ValueError, json.JSONDecodeError):
            continue
    return done


def array_spec(indices: list[int], throttle: int | None) -> str:
    """``--array`` value for ``indices`` (consecutive runs as ranges) with an optional ``%throttle``."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    return text + (f"%{throttle}" if throttle else "")


def make_jobs(exp: Experiment, spec: StageSpec, graph_path: Path, dependencies: list[str]) -> list[JobSpec]:
    """The jobs of one stage: one job, or (``array_tasks > 1``) an array of the unfinished parts + the
    finishing job that waits for it."""
    count = part_count(exp, spec) if exp.stage_jobs(spec).array_tasks > 1 else 1
    if count == 1:
        return [make_job(exp, spec, graph_path, dependencies)]
    todo = sorted(set(range(count)) - parts_done(exp, spec, count))
    finish = make_job(exp, spec, graph_path, dependencies)
    if not todo:
        return [finish]
    parts = _job(exp, spec, f"{finish.name}:parts", part_command(graph_path, spec.key, count),
                 list(finish.dependencies), array=array_spec(todo, exp.stage_jobs(spec).array_throttle))
    return [parts, replace(finish, dependencies=(*finish.dependencies, parts.name))]


def check_cluster(exp: Experiment, specs: list[StageSpec]) -> None:
    """Refuse arrays larger than the cluster's ``MaxArraySize`` and GPUs no node has, naming the field."""
    limits = cluster_limits()
    for kind in sorted({s.stage for s in specs}):
        sj = exp.jobs.get(kind, StageJobs())
        check_request(limits, sj.field, array_tasks=sj.array_tasks, gpus=sj.resources.gpus or 0,
                      partition=sj.resources.partition)


# ---- jobs.json -----------------------------------------------------------------------------------------
def load_jobs(exp: Experiment) -> dict[str, Any]:
    """The recorded submissions: ``{"experiment", "jobs": {stage key: {job_id, submitted, log, config,
    graph, name[, array]}}, "submissions": [...]}``."""
    path = exp.jobs_file
    if not path.is_file():
        return {"experiment": exp.name, "jobs": {}, "submissions": []}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SlurmError(f"{path} is not valid JSON ({exc}); move it away to start a new record") from exc
    data.setdefault("jobs", {})
    data.setdefault("submissions", [])
    return data


def record_states(records: Mapping[str, Any], keys: list[str]) -> dict[str, JobState]:
    """Scheduler states of the recorded (finishing) jobs of ``keys``, by stage key."""
    ids = {k: str(records[k]["job_id"]) for k in keys if k in records}
    if not ids:
        return {}
    found = job_states(sorted(set(ids.values())))
    return {k: found[i] for k, i in ids.items()}


def is_active(state: JobState | None) -> bool:
    return state is not None and not state.done and state.state != "UNKNOWN"


# ---- submit --------------------------------------------------------------------------------------------
@dataclass
class Submission:
    """What one ``submit`` decided: stages complete, already queued/running, and jobs to submit."""

    complete: list[str]
    active: dict[str, str]
    """Stage key -> id of a pending/running job from an earlier submission (not submitted again)."""
    jobs: list[JobSpec]
    keys: dict[str, str]
    """Job name -> stage key of the jobs to submit (array jobs included)."""
    graph: Path


def plan_submission(exp: Experiment, *, query: bool = True) -> Submission:
    """Decide which stages to submit; with ``query`` ask the scheduler which recorded jobs are still active.

    An active job whose input is being resubmitted is cancelled and submitted again (it waits on a dead job).
    """
    store = Store(exp.store)
    graph = write_graph(exp)
    incomplete = [s for s in exp.specs if not store.is_complete(s)]
    records = load_jobs(exp)["jobs"]
    states = record_states(records, [s.key for s in incomplete]) if query else {}
    active: dict[str, str] = {}
    submit: list[StageSpec] = []
    stale: list[str] = []
    for spec in incomplete:  # topological order: inputs are decided first
        deps = [i.key for i in spec.inputs.values() if not store.is_complete(i)]
        if is_active(states.get(spec.key)) and not any(d in {s.key for s in submit} for d in deps):
            active[spec.key] = states[spec.key].job_id
        else:
            if is_active(states.get(spec.key)):
                stale += [states[spec.key].job_id, *([str(records[spec.key]["array"]["job_id"])]
                                                     if records[spec.key].get("array") else [])]
            submit.append(spec)
    if stale:
        scancel(stale)
    if query:
        _end_arrays([str(records[s.key]["array"]["job_id"]) for s in submit
                     if records.get(s.key, {}).get("array")])
    jobs, keys = [], {}
    for spec in submit:
        for job in make_jobs(exp, spec, graph, sorted({i.key for i in spec.inputs.values()
                                                       if not store.is_complete(i)})):
            jobs.append(job)
            keys[job.name] = spec.key
    return Submission([s.key for s in exp.specs if store.is_complete(s)], active, jobs, keys, graph)


def _end_arrays(array_ids: list[str], timeout: float = 60.0) -> None:
    """Cancel the tasks still pending or running of earlier arrays of stages about to be resubmitted, and
    wait until they are gone, so that no part runs twice at once (the new array reruns them)."""
    deadline = time.monotonic() + timeout
    live = [i for i in array_ids if any(is_active(s) for s in array_states(i).values())]
    if not live:
        return
    scancel(live)
    while any(is_active(s) for i in live for s in array_states(i).values()):
        if time.monotonic() > deadline:
            raise SlurmError(f"tasks of earlier job arrays {live} still run {timeout:.0f} s after scancel")
        time.sleep(0.5)


def submit(exp: Experiment, dry_run: bool = False, *, follow: str | None = None,
           config_text: str | None = None) -> int:
    """Submit every incomplete stage (``dry_run``: write the scripts only); return the exit code.

    ``follow`` is the status command printed at the end (default ``propensity status <config>``). A dry run
    registers nothing: with ``config_text`` (the resolved config ``exp.config_path`` names) it writes that text
    to ``config.yaml`` in its own folder, not to ``exp.config_path``, whose folder ``propensity store gc``
    treats as experiments with jobs; its ``submit.sh`` copies it there before it submits anything.
    """
    exp.dir.mkdir(parents=True, exist_ok=True)
    if exp.budget_check is not None:
        exp.budget_check()
    has_slurm = shutil.which("squeue") is not None
    if dry_run:
        plan = plan_submission(exp, query=has_slurm)
        folder = exp.dir / f"dry-run-{plan.graph.stem.rsplit('-', 1)[-1]}"
        if folder.exists():
            shutil.rmtree(folder)
        register: list[str] = []
        if config_text is not None and exp.config_path is not None:
            target = shlex.quote(str(exp.config_path))
            register = ["# register the config as `propensity run` does (propensity store gc keeps its stages)",
                        f"mkdir -p {shlex.quote(str(exp.config_path.parent))}",
                        f"[ -e {target} ] || cp config.yaml {target}"]
        submit_graph(plan.jobs, dry_run_dir=folder, existing={exp.job_name(k): i for k, i in plan.active.items()},
                     prelude=register)
        config = f"{exp.config_path}"
        if register:
            (folder / "config.yaml").write_text(config_text or "")
            config = f"{folder / 'config.yaml'} (submit.sh copies it to {exp.config_path})"
        print(f"dry run: {len(plan.jobs)} job script(s) written to {folder} (nothing submitted); "
              f"{len(plan.complete)} stage(s) complete, {len(plan.active)} already queued or running")
        print(f"config: {config}\ngraph: {plan.graph}\nsubmit them with: {folder / 'submit.sh'}")
        return 0
    with fasteners.InterProcessLock(str(exp.dir / "submit.lock")):  # two submits never double-submit
        plan = plan_submission(exp)
        check_cluster(exp, [s for s in exp.specs if s.key in set(plan.keys.values())])
        ids = submit_graph(plan.jobs, existing={exp.job_name(k): i for k, i in plan.active.items()})
        _record(exp, plan, ids)
    arrays = sum(job.array is not None for job in plan.jobs)
    print(f"submitted {len(ids)} job(s); {len(plan.complete)} stage(s) already complete, "
          f"{len(plan.active)} already queued or running" + (f"; {arrays} job array(s)" if arrays else ""))
    print(f"config: {exp.config_path}\njobs: {exp.jobs_file}\n"
          f"follow with: {follow or 'propensity status <config>'}")
    return 0


def _record(exp: Experiment, plan: Submission, ids: dict[str, str]) -> None:
    data = load_jobs(exp)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    by_name = {job.name: job for job in plan.jobs}
    for name, job_id in ids.items():
        job, key = by_name[name], plan.keys[name]
        if job.array is None:
            data["jobs"][key] = {"job_id": job_id, "submitted": now, "config": str(exp.config_path),
                                 "graph": str(plan.graph), "name": name, "log": str(job.log_file(job_id))}
    for name, job_id in ids.items():  # arrays after their finishing job's record exists
        job, key = by_name[name], plan.keys[name]
        if job.array is not None:
            data["jobs"][key]["array"] = {"job_id": job_id, "spec": job.array, "count": int(job.command[-1]),
                                          "log": str(job.log_pattern)}
    data["submissions"].append({"time": now, "config": str(exp.config_path), "graph": str(plan.graph),
                                "jobs": {plan.keys[n]: i for n, i in ids.items() if by_name[n].array is None},
                                "arrays": {plan.keys[n]: i for n, i in ids.items() if by_name[n].array},
                                "complete": len(plan.complete), "active": sorted(plan.active)})
    _atomic_write(exp.jobs_file, json.dumps(data, indent=2, sort_keys=True) + "\n")
