"""sbatch rendering, validation, graph ordering and dry runs: no cluster needed."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from core.errors import ConfigError
from slurm.jobs import JobSpec, Resources, render_sbatch, sbatch_quote
from slurm.submit import _from_jobcomp, _from_scontrol, submit_graph, topological_order

HOSTILE = ["a b", "x'y", "$(touch {marker})", "`touch {marker}`", 'q"uote', "semi; touch {marker}",
           "back\\slash #hash"]


def _sbatch_args(script: str) -> list[str]:
    """Parse #SBATCH lines the way sbatch's _get_argument does (quotes, backslash escapes, # comments)."""
    args = []
    for line in script.splitlines():
        if not line.startswith("#SBATCH "):
            continue
        text, out, quote, escape = line[len("#SBATCH "):], [], "", False
        for ch in text:
            if escape:
                out.append(ch)
                escape = False
            elif ch == "\\":
                escape = True
            elif quote:
                if ch == quote:
                    quote = ""
                else:
                    out.append(ch)
            elif ch in "\"'":
                quote = ch
            elif ch == "#" or ch.isspace():
                break
            else:
                out.append(ch)
        args.append("".join(out))
    return args


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_values_are_inert_in_the_script(tmp_path: Path, template: str) -> None:
    marker = tmp_path / "pwned"
    name = template.format(marker=marker)
    result = tmp_path / "out.txt"
    job = JobSpec(name=name, command=["bash", "-c", 'printf %s "$1" > "$2"', "_", name, str(result)],
                  env={"HOSTILE": name}, setup=["echo " + shlex.quote(name)], workdir=tmp_path,
                  log_dir=tmp_path / name.replace("/", "_"))
    script = render_sbatch(job, ["12", "13"])
    # sbatch sees each value as exactly one argument, unchanged
    args = _sbatch_args(script)
    assert args[0] == f"--job-name={name}"
    assert args[-2:] == ["--kill-on-invalid-dep=yes", "--dependency=afterok:12:13"]
    # bash runs the body (the #SBATCH lines are comments to it) without executing anything injected
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert result.read_text() == name
    assert not marker.exists()


@pytest.mark.parametrize("field,kwargs", [
    ("name", {"name": "evil\n#SBATCH --wrap=x"}),
    ("partition", {"resources": Resources(partition="gpu\nrm")}),
    ("option", {"resources": Resources(extra_sbatch=("--comment=a\rb",))}),
    ("option", {"log_dir": Path("/tmp/a\nb")}),
])
def test_newlines_on_sbatch_lines_are_rejected(field: str, kwargs: dict) -> None:
    job = JobSpec(**{"name": "ok", "command": ["true"], **kwargs})
    with pytest.raises(ConfigError, match="newline or control character"):
        render_sbatch(job)


def test_script_shape_requeue_resources_and_exec() -> None:
    job = JobSpec(name="train", command=["propensity", "stage", "cfg.yaml", "train/x"], requeue=True,
                  resources=Resources(partition="gpu", account="proj", qos="high", time="1-00:00:00", cpus=8,
                                      mem="64G", gpus=2, nodes=1, extra_sbatch=("--exclusive",)),
                  setup=["module load cuda/12", "source /opt/venv/bin/activate"], env={"HF_HUB_OFFLINE": "1"},
                  log_dir=Path("/logs"))
    script = render_sbatch(job)
    assert _sbatch_args(script) == [
        "--job-name=train", "--output=/logs/train-%j.out", "--partition=gpu", "--account=proj", "--qos=high",
        "--time=1-00:00:00", "--nodes=1", "--cpus-per-task=8", "--mem=64G", "--gres=gpu:2", "--exclusive",
        "--requeue", "--open-mode=append", "--kill-on-invalid-dep=yes"]
    body = script.split("\n\n", 1)[1].splitlines()
    assert body == ["set -eo pipefail", "export HF_HUB_OFFLINE=1", "module load cuda/12",
                    "source /opt/venv/bin/activate", "exec propensity stage cfg.yaml train/x"]
    assert "--dependency" not in script


def test_percent_in_log_dir_is_escaped_for_slurm_patterns() -> None:
    script = render_sbatch(JobSpec(name="j", command=["true"], log_dir=Path("/logs/100%x")))
    assert '#SBATCH "--output=/logs/100%%x/j-%j.out"' in script


