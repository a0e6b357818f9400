"""Data stages as job arrays on the local cluster: same bytes and counts as the local executor, at most
``array_throttle`` parts at once, a killed part rerun alone, per-part states in ``propensity status``, and
requests the cluster cannot meet refused before anything is submitted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.store import Store
from propensity.slurm_exec import experiment, run_slurm, status, write_config
from slurm.cluster import LocalCluster
from slurm.graph import load_jobs
from slurm.graph_status import collect_status, wait_experiment
from slurm.submit import array_states
from tests.slurm.test_slurm_arrays import artifact_files, counts, tiny_cfg

TIMEOUT = 900.0
ARRAYS = ("{default: {cpus: 1}, score: {array_tasks: 4, array_throttle: 2},"
          " variant: {array_tasks: 4, array_throttle: 2}, tokenize: {array_tasks: 4, array_throttle: 2}")
ONE_VARIANT = "variants=[{name: filtered, kind: filter, threshold: 0.5}]"
DATA = ("source", "classifier", "tokenizer", "score", "variant", "tokenize")


def data_cfg(store: Path, slurm: str = ARRAYS + "}"):  # noqa: ANN201 - ExperimentConfig
    cfg = tiny_cfg(store, ONE_VARIANT, f"executor.slurm={slurm}")
    cfg.executor.kind = "slurm"
    return cfg


def data_experiment(cfg):  # noqa: ANN001, ANN201 - the data stages only (no training): what these tests need
    exp = experiment(cfg, write_config(cfg))
    exp.specs = [s for s in exp.specs if s.stage in DATA]
    return exp


def submit_data(cfg) -> None:  # noqa: ANN001
    from slurm.graph import submit

    assert submit(data_experiment(cfg)) == 0


def wait_all(cfg, watch: dict[str, int] | None = None) -> dict:  # noqa: ANN001
    """Wait for the stages' finishing jobs; with ``watch``, record the most parts running at once per array."""
    exp = data_experiment(cfg)
    records = load_jobs(exp)["jobs"]
    arrays = {k: str(r["array"]["job_id"]) for k, r in records.items() if r.get("array")}
    deadline = time.monotonic() + TIMEOUT
    while watch is not None and time.monotonic() < deadline:
        states = {k: array_states(i) for k, i in arrays.items()}
        for k, by_task in states.items():
            watch[k] = max(watch.get(k, 0), sum(s.state == "RUNNING" for s in by_task.values()))
        if all(s.done for by_task in states.values() for s in by_task.values()):
            break
        time.sleep(0.2)
    return wait_experiment(exp, TIMEOUT, poll=0.5)


@pytest.fixture(scope="module")
def stores(slurm_cluster: LocalCluster) -> dict[str, Path]:
    """The data stages run locally (``local``) and as arrays on the cluster (``slurm``)."""
    base = slurm_cluster.root.parent / "arrays"
    base.mkdir()
    local = Store(base / "local")
    for spec in data_experiment(data_cfg(base / "local")).specs:
        local.run(spec, show_progress=False)
    shutil.copytree(base / "local", base / "slurm",
                    ignore=lambda d, names: [n for n in names if n in ("score", "variant", "tokenize")])
    watch: dict[str, int] = {}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in slurm_cluster.env().items():
            mp.setenv(key, value)
        cfg = data_cfg(base / "slurm")
        submit_data(cfg)
        states = wait_all(cfg, watch)
    assert {s.state for s in states.values()} == {"COMPLETED"}, states
    return {"base": base, "local": base / "local", "slurm": base / "slurm", "watch": watch}  # type: ignore


@pytest.mark.slurm
@pytest.mark.slow
def test_arrays_give_the_local_bytes_and_counts(stores: dict, slurm_cluster: LocalCluster) -> None:
    cfg = data_cfg(stores["slurm"])
    exp = data_experiment(cfg)
    records = load_jobs(exp)["jobs"]
    data = [s for s in exp.specs if s.stage in ("score", "variant", "tokenize")]
    assert sorted(records) == sorted(s.key for s in data)  # upstream stages were complete: not submitted
    for spec in data:
        assert records[spec.key]["array"]["spec"] == "0-3%2"
        assert 1 <= stores["watch"][spec.key] <= 2, stores["watch"]  # at most 2 parts at once
        a, b = Store(stores["local"]).manifest(spec), Store(stores["slurm"]).manifest(spec)
        assert counts(a["result"]) == counts(b["result"])
        assert b["usage"]["parts"] == 4
        assert artifact_files(Store(stores["local"]).path(spec.key)) == artifact_files(
            Store(stores["slurm"]).path(spec.key)), spec.key


