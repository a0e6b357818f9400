"""The Slurm executor: every incomplete stage of an experiment becomes one batch job.

``run_slurm`` writes the resolved config into the store and freezes the stage graph it built into a
content-addressed graph file (each stage's impl, version, config, seed, fingerprint, threads, input keys).
Each job runs ``python -m propensity.slurm_exec stage GRAPH KEY``: it rebuilds its stage from that file,
checks that the rebuilt key is the submitted key, and runs it. Jobs never rebuild the graph with whatever
code is installed when they start, so editing the code or the config while jobs are queued cannot make a
job look for a stage key that no longer exists. Job ids are recorded in
``<store>/slurm/<experiment>/jobs.json``. Complete stages are never submitted; stages whose job is still
pending or running are not submitted twice (their dependents wait on the existing job). ``status`` joins the
store's view (complete / partial / missing) with the scheduler's (job state, elapsed, log tail of failed
jobs); ``cancel`` cancels what is still queued or running.

Train jobs are requeueable: preemption or ``scontrol requeue`` restarts them, and the trainer resumes from the
latest checkpoint in the stage's ``.partial`` folder. Near the time limit Slurm sends USR1 to the batch shell,
which requeues the job itself. With ``nodes > 1`` or ``gpus > 0`` train jobs start under ``srun`` +
``torchrun`` (c10d rendezvous on the first node).
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fasteners
import yaml

from core.errors import ConfigError, PropensityError
from core.store import StageSpec, Store, stable_hash
from propensity.config import ExperimentConfig, SlurmResources
from propensity.graph import STAGE_ORDER, build_graph
from slurm import JobSpec, JobState, Resources, SlurmError, job_states, submit_graph
from slurm import cancel as scancel
from slurm import wait as slurm_wait
from slurm.jobs import TorchRun

REQUEUE_SIGNAL_SECONDS = 60
"""Train jobs get USR1 this many seconds before their time limit and requeue themselves."""
FAILED_STATES = frozenset({"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
                           "CANCELLED", "PREEMPTED", "REVOKED", "SPECIAL_EXIT"})
"""Terminal job states that did not complete the stage."""
LOG_TAIL_LINES = 12


def experiment_dir(cfg: ExperimentConfig) -> Path:
    """``<store>/slurm/<experiment>``: jobs.json, logs/ and dry-run scripts of one experiment."""
    return Store(cfg.store).root / "slurm" / cfg.experiment


def jobs_file(cfg: ExperimentConfig) -> Path:
    """Where submitted job ids are recorded (merged across submissions)."""
    return experiment_dir(cfg) / "jobs.json"


def write_config(cfg: ExperimentConfig) -> Path:
    """Write the resolved config (store made absolute) to ``<store>/experiments/<experiment>-<hash>.yaml``.

    The file name carries a hash of the content, so a job always reads the config it was submitted with;
    writing is atomic (tmp + rename) and rewriting identical content is harmless.
    """
    data = cfg.model_dump(mode="json")
    data["store"] = str(Store(cfg.store).root)
    path = Store(cfg.store).root / "experiments" / f"{cfg.experiment}-{stable_hash(data)}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)
    return path


def stage_resources(cfg: ExperimentConfig, stage: str) -> SlurmResources:
    """``executor.slurm['default']`` with the fields set in ``executor.slurm[stage]`` on top."""
    allowed = ["default", *STAGE_ORDER]
    for key in cfg.executor.slurm:
        if key not in allowed:
            hint = difflib.get_close_matches(key, allowed, n=1)
            did = f" did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"executor.slurm.{key}: unknown stage kind.{did} allowed: {', '.join(allowed)}")
    merged = cfg.executor.slurm.get("default", SlurmResources()).model_dump()
    own = cfg.executor.slurm.get(stage)
    if own is not None:
        merged.update(own.model_dump(include=own.model_fields_set))
    return SlurmResources.model_validate(merged)


def graph_record(spec: StageSpec) -> dict[str, Any]:
    """Everything the key of ``spec`` covers, with inputs by key: enough to rebuild the spec exactly."""
    return {"stage": spec.stage, "name": spec.name, "impl": spec.impl, "config": spec.config,
            "seed": spec.seed, "version": spec.version, "fingerprint": spec.fingerprint,
            "resources": spec.resources, "threads": spec.threads,
            "inputs": {role: i.key for role, i in sorted(spec.inputs.items())}}


def write_graph(cfg: ExperimentConfig, specs: list[StageSpec], config_path: Path) -> Path:
    """Freeze ``specs`` into ``<store>/slurm/<experiment>/graphs/graph-<hash>.json`` (atomic, by content).

    Jobs read their stage from this file instead of rebuilding the graph when they start, so a job runs
    exactly the stage it was submitted as, whatever happens to the code or config meanwhile.
    """
    data = {"experiment": cfg.experiment, "store": str(Store(cfg.store).root),
            "workers": cfg.executor.workers, "config": str(config_path),
            "stages": [{"key": s.key, **graph_record(s)} for s in specs]}
    path = experiment_dir(cfg) / "graphs" / f"graph-{stable_hash(data)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


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


def stage_command(graph_path: Path, key: str) -> list[str]:
    """argv of a job: ``<python> -m propensity.slurm_exec stage GRAPH KEY`` (the submitting interpreter)."""
    return [sys.executable, "-m", "propensity.slurm_exec", "stage", str(graph_path), key]


def _torchrun(res: SlurmResources) -> TorchRun | None:
    if res.nodes <= 1 and res.gpus <= 0:
        return None
    exe = Path(sys.executable).parent / "torchrun"
    return TorchRun(nproc_per_node=max(res.gpus, 1), executable=str(exe) if exe.is_file() else "torchrun")


def job_name(cfg: ExperimentConfig, key: str) -> str:
    """The Slurm job name of a stage: ``<experiment>:<stage key>``."""
    return f"{cfg.experiment}:{key}"


def make_job(cfg: ExperimentConfig, spec: StageSpec, graph_path: Path, dependencies: list[str]) -> JobSpec:
    """The job running ``spec`` as frozen in ``graph_path``; ``dependencies`` are stage keys to wait for."""
    res = stage_resources(cfg, spec.stage)
    train = spec.stage == "train"
    return JobSpec(
        name=job_name(cfg, spec.key),
        command=stage_command(graph_path, spec.key),
        dependencies=[job_name(cfg, k) for k in dependencies],
        resources=Resources(partition=res.partition, account=res.account, qos=res.qos, time=res.time,
                            cpus=res.cpus, mem=res.mem, gpus=res.gpus or None, nodes=res.nodes,
                            extra_sbatch=tuple(res.extra_sbatch)),
        setup=list(res.setup),
        env={"PROPENSITY_EXPERIMENT": cfg.experiment, "PROPENSITY_STAGE": spec.key},
        log_dir=experiment_dir(cfg) / "logs",
        workdir=Path.cwd(),
        requeue=train,
        requeue_before_timeout=REQUEUE_SIGNAL_SECONDS if train and res.time else None,
        torchrun=_torchrun(res) if train else None,
    )


def log_path(job: JobSpec, job_id: str) -> Path:
    """The log file Slurm writes for ``job`` once it has id ``job_id``."""
    return job.log_dir.absolute() / f"{job.slug}-{job_id}.out"


# ---- jobs.json -----------------------------------------------------------------------------------------
def load_jobs(cfg: ExperimentConfig) -> dict[str, Any]:
    """The recorded submissions.

    ``{"experiment", "jobs": {stage key: {job_id, submitted, log, config, name}}, "submissions": [...]}``.
    """
    path = jobs_file(cfg)
    if not path.is_file():
        return {"experiment": cfg.experiment, "jobs": {}, "submissions": []}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SlurmError(f"{path} is not valid JSON ({exc}); move it away to start a new record") from exc
    data.setdefault("jobs", {})
    data.setdefault("submissions", [])
    return data


def _save_jobs(cfg: ExperimentConfig, data: dict[str, Any]) -> None:
    path = jobs_file(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _states(records: dict[str, Any], keys: list[str]) -> dict[str, JobState]:
    """Scheduler states of the recorded jobs of ``keys`` (by stage key)."""
    ids = {k: str(records[k]["job_id"]) for k in keys if k in records}
    if not ids:
        return {}
    found = job_states(sorted(set(ids.values())))
    return {k: found[i] for k, i in ids.items()}


def _is_active(state: JobState | None) -> bool:
    return state is not None and not state.done and state.state != "UNKNOWN"


# ---- run -----------------------------------------------------------------------------------------------
@dataclass
class Submission:
    """What one ``run_slurm`` call decided: stages complete, already queued/running, and to submit."""

    complete: list[str]
    active: dict[str, str]
    """Stage key -> id of a pending/running job from an earlier submission (not submitted again)."""
    jobs: list[JobSpec]
    keys: dict[str, str]
    """Job name -> stage key of the jobs to submit."""
    graph: Path
    """The frozen graph file the jobs read their stage from."""


def plan_submission(cfg: ExperimentConfig, config_path: Path, *, query: bool = True) -> Submission:
    """Decide which stages to submit; with ``query`` ask the scheduler which recorded jobs are still active.

    An active job whose input is being resubmitted is cancelled and submitted again (it waits on a dead job).
    """
    store = Store(cfg.store)
    specs = build_graph(cfg)
    graph = write_graph(cfg, specs, config_path)
    incomplete = [s for s in specs if not store.is_complete(s)]
    records = load_jobs(cfg)["jobs"]
    states = _states(records, [s.key for s in incomplete]) if query else {}
    complete = [s.key for s in specs if store.is_complete(s)]
    active: dict[str, str] = {}
    submit: list[StageSpec] = []
    stale: list[str] = []
    for spec in incomplete:  # topological order: inputs are decided first
        deps = [i.key for i in spec.inputs.values() if not store.is_complete(i)]
        if _is_active(states.get(spec.key)) and not any(d in {s.key for s in submit} for d in deps):
            active[spec.key] = states[spec.key].job_id
        else:
            if _is_active(states.get(spec.key)):
                stale.append(states[spec.key].job_id)
            submit.append(spec)
    if stale:
        scancel(stale)
    jobs = [make_job(cfg, s, graph, sorted({i.key for i in s.inputs.values() if not store.is_complete(i)}))
            for s in submit]
    return Submission(complete, active, jobs, {job_name(cfg, s.key): s.key for s in submit}, graph)


def _early_budget_check(cfg: ExperimentConfig) -> None:
    """When every tokenize stage feeding a train stage is complete, check the token budget up front."""
    from propensity.runner import check_budgets

    store = Store(cfg.store)
    trains = [s for s in build_graph(cfg) if s.stage == "train" and not store.is_complete(s)]
    if trains and all(store.is_complete(s.inputs["tokenize"]) for s in trains):
        check_budgets(cfg, trains, store)


def run_slurm(cfg: ExperimentConfig, dry_run: bool = False) -> int:
    """Submit every incomplete stage (``--dry-run``: write the scripts only); return the exit code."""
    config_path = write_config(cfg)
    exp = experiment_dir(cfg)
    exp.mkdir(parents=True, exist_ok=True)
    _early_budget_check(cfg)
    if dry_run:
        plan = plan_submission(cfg, config_path, query=shutil.which("squeue") is not None)
        folder = exp / f"dry-run-{config_path.stem.rsplit('-', 1)[-1]}"
        if folder.exists():
            shutil.rmtree(folder)
        submit_graph(plan.jobs, dry_run_dir=folder,
                     existing={job_name(cfg, k): i for k, i in plan.active.items()})
        print(f"dry run: {len(plan.jobs)} job script(s) written to {folder} (nothing submitted); "
              f"{len(plan.complete)} stage(s) complete, {len(plan.active)} already queued or running")
        print(f"config: {config_path}\ngraph: {plan.graph}\nsubmit them with: {folder / 'submit.sh'}")
        return 0
    with fasteners.InterProcessLock(str(exp / "submit.lock")):  # two `run`s never double-submit
        plan = plan_submission(cfg, config_path)
        ids = submit_graph(plan.jobs, existing={job_name(cfg, k): i for k, i in plan.active.items()})
        _record(cfg, plan, ids, config_path)
    print(f"submitted {len(ids)} job(s); {len(plan.complete)} stage(s) already complete, "
          f"{len(plan.active)} already queued or running")
    print(f"config: {config_path}\njobs: {jobs_file(cfg)}\nfollow with: propensity status <config>")
    return 0


def _record(cfg: ExperimentConfig, plan: Submission, ids: dict[str, str], config_path: Path) -> None:
    data = load_jobs(cfg)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    by_name = {job.name: job for job in plan.jobs}
    for name, job_id in ids.items():
        data["jobs"][plan.keys[name]] = {"job_id": job_id, "submitted": now, "config": str(config_path),
                                         "graph": str(plan.graph), "name": name,
                                         "log": str(log_path(by_name[name], job_id))}
    data["submissions"].append({"time": now, "config": str(config_path), "graph": str(plan.graph),
                                "jobs": {plan.keys[n]: i for n, i in ids.items()},
                                "complete": len(plan.complete), "active": sorted(plan.active)})
    _save_jobs(cfg, data)


# ---- status and cancel --------------------------------------------------------------------------------
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

    @property
    def failed(self) -> bool:
        return self.store != "complete" and self.state in FAILED_STATES


def collect_status(cfg: ExperimentConfig) -> list[StageStatus]:
    """Store state, recorded job and scheduler state of every stage, in graph order."""
    store = Store(cfg.store)
    specs = build_graph(cfg)
    records = load_jobs(cfg)["jobs"]
    try:
        states = _states(records, [s.key for s in specs])
    except SlurmError:  # no Slurm client here: the store's view alone
        states = {}
    rows = []
    for spec in specs:
        kind = "complete" if store.is_complete(spec) else "partial" if store.has_partial(spec) else "missing"
        rec, st = records.get(spec.key), states.get(spec.key)
        log = Path(rec["log"]) if rec and rec.get("log") else None
        rows.append(StageStatus(spec.key, kind, rec["job_id"] if rec else None, st.state if st else None,
                                st.elapsed if st else None, log, st.reason if st else None))
    return rows


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of a log (reads at most the last 64 KiB)."""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 65536))
        return f.read().decode(errors="replace").splitlines()[-lines:]


