"""The command line around the Slurm executor: the follow-up status command, cancelled jobs in `status`,
dry runs that register nothing, and `propensity slurm down|status` finding the cluster $SLURM_CONF names."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from core.store import Store
from propensity.cli import main
from propensity.config import load_config
from propensity.slurm_exec import experiment, write_config
from propensity.store_admin import usage
from slurm import graph_status
from slurm.cli import main as slurm_cli
from slurm.cluster import LocalCluster
from slurm.graph_status import EXIT_CANCELLED, EXIT_FAILED, EXIT_INCOMPLETE, PartStatus, StageStatus, exit_code

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.yaml"
HOLD = "executor.slurm={default: {extra_sbatch: ['--hold']}}"
"""Jobs that stay pending until cancelled (the local node would run them)."""


def _row(key: str, state: str | None, store: str = "missing", **kw: object) -> StageStatus:
    return StageStatus(key, store, "12" if state else None, state, None, kw.pop("log", None), **kw)  # type: ignore[arg-type]


def test_status_tells_cancelled_jobs_from_failed_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "12.out"
    log.write_text("stage started\n")  # cancelled while running: the job has a log
    cancelled = [_row("score/a-1", "CANCELLED", "partial", log=log),
                 _row("train/a-2", "CANCELLED", reason="DependencyNeverSatisfied"), _row("report/r-3", None)]
    exp = experiment(load_config(TINY, [f"store={tmp_path / 'store'}"]))
    monkeypatch.setattr(graph_status, "collect_status", lambda e: cancelled)
    assert graph_status.status(exp) == EXIT_CANCELLED == 4
    out = capsys.readouterr().out
    assert "failed (job" not in out and ", 0 failed" not in out  # it used to say `failed (job 12, CANCELLED)`
    assert ("cancelled (not failed): 2 stage(s), 1 of them because a job they waited for failed or was "
            "cancelled; `propensity run` submits them again") in out
    assert "0/3 stages complete, 2 cancelled" in out

    assert exit_code([_row("a", "PENDING"), _row("b", None), _row("c", "COMPLETED", "complete")]) == 1
    assert exit_code([*cancelled, _row("d", "FAILED", log=log)]) == EXIT_FAILED == 3
    part_failed = _row("e", "CANCELLED", parts=[PartStatus(0, "COMPLETED"), PartStatus(1, "FAILED")])
    assert exit_code([*cancelled, part_failed]) == EXIT_FAILED
    done = _row("f", "CANCELLED", "complete")  # cancelled after it finished its work: complete counts
    assert exit_code([done, _row("g", "RUNNING")]) == EXIT_INCOMPLETE and exit_code([done]) == 0


def test_status_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["status", "--help"])
    out = capsys.readouterr().out
    for line in ("0  every stage is complete", "1  not complete", "3  a job (or array part)",
                 "4  no job failed, but some were cancelled"):
        assert line in out


def test_dry_run_registers_nothing_that_store_gc_keeps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    assert main(["run", str(TINY), "--executor", "slurm", "--dry-run", "--set", f"store={store}"]) == 0
    assert not (store / "experiments").exists()
    assert usage(store) == {}  # gc protects nothing of a run that was never submitted
    folder = next((store / "slurm" / "tiny").glob("dry-run-*"))
    cfg = load_config(TINY, [f"store={store}"])
    cfg.executor.kind = "slurm"
    registered = write_config(cfg)  # where a real run puts it, and what submit.sh copies there
    assert (folder / "config.yaml").read_text() == registered.read_text()
    assert f"cp config.yaml {shlex.quote(str(registered))}" in (folder / "submit.sh").read_text()
    assert f"submit.sh copies it to {registered}" in capsys.readouterr().out


# ---- on the local cluster ------------------------------------------------------------------------------
@pytest.mark.slurm
def test_follow_up_command_keeps_the_overrides_and_cancelled_jobs_read_cancelled(
        slurm_cluster: LocalCluster, slurm_workdir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    store = slurm_workdir / "store dir"  # a space: the printed command must quote it
    args = [str(TINY), "--set", f"store={store}", "--set", HOLD]
    assert main(["run", *args, "--executor", "slurm", "--workers", "1"]) == 0
    follow = capsys.readouterr().out.split("follow with: ", 1)[1].strip()
    assert follow == shlex.join(["propensity", "status", *args, "--set", "executor.workers=1"])
    pasted = shlex.split(follow)[1:]
    try:
        assert main(pasted) == EXIT_INCOMPLETE  # the submitted jobs, pending (held)
        out = capsys.readouterr().out
        assert "PENDING (JobHeldUser)" in out and "0/17 stages complete" in out
    finally:
        assert main(["cancel", *pasted[1:]]) == 0
    capsys.readouterr()
    assert main(pasted) == EXIT_CANCELLED
    out = capsys.readouterr().out
    assert "(JobHeldUser)" not in out and "failed (job" not in out and "CANCELLED" in out
    assert "0/17 stages complete, 17 cancelled" in out


@pytest.mark.slurm
def test_submit_sh_of_a_dry_run_registers_the_config(slurm_cluster: LocalCluster, slurm_workdir: Path) -> None:
    store = slurm_workdir / "store"
    assert main(["run", str(TINY), "--executor", "slurm", "--dry-run", "--set", f"store={store}",
                 "--set", HOLD]) == 0
    assert not (store / "experiments").exists()
    submit_sh = next((store / "slurm" / "tiny").glob("dry-run-*/submit.sh"))
    proc = subprocess.run([str(submit_sh)], env={**os.environ, **slurm_cluster.env()}, capture_output=True,
                          text=True, check=True)
    ids = [line.rsplit(" ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("submitted")]
    subprocess.run(["scancel", *ids], env={**os.environ, **slurm_cluster.env()}, check=True)
    assert len(ids) == 17
    registered = list((store / "experiments").iterdir())
    assert len(registered) == 1 and registered[0].read_text() == (submit_sh.parent / "config.yaml").read_text()
    assert {u for users in usage(Store(store).root).values() for u in users} == {f"submitted:{registered[0].stem}"}


@pytest.mark.slurm
def test_down_and_status_find_the_cluster_slurm_conf_points_at(
        slurm_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(tempfile.mkdtemp(prefix="pslurm-", dir="/tmp"))  # short: unix socket paths are <= 107 bytes
    root.chmod(0o755)
    cluster = LocalCluster(root / "c", cpus=2)
    monkeypatch.delenv("PROPENSITY_SLURM_ROOT", raising=False)
    monkeypatch.setattr("slurm.cli.DEFAULT_ROOT", root / "default")  # never the machine's real default
    try:
        assert slurm_cli(["up", "--root", str(cluster.root)]) == 0
        assert f"export SLURM_CONF={cluster.conf}" in capsys.readouterr().out
        monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
        assert slurm_cli(["status"]) == 0
        assert f"under {cluster.root} (from $SLURM_CONF) is up" in capsys.readouterr().out
        nothing = root / "nothing"
        assert slurm_cli(["down", "--root", str(nothing)]) == 1  # not running there; the other one is named
        err = capsys.readouterr().err
        assert f"no local slurm cluster runs under {nothing}, nothing stopped" in err
        assert f"propensity slurm down --root {cluster.root}" in err
        assert cluster.is_up()
        assert slurm_cli(["down"]) == 0
        assert f"local slurm cluster under {cluster.root} (from $SLURM_CONF) stopped" in capsys.readouterr().out
        assert not cluster.running()
        assert slurm_cli(["down"]) == 0  # idempotent, and says so
        out = capsys.readouterr().out
        assert "nothing to stop" in out and "stopped" not in out
        monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))  # a cluster not under a root we name...
        assert LocalCluster.from_conf(slurm_cluster.conf) is not None
        monkeypatch.setenv("SLURM_CONF", str(root / "site-slurm.conf"))  # ...and one that is not ours
        (root / "site-slurm.conf").write_text("ClusterName=site\n")
        assert slurm_cli(["status"]) == 1
        assert f"under {root / 'default'} is down" in capsys.readouterr().out
    finally:
        cluster.down()
        shutil.rmtree(root, ignore_errors=True)
