"""``propensity.store_admin``: ls shows who uses what; gc removes only unreferenced, unlocked artifacts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from propensity.store_admin import gc, keys_of_configs, ls, print_ls

HOLD_LOCK = """
import sys, time, fasteners
lock = fasteners.InterProcessLock(sys.argv[1])
assert lock.acquire(blocking=False)
print("locked", flush=True)
time.sleep(60)
"""


def _fake_artifact(store: Path, key: str, inputs: dict[str, str]) -> Path:
    folder = store / key
    folder.mkdir(parents=True)
    manifest = {"key": key, "stage": key.split("/")[0], "inputs": {r: {"key": k} for r, k in inputs.items()}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "payload.bin").write_bytes(b"x" * 1000)
    (folder / ".complete").write_text(key + "\n")
    return folder


def test_ls_lists_size_age_state_and_users(two_experiments, capsys):
    arts = {a.key: a for a in ls(two_experiments.store)}
    score = next(a for k, a in arts.items() if k.startswith("score/"))
    assert score.used_by == ["tiny", "tiny_b"] and score.state == "complete" and score.size > 10_000
    assert 0 <= score.age_s < 3600
    strict = next(a for k, a in arts.items() if k.startswith("variant/strict-"))
    assert strict.used_by == ["tiny_b"]
    tagged = next(a for k, a in arts.items() if k.startswith("train/tagged-"))
    assert tagged.used_by == ["tiny"]
    assert all(a.used_by for a in arts.values())  # two finished experiments: nothing unused
    print_ls(list(arts.values()))
    assert "tiny_b" in capsys.readouterr().out


@pytest.fixture
def store_copy(two_experiments, tmp_path) -> Path:
    return Path(shutil.copytree(two_experiments.store, tmp_path / "store", symlinks=True))


def test_gc_keeps_referenced_removes_orphans_and_stale_partials(store_copy, capsys):
    before = {a.key for a in ls(store_copy)}
    score_key = next(k for k in before if k.startswith("score/"))
    orphan = _fake_artifact(store_copy, "variant/orphan-000000000000", {"score": score_key})
    stale = store_copy / "train" / "crashed-s0-111111111111.partial"
    stale.mkdir()
    (stale / "stage.log").write_text("died\n")
    locked = store_copy / "train" / "running-s0-222222222222.partial"
    locked.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(locked.with_suffix("")) + ".lock"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        preview = gc(store_copy, dry_run=True)
        assert [a.key for a in preview] == ["train/crashed-s0-111111111111"] and stale.exists()
        removed = gc(store_copy)  # a stage is running: complete artifacts are all kept, stale partials go
        assert [a.key for a in removed] == ["train/crashed-s0-111111111111"]
        assert not stale.exists() and locked.exists() and orphan.exists()
    finally:
        holder.kill()
        holder.wait()
    removed = gc(store_copy)  # nothing running now: the orphan and the no-longer-locked partial go
    assert sorted(a.key for a in removed) == ["train/running-s0-222222222222", "variant/orphan-000000000000"]
    assert not orphan.exists() and not locked.exists()
    assert {a.key for a in ls(store_copy)} == before  # everything referenced is still there
    assert "removing complete variant/orphan-000000000000" in capsys.readouterr().out


def test_gc_removes_an_experiment_whose_report_is_gone_unless_kept(store_copy, two_experiments):
    report_b = store_copy / "report" / two_experiments.report_b.name
    shutil.rmtree(report_b)
    keep = keys_of_configs([two_experiments.config_b])
    assert gc(store_copy, keep=keep) == []  # the config keeps its (now unreported) stages
    jobs = store_copy / "slurm" / "tiny_b" / "jobs.json"  # the Slurm executor's folders are not artifacts
    jobs.parent.mkdir(parents=True)
    jobs.write_text("{}")
    submitted = store_copy / "experiments" / "tiny_b-0123.yaml"  # submitted to Slurm: jobs may be pending
    submitted.parent.mkdir()
    shutil.copy(two_experiments.config_b, submitted)
    assert gc(store_copy) == []
    strict = next(a for a in ls(store_copy) if a.key.startswith("train/strict"))
    assert strict.used_by == ["submitted:tiny_b-0123"]
    submitted.unlink()
    removed = {a.key.split("-")[0] for a in gc(store_copy)}
    assert removed == {"variant/strict", "tokenize/strict", "train/strict", "eval/strict"}
    remaining = {a.key for a in ls(store_copy)}
    assert any(k.startswith("score/") for k in remaining)
    assert any(k.startswith("variant/baseline") for k in remaining)
    assert all(a.used_by == ["tiny"] for a in ls(store_copy))
    assert jobs.read_text() == "{}"


def test_gc_min_age_keeps_fresh_orphans(store_copy):
    orphan = _fake_artifact(store_copy, "variant/orphan-333333333333", {})
    assert gc(store_copy, min_age_s=3600) == [] and orphan.exists()
    old = time.time() - 7200
    import os

    os.utime(orphan / "manifest.json", (old, old))
    assert [a.key for a in gc(store_copy, min_age_s=3600)] == ["variant/orphan-333333333333"]


def test_gc_refuses_when_a_submitted_config_is_unreadable(store_copy):
    from core.errors import StoreError

    bad = store_copy / "experiments" / "broken-1.yaml"
    bad.parent.mkdir()
    bad.write_text("experiment: [unclosed\n")
    orphan = _fake_artifact(store_copy, "variant/orphan-444444444444", {})
    with pytest.raises(StoreError, match="(?s)submitted config .*broken-1.yaml.*fix or delete it"):
        gc(store_copy)
    assert orphan.exists()


def test_report_of_a_folder_that_is_not_a_report_says_what_it_is(tmp_path: Path) -> None:
    """`propensity report` on a variant folder raised KeyError: 'variants'."""
    from core.errors import StoreError
    from propensity.report import rebuild

    folder = tmp_path / "store" / "variant" / "filtered-0123456789ab"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"stage": "variant", "config": {}, "inputs": {}}))
    with pytest.raises(StoreError, match=r"is a 'variant' artifact, not a report folder: give "
                                         r"<store>/report/<name>-<hash>"):
        rebuild(folder)


def test_ls_lists_seed_10_after_seed_2() -> None:
    from propensity.store_admin import natural_key

    keys = ["train/a-s10-0123456789ab", "train/a-s2-ba9876543210", "train/a-s1-ffffffffffff"]
    assert sorted(keys, key=natural_key) == [keys[2], keys[1], keys[0]]