def status(cfg: ExperimentConfig) -> int:
    """Print the status table (and log tails of failed jobs); 0 when every stage is complete, else 1."""
    from rich.console import Console
    from rich.table import Table

    rows = collect_status(cfg)
    console = Console(width=None if sys.stdout.isatty() else 200, highlight=False)
    table = Table(title=f"{cfg.experiment}: {Store(cfg.store).root}")
    for col in ("stage", "store", "job", "slurm state", "elapsed", "log (failed jobs)"):
        table.add_column(col, overflow="fold")
    colours = {"complete": "green", "partial": "yellow", "missing": "red"}
    for r in rows:
        state = (r.state or "-") + (f" ({r.reason})" if r.reason and r.state != "RUNNING" else "")
        log = str(r.log) if r.failed and r.log and r.log.is_file() else ""
        table.add_row(r.key, f"[{colours[r.store]}]{r.store}[/]", r.job_id or "-", state, _hms(r.elapsed),
                      log)
    console.print(table)
    for r in rows:
        if r.failed and r.log and r.log.is_file():
            console.print(f"[bold red]{r.key}[/] failed (job {r.job_id}, {r.state}); last lines of {r.log}:")
            for line in log_tail(r.log):
                console.print("  " + line, markup=False)
    submissions = load_jobs(cfg)["submissions"]
    other = sorted(set(submissions[-1]["jobs"]) - {r.key for r in rows}) if submissions else []
    if other:  # the jobs run their frozen stages; this config/code builds different ones
        console.print(f"note: {len(other)} job(s) of the last submission run stages this config and code no "
                      f"longer build ({', '.join(other)}); `propensity run` submits the current graph")
    done = sum(r.store == "complete" for r in rows)
    console.print(f"{done}/{len(rows)} stages complete")
    return 0 if done == len(rows) else 1


