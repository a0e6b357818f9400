"""The Slurm layer against a real local cluster: injection, chains, failures, dry runs, requeue, CLI."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from core.errors import ConfigError
from slurm.cli import main as slurm_cli
from slurm.cluster import LocalCluster
from slurm.jobs import JobSpec
from slurm.submit import _from_jobcomp, cancel, job_states, submit_graph, wait

pytestmark = pytest.mark.slurm


def _all_job_lines(cluster: LocalCluster) -> list[str]:
    proc = subprocess.run(["scontrol", "show", "job", "-o"], env={**os.environ, **cluster.env()},
                          capture_output=True, text=True, check=True)
    return [line for line in proc.stdout.splitlines() if line.startswith("JobId=")]


def _append_job(name: str, out: Path, *deps: str, then: str = "", **kwargs: object) -> JobSpec:
    """A job that appends its name to ``out`` and then runs the shell snippet ``then``."""
    script = 'printf "%s\\n" "$1" >> "$2"; ' + (then or "true")
    return JobSpec(name=name, command=["bash", "-c", script, "_", name, str(out)], dependencies=deps,
                   log_dir=out.parent / "logs", **kwargs)  # type: ignore[arg-type]


def test_up_is_idempotent_and_reports_env(slurm_cluster: LocalCluster) -> None:
    assert slurm_cluster.is_up()
    assert slurm_cluster.up() == 0.0
    assert slurm_cluster.env() == {"SLURM_CONF": str(slurm_cluster.root / "slurm.conf")}
    conf = slurm_cluster.conf.read_text()
    for key in ("DependencyParameters=kill_invalid_depend", "MinJobAge=3600", "JobCompType=jobcomp/filetxt",
                "SlurmdParameters=config_overrides", "CPUs=4"):
        assert key in conf
    assert slurm_cluster.bringup_seconds < 20  # type: ignore[attr-defined]


def test_root_under_private_directory_is_refused(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match="not world-executable"):
        LocalCluster(private / "cluster").up()


def test_cli_status_up_and_export_line(slurm_cluster: LocalCluster,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    root = str(slurm_cluster.root)
    assert slurm_cli(["status", "--root", root]) == 0
    assert f"export SLURM_CONF={slurm_cluster.conf}" in capsys.readouterr().out
    assert slurm_cli(["up", "--root", root]) == 0
    assert "already up" in capsys.readouterr().out
    assert slurm_cli(["status", "--root", str(slurm_cluster.root.parent / "nothing-here")]) == 1


def test_hostile_names_do_not_inject_when_submitted(slurm_cluster: LocalCluster, slurm_workdir: Path) -> None:
    marker = slurm_workdir / "pwned"
    names = ["a b", "x'y", f"$(touch {marker})", f"`touch {marker}`", f"c; touch {marker} #"]
    out = slurm_workdir / "names.txt"
    jobs = [_append_job(n, out, env={"V": n}, setup=["echo " + n.replace("'", "")]) for n in names]
    ids = submit_graph(jobs, env=slurm_cluster.env())
    states = wait(ids.values(), 30, env=slurm_cluster.env(), poll=0.2)
    assert {s.state for s in states.values()} == {"COMPLETED"}
    assert sorted(out.read_text().splitlines()) == sorted(names)
    assert not marker.exists()
    ours = {f"JobId={i}" for i in ids.values()}
    names_in_slurm = [line.split(" JobName=", 1)[1].split(" UserId=")[0]
                      for line in _all_job_lines(slurm_cluster) if line.split()[0] in ours]
    assert sorted(names_in_slurm) == sorted(names)


def test_chain_runs_in_dependency_order(slurm_cluster: LocalCluster, slurm_workdir: Path) -> None:
    out = slurm_workdir / "chain.txt"
    jobs = [_append_job("third", out, "second"), _append_job("second", out, "first"),
            _append_job("first", out, then="sleep 1")]
    ids = submit_graph(jobs, env=slurm_cluster.env())
    assert list(ids) == ["first", "second", "third"]
    states = wait(ids.values(), 30, env=slurm_cluster.env(), poll=0.2)
    assert [(s.state, s.exit_code) for s in states.values()] == [("COMPLETED", 0)] * 3
    assert out.read_text() == "first\nsecond\nthird\n"
    elapsed = states[ids["first"]].elapsed
    assert elapsed is not None and elapsed >= 1
    assert (slurm_workdir / "logs").is_dir()


def test_failure_cancels_dependents(slurm_cluster: LocalCluster, slurm_workdir: Path) -> None:
    out = slurm_workdir / "fail.txt"
    jobs = [_append_job("breaks", out, then="exit 3"), _append_job("needs-it", out, "breaks"),
            _append_job("needs-that", out, "needs-it")]
    ids = submit_graph(jobs, env=slurm_cluster.env())
    states = wait(ids.values(), 30, env=slurm_cluster.env(), poll=0.2)
    got = {name: (states[i].state, states[i].exit_code) for name, i in ids.items()}
    assert got["breaks"] == ("FAILED", 3)
    assert got["needs-it"][0] == got["needs-that"][0] == "CANCELLED"
    assert out.read_text() == "breaks\n"
    # the jobcomp fallback (used once scontrol forgets the jobs) agrees
    comp = _from_jobcomp(list(ids.values()), slurm_cluster.env())
    assert [(comp[i].state, comp[i].source) for i in ids.values()] == [
        ("FAILED", "jobcomp"), ("CANCELLED", "jobcomp"), ("CANCELLED", "jobcomp")]
    assert comp[ids["breaks"]].exit_code == 3
    assert comp[ids["needs-it"]].elapsed is None and comp[ids["needs-that"]].elapsed is None  # never started


def test_dry_run_submits_nothing(slurm_cluster: LocalCluster, slurm_workdir: Path) -> None:
    before = _all_job_lines(slurm_cluster)
    out = slurm_workdir / "never.txt"
    jobs = [_append_job("a", out), _append_job("b", out, "a")]
    ids = submit_graph(jobs, dry_run_dir=slurm_workdir / "plan", env=slurm_cluster.env())
    time.sleep(1.5)
    assert _all_job_lines(slurm_cluster) == before
    assert set(ids.values()) == {"dry-run-00", "dry-run-01"}
    assert sorted(p.name for p in (slurm_workdir / "plan").glob("*.sbatch")) == ["00-a.sbatch", "01-b.sbatch"]
    assert not out.exists()


def test_cancel_stops_a_running_job(slurm_cluster: LocalCluster, slurm_workdir: Path) -> None:
    out = slurm_workdir / "cancel.txt"
    ids = submit_graph([_append_job("sleeper", out, then="sleep 60")], env=slurm_cluster.env())
    _wait_for(out.exists, 15)
    cancel(ids.values(), env=slurm_cluster.env())
    states = wait(ids.values(), 20, env=slurm_cluster.env(), poll=0.2)
    assert states[ids["sleeper"]].state == "CANCELLED"


def test_requeue_runs_the_job_again(slurm_cluster: LocalCluster, slurm_workdir: Path) -> None:
    out = slurm_workdir / "requeue.txt"
    job = JobSpec(name="requeued", requeue=True, log_dir=slurm_workdir / "logs", command=[
        "bash", "-c", 'echo "run ${SLURM_RESTART_COUNT:-0}" >> "$1"; [ "${SLURM_RESTART_COUNT:-0}" -ge 1 ] '
        "|| sleep 60", "_", str(out)])
    job_id = submit_graph([job], env=slurm_cluster.env())["requeued"]
    _wait_for(out.exists, 15)
    assert job_states([job_id], env=slurm_cluster.env())[job_id].state == "RUNNING"
    subprocess.run(["scontrol", "requeue", job_id], env={**os.environ, **slurm_cluster.env()}, check=True)
    state = wait([job_id], 40, env=slurm_cluster.env(), poll=0.5)[job_id]
    assert (state.state, state.exit_code, state.restarts) == ("COMPLETED", 0, 1)
    assert out.read_text() == "run 0\nrun 1\n"


def test_down_ends_running_jobs_too(slurm_workdir: Path) -> None:
    """Stopping slurmd alone leaves slurmstepd and the job's processes running with nobody to end them."""
    import shutil
    import tempfile

    from slurm.cluster import pid_alive

    root = Path(tempfile.mkdtemp(prefix="pslurm-", dir="/tmp"))  # short: unix socket paths are <= 107 bytes
    root.chmod(0o755)
    cluster = LocalCluster(root / "c", cpus=2)
    cluster.up()
    try:
        pid_file = slurm_workdir / "job.pid"
        job = JobSpec(name="long", log_dir=slurm_workdir / "logs",
                      command=["bash", "-c", 'echo $$ > "$1"; exec sleep 300', "_", str(pid_file)])
        submit_graph([job], env=cluster.env())
        _wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip(), 20)
        pid = int(pid_file.read_text())
        assert pid_alive(pid)
    finally:
        cluster.down()
        shutil.rmtree(root, ignore_errors=True)
    assert not cluster.is_up()
    _wait_for(lambda: not pid_alive(pid), 10)


def test_root_too_long_for_the_munge_socket_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"munge socket path .* is 1\d\d bytes; at most 107"):
        LocalCluster(Path("/tmp") / ("x" * 100)).up()


def _wait_for(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)