@pytest.mark.slurm
@pytest.mark.slow
def test_a_killed_part_is_rerun_alone(stores: dict, slurm_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in slurm_cluster.env().items():
        monkeypatch.setenv(key, value)
    base = stores["base"] / "killed"
    shutil.copytree(stores["slurm"], base, ignore=shutil.ignore_patterns("slurm", "experiments", "*.lock"))
    # tokenize parts sleep first, so that part 1 is surely running when it is killed
    cfg = data_cfg(base, ARRAYS + ", tokenize: {array_tasks: 4, array_throttle: 2, setup: ['sleep 3']}}")
    exp = data_experiment(cfg)
    tokenize = next(s for s in exp.specs if s.stage == "tokenize")
    shutil.rmtree(Store(base).path(tokenize.key))
    submit_data(cfg)
    array_id = str(load_jobs(exp)["jobs"][tokenize.key]["array"]["job_id"])
    deadline = time.monotonic() + 120
    while array_states(array_id).get(1) is None or array_states(array_id)[1].state != "RUNNING":
        assert time.monotonic() < deadline, array_states(array_id)
        time.sleep(0.1)
    subprocess.run(["scancel", "--signal=KILL", "--full", f"{array_id}_1"], check=True, env=os.environ)
    assert wait_all(cfg, {})[tokenize.key].state == "CANCELLED"  # the finishing job: dependency never met
    parts = {p.index: p.state for p in next(r for r in collect_status(exp) if r.key == tokenize.key).parts}
    assert parts[1] in ("FAILED", "CANCELLED") and {parts[i] for i in (0, 2, 3)} == {"COMPLETED"}, parts
    assert status(cfg) == (3 if parts[1] == "FAILED" else 4)  # a failed part, else a cancelled one
    out = capsys.readouterr().out
    assert f"{tokenize.key}: parts 0 COMPLETED" in out and f"1 {parts[1]}" in out
    work = Store(base).path(tokenize.key).with_name(Store(base).path(tokenize.key).name + ".partial")
    before = {p.name: p.stat().st_mtime for p in (work / "usage").glob("part-*.json")}
    assert sorted(before) == ["part-0.json", "part-2.json", "part-3.json"]

    submit_data(cfg)  # only the killed part and the finishing job
    record = load_jobs(exp)["jobs"][tokenize.key]
    assert record["array"]["spec"] == "1%2"
    assert {s.state for s in wait_all(cfg, {}).values()} == {"COMPLETED"}
    assert {p.name: p.stat().st_mtime for p in (Store(base).path(tokenize.key) / "usage").glob("part-*.json")
            if p.name in before} == before  # finished parts were not rerun
    local = Store(stores["local"])
    assert artifact_files(local.path(tokenize.key)) == artifact_files(Store(base).path(tokenize.key))
    assert counts(local.manifest(tokenize)["result"]) == counts(Store(base).manifest(tokenize)["result"])
    assert json.loads((Store(base).path(tokenize.key) / "manifest.json").read_text())["usage"]["parts"] == 4


@pytest.mark.slurm
def test_requests_the_cluster_cannot_meet_fail_before_submission(slurm_cluster: LocalCluster, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in slurm_cluster.env().items():
        monkeypatch.setenv(key, value)
    store = slurm_cluster.root.parent / "refused"
    big = data_cfg(store, "{score: {array_tasks: 5000}}")
    with pytest.raises(ConfigError, match=r"executor\.slurm\.score\.array_tasks: 5000 tasks .* MaxArraySize is 1001"):
        run_slurm(big)
    gpu = data_cfg(store, "{score: {gpus: 1}}")
    with pytest.raises(ConfigError, match=r"executor\.slurm\.score\.gpus: 1 GPU\(s\) per node asked, but no node"):
        run_slurm(gpu)
    assert not (Store(store).root / "slurm" / "tiny" / "jobs.json").exists()
