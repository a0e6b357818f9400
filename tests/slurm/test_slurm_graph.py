"""The whole experiment graph on Slurm: job construction, dry runs, status, and end-to-end runs on the local
one-node cluster (same results as the local executor, failure + rerun, requeue + resume)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.store import Store
from propensity.config import ExperimentConfig, load_config
from propensity.graph import build_graph
from propensity.slurm_exec import cancel, experiment, run_slurm, stage_resources, status, write_config
from slurm import SlurmError, graph_status
from slurm import graph as sgraph
from slurm import wait as slurm_wait
from slurm.cluster import LocalCluster
from slurm.graph import load_graph
from slurm.graph_status import log_tail
from slurm.jobs import render_sbatch
from slurm.stage_job import run_stage
from slurm.submit import job_states

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.yaml"
E2E_TIMEOUT = 3600.0
"""Seconds to wait for a graph of jobs: evaluation alone took 10+ minutes per model on the shared 2-core CI
machine while other jobs ran."""


def tiny(store: Path, *overrides: str) -> ExperimentConfig:
    """configs/tiny.yaml with its store in ``store``, run on Slurm."""
    cfg = load_config(TINY, [f"store={store}", *overrides])
    cfg.executor.kind = "slurm"
    return cfg


def _slurm_cfg(tmp_path: Path, slurm: str) -> ExperimentConfig:
    return tiny(tmp_path / "store", f"executor.slurm={slurm}")


# the executor (slurm.graph) takes an Experiment; these build it from a config as `propensity` does
def jobs_file(cfg: ExperimentConfig) -> Path:
    return experiment(cfg).jobs_file


def load_jobs(cfg: ExperimentConfig) -> dict:
    return sgraph.load_jobs(experiment(cfg))


def collect_status(cfg: ExperimentConfig) -> list[graph_status.StageStatus]:
    return graph_status.collect_status(experiment(cfg))


def wait_experiment(cfg: ExperimentConfig, timeout: float, poll: float = 1.0) -> dict:
    return graph_status.wait_experiment(experiment(cfg), timeout, poll)


def write_graph(cfg: ExperimentConfig, specs: list, config_path: Path) -> Path:
    exp = experiment(cfg, config_path)
    exp.specs = specs
    return sgraph.write_graph(exp)


def make_job(cfg: ExperimentConfig, spec, path: Path, deps: list[str]):  # noqa: ANN001, ANN201
    return sgraph.make_job(experiment(cfg), spec, path, deps)


def plan_submission(cfg: ExperimentConfig, config_path: Path, *, query: bool = True) -> sgraph.Submission:
    return sgraph.plan_submission(experiment(cfg, config_path), query=query)


# ---- job construction (no cluster) ---------------------------------------------------------------------
def test_resources_merge_default_and_stage(tmp_path: Path) -> None:
    cfg = _slurm_cfg(tmp_path, "{default: {partition: cpu, account: lab, cpus: 4, setup: ['module load x']},"
                               " train: {partition: gpu, gpus: 2, time: '2-00:00:00'}}")
    train, score = stage_resources(cfg, "train"), stage_resources(cfg, "score")
    assert (train.partition, train.account, train.cpus, train.gpus, train.time, train.setup) == (
        "gpu", "lab", 4, 2, "2-00:00:00", ["module load x"])
    assert (score.partition, score.account, score.cpus, score.gpus, score.time) == (
        "cpu", "lab", 4, 0, "04:00:00")


def test_unknown_resource_key_names_the_allowed_ones(tmp_path: Path) -> None:
    cfg = _slurm_cfg(tmp_path, "{trian: {gpus: 1}}")
    with pytest.raises(ConfigError,
                       match=r"executor\.slurm\.trian: unknown stage kind\. did you mean 'train'\?"):
        stage_resources(cfg, "train")


def test_train_job_requeues_and_signals_other_jobs_do_not(tmp_path: Path) -> None:
    cfg = _slurm_cfg(tmp_path, "{default: {setup: ['source /opt/venv/bin/activate']}}")
    specs = build_graph(cfg)
    path = write_graph(cfg, specs, write_config(cfg))
    train = next(s for s in specs if s.stage == "train")
    score = next(s for s in specs if s.stage == "score")
    tjob = make_job(cfg, train, path, [train.inputs["tokenize"].key])
    script = render_sbatch(tjob)
    for line in ("--requeue", "--open-mode=append", "--signal=B:USR1@60", "--time=04:00:00",
                 "--cpus-per-task=2"):
        assert f'#SBATCH "{line}"' in script
    assert "trap '" in script and 'scontrol requeue "$SLURM_JOB_ID"' in script
    assert f"{sys.executable} -m slurm.stage_job stage {path} {train.key} &" in script
    assert "source /opt/venv/bin/activate" in script
    assert tjob.dependencies == (f"tiny:{train.inputs['tokenize'].key}",)
    sjob = render_sbatch(make_job(cfg, score, path, []))
    assert "--requeue" not in sjob and "--signal" not in sjob and "trap" not in sjob
    assert sjob.rstrip().splitlines()[-1].startswith("exec ")
    assert sjob.rstrip().endswith(f"stage {path} {score.key}")


def test_multinode_gpu_training_renders_srun_torchrun(tmp_path: Path) -> None:
    cfg = _slurm_cfg(tmp_path, "{train: {nodes: 2, gpus: 4, partition: gpu}}")
    specs = build_graph(cfg)
    train = next(s for s in specs if s.stage == "train")
    script = render_sbatch(make_job(cfg, train, write_config(cfg), []))
    assert '#SBATCH "--nodes=2"' in script and '#SBATCH "--gres=gpu:4"' in script
    assert 'first_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in script
    launch = next(line for line in script.splitlines() if line.startswith("srun "))
    assert "--ntasks-per-node=1" in launch and "--nproc_per_node 4" in launch
    assert '--nnodes "$SLURM_NNODES"' in launch and "--rdzv_backend c10d" in launch
    assert '--rdzv_endpoint "$first_node:29500"' in launch
    assert f"--no-python {sys.executable} -m slurm.stage_job stage " in launch
    assert launch.endswith(f"{train.key} &")
    eval_spec = next(s for s in specs if s.stage == "eval")  # only train stages go through torchrun
    assert "torchrun" not in render_sbatch(make_job(cfg, eval_spec, write_config(cfg), []))


def test_single_gpu_training_also_uses_torchrun(tmp_path: Path) -> None:
    cfg = _slurm_cfg(tmp_path, "{train: {gpus: 1}}")
    train = next(s for s in build_graph(cfg) if s.stage == "train")
    script = render_sbatch(make_job(cfg, train, write_config(cfg), []))
    assert "--nproc_per_node 1" in script and "--gres=gpu:1" in script


def test_written_config_round_trips_and_is_content_addressed(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "store")
    path = write_config(cfg)
    assert path.parent == (tmp_path / "store" / "experiments").resolve()
    assert path.name.startswith("tiny-") and path.suffix == ".yaml"
    assert write_config(cfg) == path
    again = load_config(path)
    assert again.model_dump() == cfg.model_dump() | {"store": str((tmp_path / "store").resolve())}
    assert [s.key for s in build_graph(again)] == [s.key for s in build_graph(cfg)]
    other = write_config(tiny(tmp_path / "store", "train.tokens=40000"))
    assert other != path and other.parent == path.parent
    assert not list(path.parent.glob("*.tmp"))


def test_graph_file_rebuilds_every_stage_with_its_key(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "store")
    specs = build_graph(cfg)
    path = write_graph(cfg, specs, write_config(cfg))
    assert write_graph(cfg, specs, write_config(cfg)) == path  # content-addressed
    header, frozen = load_graph(path)
    assert list(frozen) == [s.key for s in specs]
    assert header["store"] == str(Store(cfg.store).root) and header["workers"] == cfg.executor.workers
    for spec in specs:
        again = frozen[spec.key]
        assert (again.impl, again.config, again.seed, again.threads) == (spec.impl, spec.config, spec.seed,
                                                                          spec.threads)
        assert {r: i.key for r, i in again.inputs.items()} == {r: i.key for r, i in spec.inputs.items()}


def test_graph_file_that_does_not_hash_to_its_keys_is_refused(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "store")
    path = write_graph(cfg, build_graph(cfg), write_config(cfg))
    data = json.loads(path.read_text())
    train = next(r for r in data["stages"] if r["stage"] == "train")
    train["config"]["tokens"] += 1  # an edited file: the record no longer hashes to its key
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    with pytest.raises(SlurmError, match=rf"stage {train['key']} rebuilds as train/"):
        load_graph(edited)
    with pytest.raises(SlurmError, match="unreadable or not a propensity graph"):
        load_graph(tmp_path / "missing.json")


def test_frozen_graph_keeps_the_submitted_keys_when_the_config_changes(tmp_path: Path) -> None:
    """What failed before: a job rebuilt the graph when it started, so an edit made while it was queued
    changed the keys and the job found no stage. The graph frozen at submission does not change."""
    cfg = tiny(tmp_path / "store")
    keys = [s.key for s in build_graph(cfg)]
    plan = plan_submission(cfg, write_config(cfg), query=False)
    assert {job.command[-1] for job in plan.jobs} == set(keys)
    assert all(job.command[-2] == str(plan.graph) for job in plan.jobs)
    changed = [s.key for s in build_graph(tiny(tmp_path / "store", "source.synthetic.seed=1"))]
    assert not set(changed) & set(keys)  # every key moved...
    assert list(load_graph(plan.graph)[1]) == keys  # ...but the jobs still find theirs


def _echo_stage(ctx) -> dict:  # noqa: ANN001 - a stage implementation (StageContext -> dict)
    """A real stage implementation, small enough for a unit test: copies its input's text and adds its own."""
    text = (ctx.inputs["up"] / "text.txt").read_text() if "up" in ctx.inputs else ""
    (ctx.out / "text.txt").write_text(text + ctx.config["word"])
    return {"chars": len(text) + len(ctx.config["word"]), "workers": ctx.workers}