@pytest.mark.parametrize("kwargs,message", [
    ({"time": "5 min"}, "resources.time: '5 min' is not a Slurm time"),
    ({"mem": "lots"}, "resources.mem: 'lots'"),
    ({"cpus": 0}, "resources.cpus: expected an integer >= 1, got 0"),
    ({"gpus": True}, "resources.gpus: expected an integer >= 0, got True"),
    ({"extra_sbatch": ("exclusive",)}, "'exclusive' is not an sbatch option"),
    ({"partition": ""}, "resources.partition: expected a non-empty string"),
])
def test_resources_validation_names_field_and_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("$", r"\$")):
        Resources(**kwargs)


def test_resources_from_dict_is_strict() -> None:
    expected = Resources(cpus=2, extra_sbatch=("--exclusive",))
    assert Resources.from_dict({"cpus": 2, "extra_sbatch": ["--exclusive"]}) == expected
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['gpu'\]; allowed: \['partition'"):
        Resources.from_dict({"gpu": 1})


@pytest.mark.parametrize("kwargs,message", [
    ({"command": []}, "command is empty"),
    ({"command": "propensity stage"}, "command must be a list of strings"),
    ({"env": {"1BAD": "x"}}, "env '1BAD'='x' is not allowed"),
    ({"setup": ["source 'unclosed"]}, "cannot be split into words"),
])
def test_job_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        render_sbatch(JobSpec(**{"name": "j", "command": ["true"], **kwargs}))


def _job(name: str, *deps: str) -> JobSpec:
    return JobSpec(name=name, command=["echo", name], dependencies=deps, log_dir=Path("/tmp/logs"))


def test_topological_order_stable_and_missing_deps_count_as_complete() -> None:
    jobs = [_job("eval", "train"), _job("train", "tokenize", "done-elsewhere"), _job("tokenize"),
            _job("other")]
    assert [j.name for j in topological_order(jobs)] == ["tokenize", "train", "eval", "other"]


def test_topological_order_rejects_cycles_and_duplicates() -> None:
    with pytest.raises(ConfigError, match="cycle: a -> b -> a"):
        topological_order([_job("a", "b"), _job("b", "a")])
    with pytest.raises(ConfigError, match="'a' appears twice"):
        topological_order([_job("a"), _job("a")])


def test_dry_run_writes_scripts_and_calls_no_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # any sbatch call would fail
    ids = submit_graph([_job("b", "a"), _job("a")], dry_run_dir=tmp_path / "plan")
    assert ids == {"a": "dry-run-00", "b": "dry-run-01"}
    files = sorted(p.name for p in (tmp_path / "plan").iterdir())
    assert files == ["00-a.sbatch", "01-b.sbatch", "plan.json", "submit.sh"]
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert [p["dependency_scripts"] for p in plan] == [[], ["a"]]
    submit = (tmp_path / "plan" / "submit.sh").read_text()
    assert "id1=$(sbatch --parsable --dependency=afterok:${id0} 01-b.sbatch)" in submit
    assert (tmp_path / "plan" / "01-b.sbatch").read_text() == render_sbatch(_job("b", "a"))


def test_sbatch_quote_round_trips_backslashes_and_quotes() -> None:
    value = 'a\\"b c#'
    assert _sbatch_args("#SBATCH " + sbatch_quote(value, what="x")) == [value]


def test_jobcomp_and_scontrol_parsers_survive_hostile_names(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "jobcomp.log"
    log.write_text(
        "JobId=7 UserId=root(0) GroupId=root(0) Name=x JobState=COMPLETED y JobState=FAILED Partition=debug "
        "TimeLimit=5 StartTime=2026-01-01T00:00:00 EndTime=2026-01-01T00:01:05 NodeList=localhost "
        "WorkDir=/w ExitCode=3:0 \n"
        "JobId=8 UserId=root(0) GroupId=root(0) Name=ok JobState=CANCELLED Partition=debug TimeLimit=5 "
        "StartTime=2026-01-01T00:00:00 EndTime=2026-01-01T00:00:00 ExitCode=0:15 \n"
        # what slurmctld writes for a job cancelled while pending (a failed dependency): no node, start = end
        "JobId=10 UserId=root(0) GroupId=root(0) Name=dep JobState=CANCELLED Partition=debug TimeLimit=5 "
        "StartTime=2026-11-30T02:36:28 EndTime=2026-11-30T02:36:28 NodeList=(null) ExitCode=0:0 \n")
    monkeypatch.setattr("slurm.submit._jobcomp_path", lambda env: log)
    states = _from_jobcomp(["7", "8", "10"], None)
    assert (states["7"].state, states["7"].exit_code, states["7"].elapsed) == ("FAILED", 3, 65.0)
    assert (states["8"].state, states["8"].signal, states["8"].source) == ("CANCELLED", 15, "jobcomp")
    assert (states["10"].state, states["10"].elapsed) == ("CANCELLED", None)  # never ran: no elapsed time

    line = ("JobId=9 JobName=a JobState=COMPLETED b UserId=root(0) GroupId=root(0) Account=(null) "
            "JobState=PENDING Reason=DependencyNeverSatisfied Restarts=2 ExitCode=0:0 RunTime=1-00:00:02 "
            "WorkDir=/a b StdOut=/x\n")
    monkeypatch.setattr("slurm.submit._run", lambda *a, **k: subprocess.CompletedProcess(a, 0, line, ""))
    state = _from_scontrol("9", None)
    assert state is not None
    assert (state.state, state.reason, state.restarts, state.exit_code, state.elapsed) == (
        "PENDING", "DependencyNeverSatisfied", 2, None, None)  # pending: no node, so no elapsed time
    running = line.replace("JobState=PENDING", "JobState=RUNNING").replace("WorkDir", "NodeList=localhost WorkDir")
    monkeypatch.setattr("slurm.submit._run", lambda *a, **k: subprocess.CompletedProcess(a, 0, running, ""))
    assert _from_scontrol("9", None).elapsed == 86402.0

    never_ran = ("JobId=19 JobName=b UserId=root(0) GroupId=root(0) JobState=CANCELLED "
                 "Reason=DependencyNeverSatisfied ExitCode=0:0 RunTime=20786-20:13:11 StartTime=Unknown "
                 "EndTime=2026-11-29T20:13:11\n")
    monkeypatch.setattr("slurm.submit._run", lambda *a, **k: subprocess.CompletedProcess(a, 0, never_ran, ""))
    state = _from_scontrol("19", None)
    assert state is not None and (state.state, state.elapsed) == ("CANCELLED", None)
    # cancelled while pending after the scheduler had estimated a start: StartTime is set, NodeList is empty
    estimated = never_ran.replace("StartTime=Unknown", "StartTime=2026-11-30T02:50:00 NodeList=")
    estimated = estimated.replace("RunTime=20786-20:13:11", "RunTime=00:00:00")
    monkeypatch.setattr("slurm.submit._run", lambda *a, **k: subprocess.CompletedProcess(a, 0, estimated, ""))
    assert _from_scontrol("19", None).elapsed is None


def test_cancelled_jobs_lose_their_stale_pending_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """scontrol keeps the reason a job was pending for after it is cancelled (``CANCELLED`` +
    ``Resources``); only ``DependencyNeverSatisfied`` says why a cancelled job ended."""
    line = ("JobId=12 JobName=a UserId=root(0) GroupId=root(0) JobState={state} Reason={reason} ExitCode=0:0 "
            "RunTime=00:00:00 StartTime=Unknown\n")
    got = {}
    for state, reason in [("CANCELLED", "Resources"), ("CANCELLED", "Priority"), ("CANCELLED", "JobHeldUser"),
                          ("CANCELLED", "DependencyNeverSatisfied"), ("PENDING", "Resources"),
                          ("FAILED", "NonZeroExitCode"), ("CANCELLED", "None")]:
        text = line.format(state=state, reason=reason)
        monkeypatch.setattr("slurm.submit._run", lambda *a, t=text, **k: subprocess.CompletedProcess(a, 0, t, ""))
        got[state, reason] = _from_scontrol("12", None).reason  # type: ignore[union-attr]
    assert got == {("CANCELLED", "Resources"): None, ("CANCELLED", "Priority"): None,
                   ("CANCELLED", "JobHeldUser"): None,
                   ("CANCELLED", "DependencyNeverSatisfied"): "DependencyNeverSatisfied",
                   ("PENDING", "Resources"): "Resources", ("FAILED", "NonZeroExitCode"): "NonZeroExitCode",
                   ("CANCELLED", "None"): None}