def wait_experiment(cfg: ExperimentConfig, timeout: float, poll: float = 1.0) -> dict[str, JobState]:
    """Block until every recorded job of the experiment is finished; return ``{stage key: state}``.

    Raises :class:`slurm.SlurmTimeoutError` after ``timeout`` seconds.
    """
    records = load_jobs(cfg)["jobs"]
    by_id = {str(r["job_id"]): key for key, r in records.items()}
    states = slurm_wait(list(by_id), timeout, poll=poll)
    return {by_id[i]: s for i, s in states.items()}


def cancel(cfg: ExperimentConfig) -> int:
    """Cancel the experiment's recorded jobs that are still pending or running; return 0."""
    records = load_jobs(cfg)["jobs"]
    states = _states(records, list(records))
    live = sorted({s.job_id for s in states.values() if _is_active(s)}, key=lambda i: (len(i), i))
    scancel(live)
    print(f"cancelled {len(live)} job(s) of {cfg.experiment}" + (f": {' '.join(live)}" if live else ""))
    return 0


# ---- inside a job ---------------------------------------------------------------------------------------
def run_stage(graph_path: Path, key: str, *, show_progress: bool = False) -> Path:
    """Run stage ``key`` exactly as frozen in ``graph_path`` (what every batch job does); return its folder.

    Prints one line per attempt to stdout (the job log), with Slurm's restart count, so that a requeued job's
    appended log shows each attempt; the stage's own output goes to ``stage.log`` in its folder.
    """
    data, specs = load_graph(graph_path)
    if key not in specs:
        raise SlurmError(f"stage {key!r} is not in graph file {graph_path} (stages: {', '.join(specs)})")
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    print(f"stage {key}: attempt {int(restarts) + 1 if restarts.isdigit() else restarts} "
          f"(job {os.environ.get('SLURM_JOB_ID', '-')} on {socket.gethostname()})", flush=True)
    folder = Store(data["store"]).run(specs[key], workers=int(data["workers"]), show_progress=show_progress)
    print(f"stage {key}: complete in {folder}", flush=True)
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m propensity.slurm_exec stage GRAPH KEY``: the command of every batch job."""
    parser = argparse.ArgumentParser(prog="python -m propensity.slurm_exec",
                                     description="Run one stage of a submitted graph (what Slurm jobs call).")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("stage", help="run one stage as frozen in a graph file written at submission")
    p.add_argument("graph", type=Path, help="<store>/slurm/<experiment>/graphs/graph-<hash>.json")
    p.add_argument("key", help="the stage key <stage>/<name>-<hash>")
    p.add_argument("--progress", action="store_true", help="show progress bars (off in batch logs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    for noisy in ("datatrove", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        run_stage(args.graph, args.key, show_progress=args.progress)
    except PropensityError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