def test_run_stage_runs_a_frozen_stage_on_its_inputs(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from core.store import StageSpec

    cfg = tiny(tmp_path / "store", "executor.workers=3")
    first = StageSpec("source", "a", f"{__name__}:_echo_stage", {"word": "one "})
    second = StageSpec("report", "b", f"{__name__}:_echo_stage", {"word": "two"}, {"up": first})
    graph = write_graph(cfg, [first, second], write_config(cfg))
    store = Store(cfg.store)
    with pytest.raises(Exception, match=r"inputs not complete"):
        run_stage(graph, second.key)
    assert run_stage(graph, first.key) == store.path(first.key)
    assert run_stage(graph, second.key) == store.path(second.key)
    assert (store.path(second.key) / "text.txt").read_text() == "one two"
    assert store.manifest(second)["result"] == {"chars": 7, "workers": 3}
    out = capsys.readouterr().out
    assert f"stage {second.key}: attempt 1 (job " in out and f"stage {second.key}: complete in " in out
    with pytest.raises(SlurmError, match="is not in graph file"):
        run_stage(graph, "report/b-000000000000")


def test_stage_entry_point_reports_errors_with_exit_code_2(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "store")
    plan = plan_submission(cfg, write_config(cfg), query=False)
    proc = subprocess.run([sys.executable, "-m", "slurm.stage_job", "stage", str(plan.graph),
                           "train/nope-000000000000"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert "error: stage 'train/nope-000000000000' is not in graph file" in proc.stderr


def test_dry_run_writes_every_stage_and_skips_complete_ones(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tiny(tmp_path / "store")
    specs = build_graph(cfg)
    store = Store(cfg.store)
    source = store.path(specs[0].key)
    source.mkdir(parents=True)
    (source / ".complete").write_text(specs[0].key)  # pretend the source stage finished
    assert run_slurm(cfg, dry_run=True) == 0
    out = capsys.readouterr().out
    assert f"dry run: {len(specs) - 1} job script(s) written" in out and "1 stage(s) complete" in out
    folder = next((store.root / "slurm" / "tiny").glob("dry-run-*"))
    plan = json.loads((folder / "plan.json").read_text())
    assert [p["name"] for p in plan] == [f"tiny:{s.key}" for s in specs[1:]]
    by_name = {p["name"]: p for p in plan}
    for spec in specs[1:]:
        deps = sorted(f"tiny:{i.key}" for i in spec.inputs.values() if i.stage != "source")
        assert sorted(by_name[f"tiny:{spec.key}"]["dependencies"]) == deps
    assert len(list(folder.glob("*.sbatch"))) == len(specs) - 1
    assert not jobs_file(cfg).exists()


def test_status_without_submissions_lists_every_stage_missing(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tiny(tmp_path / "store")
    rows = collect_status(cfg)
    assert [r.key for r in rows] == [s.key for s in build_graph(cfg)]
    assert {(r.store, r.job_id, r.state) for r in rows} == {("missing", None, None)}
    assert status(cfg) == 1
    out = capsys.readouterr().out
    assert f"0/{len(rows)} stages complete" in out and rows[-1].key in out


def test_status_names_submitted_stages_the_current_config_no_longer_builds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = tiny(tmp_path / "store")
    old_key = build_graph(old)[0].key
    jobs_file(old).parent.mkdir(parents=True)
    record = {old_key: {"job_id": "7", "log": str(tmp_path / "x.out")}}
    jobs_file(old).write_text(json.dumps({"experiment": "tiny", "submissions": [{"jobs": {old_key: "7"}}],
                                          "jobs": record}))
    new = tiny(tmp_path / "store", "source.synthetic.seed=1")
    assert status(new) == 1
    out = capsys.readouterr().out
    assert ("note: 1 job(s) of the last submission run stages this config and code no longer build "
            f"({old_key})") in out
    assert status(old) == 1 and "note:" not in capsys.readouterr().out


def test_log_tail_reads_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.out"
    log.write_text("".join(f"line {i}\n" for i in range(5000)))
    assert log_tail(log, 3) == ["line 4997", "line 4998", "line 4999"]


# ---- on the local cluster ------------------------------------------------------------------------------
@pytest.fixture()
def slurm_env(slurm_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> LocalCluster:
    """Point sbatch/squeue (and the jobs, which inherit the environment) at the session cluster."""
    for key, value in slurm_cluster.env().items():
        monkeypatch.setenv(key, value)
    return slurm_cluster


def _job_count(cluster: LocalCluster) -> int:
    proc = subprocess.run(["scontrol", "show", "job", "-o"], env={**os.environ, **cluster.env()},
                          capture_output=True, text=True, check=True)
    return sum(line.startswith("JobId=") for line in proc.stdout.splitlines())


@pytest.mark.slurm
def test_dry_run_submits_nothing(slurm_env: LocalCluster, slurm_workdir: Path) -> None:
    before = _job_count(slurm_env)
    cfg = tiny(slurm_workdir / "store")
    assert run_slurm(cfg, dry_run=True) == 0
    time.sleep(1.0)
    assert _job_count(slurm_env) == before
    assert not jobs_file(cfg).exists()
    scripts = list((Store(cfg.store).root / "slurm" / "tiny").glob("dry-run-*/*.sbatch"))
    assert len(scripts) == len(build_graph(cfg))


@pytest.mark.slurm
def test_second_run_does_not_double_submit_pending_jobs(slurm_env: LocalCluster, slurm_workdir: Path) -> None:
    # a partition that does not exist on this node would fail at submit: hold the jobs instead
    cfg = tiny(slurm_workdir / "store", "executor.slurm={default: {extra_sbatch: ['--hold']}}")
    assert run_slurm(cfg) == 0
    first = {k: r["job_id"] for k, r in load_jobs(cfg)["jobs"].items()}
    assert len(first) == len(build_graph(cfg))
    plan = plan_submission(cfg, write_config(cfg))
    assert plan.jobs == [] and plan.active == first
    assert run_slurm(cfg) == 0
    data = load_jobs(cfg)
    assert {k: r["job_id"] for k, r in data["jobs"].items()} == first
    assert [len(s["jobs"]) for s in data["submissions"]] == [len(first), 0]
    assert cancel(cfg) == 0
    states = wait_experiment(cfg, 30, poll=0.3)
    assert {s.state for s in states.values()} == {"CANCELLED"}
    assert plan_submission(cfg, write_config(cfg)).active == {}


@pytest.mark.slurm
def test_usr1_near_time_limit_requeues_the_job(slurm_env: LocalCluster, slurm_workdir: Path) -> None:
    from slurm import JobSpec, job_states, submit_graph

    out = slurm_workdir / "runs.txt"
    job = JobSpec(name="self-requeue", requeue=True, requeue_before_timeout=60,
                  log_dir=slurm_workdir / "logs",
                  command=["bash", "-c", 'echo "run ${SLURM_RESTART_COUNT:-0}" >> "$1"; '
                           '[ "${SLURM_RESTART_COUNT:-0}" -ge 1 ] || sleep 60', "_", str(out)])
    job_id = submit_graph([job])["self-requeue"]
    deadline = time.monotonic() + 15
    while not out.exists():
        assert time.monotonic() < deadline, "job did not start"
        time.sleep(0.1)
    assert job_states([job_id])[job_id].state == "RUNNING"
    # what Slurm does at time limit - 60 s (--signal=B:USR1@60), delivered now
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True)
    state = slurm_wait([job_id], 40, poll=0.5)[job_id]
    assert (state.state, state.exit_code, state.restarts) == ("COMPLETED", 0, 1)
    assert out.read_text() == "run 0\nrun 1\n"
    log = (slurm_workdir / "logs" / f"self-requeue-{job_id}.out").read_text()
    assert f"USR1: time limit near, requeueing job {job_id}" in log


# ---- end to end: the tiny experiment on the local cluster ----------------------------------------------
@pytest.fixture(scope="module")
def e2e(slurm_cluster: LocalCluster) -> dict[str, Path]:
    """configs/tiny.yaml run twice: locally (store ``local``) and on the cluster (store ``slurm``)."""
    from propensity.runner import run_local

    base = slurm_cluster.root.parent / "e2e"
    base.mkdir()
    keys = [s.key for s in build_graph(tiny(base / "local"))]
    with pytest.MonkeyPatch.context() as mp:
        for key, value in slurm_cluster.env().items():
            mp.setenv(key, value)
        t0 = time.monotonic()
        local_report = run_local(tiny(base / "local"), show_progress=False)
        t1 = time.monotonic()
        cfg = tiny(base / "slurm")
        assert run_slurm(cfg) == 0
        submitted = load_jobs(cfg)["submissions"][-1]
        if sorted(submitted["jobs"]) != sorted(keys):  # not a bug of the executor: say what happened
            pytest.fail("the code changed while this test ran (the local run and the submission built "
                        f"different stage keys): {sorted(set(submitted['jobs']) ^ set(keys))}")
        states = wait_experiment(cfg, E2E_TIMEOUT, poll=0.5)
        t2 = time.monotonic()
    print(f"tiny: local executor {t1 - t0:.1f} s, slurm executor {t2 - t1:.1f} s")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(slurm_cluster.conf))
        failed = {r.key: (r.state, log_tail(r.log) if r.log and r.log.is_file() else None)
                  for r in collect_status(cfg) if r.key in states and states[r.key].state != "COMPLETED"}
    assert not failed, f"slurm jobs did not complete: {failed}"
    return {"base": base, "local": base / "local", "slurm": base / "slurm", "local_report": local_report,
            "graph": Path(submitted["graph"])}


def _results(report_dir: Path) -> dict:
    return json.loads((report_dir / "results.json").read_text())


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_run_matches_local_run(e2e: dict[str, Path], slurm_env: LocalCluster,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tiny(e2e["slurm"])
    specs = list(load_graph(e2e["graph"])[1].values())  # the graph the jobs ran
    assert [s.key for s in specs] == [s.key for s in build_graph(cfg)]
    report = Store(cfg.store).path(specs[-1].key)
    assert report.name == e2e["local_report"].name  # same stage keys in both stores
    assert _results(report) == _results(e2e["local_report"])
    jobs = load_jobs(cfg)["jobs"]
    for spec in specs:  # every stage ran as its own job, on its own inputs
        assert Store(cfg.store).manifest(spec)["key"] == spec.key
        assert f"stage {spec.key}: complete in " in Path(jobs[spec.key]["log"]).read_text()
    assert status(cfg) == 0
    out = capsys.readouterr().out
    assert f"{len(build_graph(cfg))}/{len(build_graph(cfg))} stages complete" in out
    assert out.count("COMPLETED") == len(build_graph(cfg))
    assert run_slurm(cfg) == 0  # nothing left to do
    assert "submitted 0 job(s); 17 stage(s) already complete" in capsys.readouterr().out


def _copy_store(src: Path, dst: Path) -> Path:
    """A copy of a finished store without its Slurm records (a new experiment history, same artifacts)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("slurm", "experiments", "*.lock"))
    return dst


def _manifest_stamps(store: Store, keys: list[str]) -> dict[str, tuple[float, str]]:
    return {k: ((store.path(k) / "manifest.json").stat().st_mtime,
                json.loads((store.path(k) / "manifest.json").read_text())["timings"]["started"])
            for k in keys}


@pytest.mark.slurm
@pytest.mark.slow
def test_failed_stage_cancels_dependents_and_rerun_redoes_only_the_rest(
        e2e: dict[str, Path], slurm_env: LocalCluster, capsys: pytest.CaptureFixture[str]) -> None:
    # the finished store minus everything downstream of the filtered variant; that variant's shards become
    # unreadable, so its tokenize job fails at run time (not at submit time, as a short budget would)
    cfg = tiny(_copy_store(e2e["slurm"], e2e["base"] / "fault"))
    store, specs = Store(cfg.store), build_graph(cfg)
    key = {f"{s.stage}/{s.name}": s.key for s in specs}
    redo = [key[k] for k in ("tokenize/filtered", "train/filtered-s0", "eval/filtered-s0",
                             "report/tiny")]
    for k in redo:
        shutil.rmtree(store.path(k))
    shards = store.path(key["variant/filtered"]) / "shards"
    shards.rename(shards.with_name("shards.moved"))
    assert run_slurm(cfg) == 0
    first = load_jobs(cfg)["jobs"]
    assert sorted(first) == sorted(redo)
    states = wait_experiment(cfg, E2E_TIMEOUT, poll=0.5)
    name = {v: k for k, v in key.items()}
    assert {name[k]: s.state for k, s in states.items()} == {
        "tokenize/filtered": "FAILED", "train/filtered-s0": "CANCELLED",
        "eval/filtered-s0": "CANCELLED", "report/tiny": "CANCELLED"}
    rows = {r.key: r for r in collect_status(cfg)}
    failed = rows[key["tokenize/filtered"]]
    assert failed.failed and failed.store == "partial" and failed.log is not None
    assert failed.log == Path(first[failed.key]["log"]) and failed.log.is_file()
    assert "input 'variant' has no shards/*.jsonl.gz" in failed.log.read_text()
    assert [r.store for r in rows.values()].count("complete") == len(specs) - len(redo)
    # cancelled before they started
    assert all(rows[k].elapsed is None for k in redo[1:]), [(rows[k], job_states([rows[k].job_id])) for k in redo]
    capsys.readouterr()
    assert status(cfg) == 3  # a job failed (its dependents' cancellations do not make it read as cancelled)
    out = capsys.readouterr().out
    assert f"{failed.key} failed (job {failed.job_id}, FAILED); last lines of {failed.log}" in out
    assert "CANCELLED (DependencyNeverSatisfied)" in out and f"failed (job {rows[redo[1]].job_id}" not in out

    # fix the cause and rerun: only the failed stage and what it feeds are submitted
    shards.with_name("shards.moved").rename(shards)
    done = [k for k, r in rows.items() if r.store == "complete"]
    before = _manifest_stamps(store, done)
    assert run_slurm(cfg) == 0
    assert sorted(load_jobs(cfg)["submissions"][-1]["jobs"]) == sorted(redo)
    states = wait_experiment(cfg, E2E_TIMEOUT, poll=0.5)
    assert {s.state for s in states.values()} == {"COMPLETED"}
    assert _manifest_stamps(store, done) == before  # finished stages were not redone
    assert _results(store.path(key["report/tiny"])) == _results(e2e["local_report"])
    assert status(cfg) == 0


REQUEUE_OVERRIDES = ("variants=[{name: baseline, kind: baseline}]", "model.preset=quickstart",
                     "train.tokens=163840", "train.allow_repeat=true", "train.checkpoint_every=20")
"""One variant (data stages reused from the e2e store), a model slow enough (~10 s) to requeue mid-run."""


def _wait_for_checkpoint(folder: Path, done: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = [int(p.stem.split("-")[1]) for p in folder.glob("step-*.pt")]
        if steps:
            return max(steps)
        if done.is_file():
            pytest.fail("training finished before it could be requeued: "
                        "raise train.tokens in REQUEUE_OVERRIDES")
        time.sleep(0.1)
    pytest.fail(f"no checkpoint in {folder} after {timeout:.0f} s")


@pytest.mark.slurm
@pytest.mark.slow
def test_requeued_train_job_resumes_from_its_checkpoint(e2e: dict[str, Path],
                                                        slurm_env: LocalCluster) -> None:
    cfg = tiny(_copy_store(e2e["slurm"], e2e["base"] / "requeue"), *REQUEUE_OVERRIDES)
    store = Store(cfg.store)
    train = next(s for s in build_graph(cfg) if s.stage == "train")
    assert run_slurm(cfg) == 0
    record = load_jobs(cfg)["jobs"][train.key]
    final = store.path(train.key)
    partial = final.with_name(final.name + ".partial")
    seen = _wait_for_checkpoint(partial / "checkpoints", final / ".complete", 600)
    subprocess.run(["scontrol", "requeue", record["job_id"]], check=True)  # what preemption does
    state = slurm_wait([record["job_id"]], E2E_TIMEOUT, poll=0.5)[record["job_id"]]
    assert (state.state, state.restarts) == ("COMPLETED", 1), Path(record["log"]).read_text()[-3000:]
    cancel(cfg)  # the eval and report of this model are not what this test is about
    assert {s.state for k, s in wait_experiment(cfg, 60, poll=0.3).items() if k != train.key} == {"CANCELLED"}
    result = store.manifest(train)["result"]
    steps = [json.loads(line)["step"] for line in (final / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == result["steps"] == 320  # resumed, not restarted
    assert seen >= 20
    log = Path(record["log"]).read_text()  # two attempts in one appended job log
    assert f"stage {train.key}: attempt 1 (job {record['job_id']}" in log, log[-2000:]
    assert f"stage {train.key}: attempt 2 (job {record['job_id']}" in log, log[-2000:]
    assert log.count(f"stage {train.key}: complete in {final}") == 1
    stage_log = (final / "stage.log").read_text()  # the trainer's own lines, both attempts
    assert stage_log.count("train: quickstart (") == 2, stage_log[-2000:]
    # the resumed model is the model an uninterrupted run produces
    straight = Store(e2e["local"]).run(train, workers=cfg.executor.workers, show_progress=False)
    assert Store(e2e["local"]).manifest(train)["result"]["final_loss"] == result["final_loss"]
    assert (straight / "model" / "model.safetensors").read_bytes() == (
        final / "model" / "model.safetensors").read_bytes()
