"""Crash-resume: SIGKILL one stage of each kind mid-work, rerun it, and get the uninterrupted bytes back.

The CI-sized version of ``scripts/crash_resume.py``: one kill point per stage kind (score, variant, tokenize,
train, eval) on the one-variant tiny config, plus a training kill right after a checkpoint was written.
The reference is the session's sandboxed run (``blocked_run``); every kill and rerun is sandboxed too.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import RunOutcome, crash_resume, sandbox_env

from propensity.graph import build_graph

pytestmark = pytest.mark.slow  # full tiny runs under SIGKILL / in parallel: `make test-slow`

CR = crash_resume()


@pytest.fixture(scope="module")
def reference(blocked_run: RunOutcome) -> Path:
    assert blocked_run.returncode == 0, blocked_run.output[-4000:]
    return blocked_run.store


@pytest.fixture(scope="module")
def kill_points(reference: Path, reliability_config: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One kill point per stage kind; delays drawn (seed 0) within 60% of each stage's reference duration."""
    work = tmp_path_factory.mktemp("crash-resume")
    results = CR.run_harness(
        reliability_config,
        [],
        list(CR.STAGES),
        1,
        0,
        work,
        env=sandbox_env(work / "logs"),
        reference=reference,
        max_fraction=0.6,
    )
    return {r.stage: r for r in results}


@pytest.mark.parametrize("stage", CR.STAGES)
def test_killed_stage_reruns_to_identical_artifact(kill_points: dict, stage: str) -> None:
    point = kill_points[stage]
    assert point.killed, f"{point.key}: the stage finished before every kill attempt"
    assert point.partial_left, "the kill happened after the work folder appeared, so it must be left behind"
    assert point.rerun_rc == 0
    assert point.differences == [], point.differences


def test_harness_table_counts_points(kill_points: dict) -> None:
    text = CR.table(list(kill_points.values()))
    assert text.splitlines()[-1].split() == ["total", "5", "5", "5"]


def test_train_resumes_from_a_checkpoint(reference: Path, reliability_config: Path, tmp_path: Path) -> None:
    """Killed right after ``checkpoints/step-*.pt`` appeared: the rerun resumes from it, same model bytes."""
    cfg = CR.load(reliability_config, [], reference)
    train = next(s for s in build_graph(cfg) if s.stage == "train")
    point = CR.run_kill_point(
        reliability_config,
        [],
        reference,
        train,
        tmp_path,
        0.0,
        CR.child_env(sandbox_env(tmp_path / "logs")),
        after_glob="checkpoints/step-*.pt",
    )
    assert point.killed and point.partial_left
    assert point.differences == [] and point.rerun_rc == 0
    log = [json.loads(line) for line in (reference / train.key / "log.jsonl").read_text().splitlines()]
    assert (
        log[-1]["step"]
        > json.loads((reference / train.key / "manifest.json").read_text())["config"]["checkpoint_every"]
    ), "the tiny run must be long enough to checkpoint before it ends"


def _rewrite_first_shard(folder: Path, edit: Any) -> None:
    shard = sorted((folder / "shards").glob("*.jsonl.gz"))[0]
    lines = gzip.decompress(shard.read_bytes()).decode().splitlines()
    shard.write_bytes(gzip.compress(("\n".join(edit(lines)) + "\n").encode()))


def test_comparison_catches_changed_bytes_and_duplicate_ids(reference: Path, tmp_path: Path) -> None:
    """The checks above can fail: a flipped byte, a duplicated document and a lost document are reported."""
    key = next(p for p in reference.glob("variant/*") if p.is_dir() and not p.name.endswith(".partial"))
    key = key.relative_to(reference)
    store = tmp_path / "store"
    for folder in ("score", "variant"):
        shutil.copytree(reference / folder, store / folder)
    new = store / key
    assert CR.compare_artifacts(reference / key, new) == []
    assert CR.check_ids("variant", reference / key, new, store) == []

    _rewrite_first_shard(new, lambda lines: [*lines, lines[0]])
    assert "file differs: shards/00000.jsonl.gz" in CR.compare_artifacts(reference / key, new)
    problems = CR.check_ids("variant", reference / key, new, store)
    assert any(p.startswith("duplicate id") for p in problems), problems

    _rewrite_first_shard(new, lambda lines: lines[2:-1])
    problems = CR.check_ids("variant", reference / key, new, store)
    assert any("2 missing" in p for p in problems), problems

    (new / "stray.txt").write_text("x")
    assert "extra file stray.txt" in CR.compare_artifacts(reference / key, new)


def test_manifest_comparison_ignores_only_timings(reference: Path, tmp_path: Path) -> None:
    path = next(reference.glob("train/*/manifest.json"))
    data = json.loads(path.read_text())
    data["timings"]["seconds"] += 5
    data["host"] = "elsewhere"
    data["result"]["train_seconds"] = 1e9
    changed = tmp_path / "manifest.json"
    changed.write_text(json.dumps(data))
    assert CR.normalized_manifest(changed) == CR.normalized_manifest(path)
    data["result"]["final_loss"] = 0.0
    changed.write_text(json.dumps(data))
    assert CR.normalized_manifest(changed) != CR.normalized_manifest(path)


def test_store_roots_are_normalized_only_in_text_files(tmp_path: Path) -> None:
    ref, new = tmp_path / "a" / "report" / "x-1", tmp_path / "b" / "report" / "x-1"
    for folder, root in ((ref, tmp_path / "a"), (new, tmp_path / "b")):
        folder.mkdir(parents=True)
        (folder / ".complete").write_text("report/x-1\n")
        (folder / "report.md").write_text(f"models in {root / 'train' / 'y-2'}\n")
    assert CR.compare_artifacts(ref, new) == ["file differs: report.md"]
    assert CR.compare_artifacts(ref, new, (tmp_path / "a", tmp_path / "b")) == []
