"""The local executor: small stages side by side in worker processes, whole-machine stages alone, failures
raised after the running stages finish, and the same bytes as a run one stage at a time."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest

from core.store import StageSpec, Store
from propensity.config import load_config
from propensity.graph import build_graph
from propensity.local_exec import run_graph

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))  # spawned workers inherit sys.path: they import sched_stages


def spec(name: str, cores: int | None, *inputs: StageSpec, **config: object) -> StageSpec:
    return StageSpec("train", name, "sched_stages:run", dict(config),
                     {f"in{i}": s for i, s in enumerate(inputs)}, cores=cores)


def ran(store: Store, s: StageSpec) -> dict:
    return json.loads((store.path(s.key) / "ran.json").read_text())


def graph() -> list[StageSpec]:
    data = spec("data", None, sleep=0.1)
    a, b = spec("a", 1, data, sleep=1.5), spec("b", 1, data, sleep=1.5)
    c = spec("c", 1, a, sleep=0.1)
    return [data, a, b, c, spec("report", None, a, b, c)]


def test_small_stages_run_side_by_side_and_whole_machine_stages_alone(tmp_path: Path) -> None:
    store, specs = Store(tmp_path), graph()
    out = io.StringIO()
    run_graph(store, specs, 2, show_progress=False, stream=out)
    data, a, b, c, report = (ran(store, s) for s in specs)
    assert a["start"] < b["end"] and b["start"] < a["end"]  # a and b overlapped
    assert a["pid"] != data["pid"] and data["pid"] == report["pid"]  # whole-machine stages: this process
    assert data["end"] <= min(a["start"], b["start"]) and report["start"] >= max(a["end"], b["end"], c["end"])
    assert c["start"] >= a["end"] and (a["workers"], data["workers"]) == (1, 2)
    assert out.getvalue().count(" done ") == 5
    again = io.StringIO()
    run_graph(store, specs, 2, show_progress=False, stream=again)
    assert again.getvalue().count(" reuse ") == 5 and " run " not in again.getvalue()


def test_one_worker_runs_everything_here_in_order(tmp_path: Path) -> None:
    store, specs = Store(tmp_path), graph()
    run_graph(store, specs, 1, show_progress=False, stream=io.StringIO())
    records = [ran(store, s) for s in specs]
    assert len({r["pid"] for r in records}) == 1
    assert all(x["end"] <= y["start"] for x, y in zip(records, records[1:], strict=False))


def test_a_failure_lets_running_stages_finish_then_raises(tmp_path: Path) -> None:
    store = Store(tmp_path)
    data = spec("data", None)
    bad, good = spec("bad", 1, data, fail=True), spec("good", 1, data, sleep=1.0)
    later, waiting = spec("later", 1, bad), spec("waiting", 1, data)  # waiting: no core free until bad fails
    with pytest.raises(Exception, match="bad fails on purpose"):
        run_graph(store, [data, bad, good, waiting, later], 2, show_progress=False, stream=io.StringIO())
    assert store.is_complete(good) and not store.is_complete(bad) and not store.is_complete(later)
    assert not store.path(waiting.key).with_name(store.path(waiting.key).name + ".partial").exists()
    assert not store.is_complete(waiting)  # nothing new starts after a failure
    assert (store.path(bad.key).with_name(store.path(bad.key).name + ".partial") / "stage.log").is_file()


def test_side_by_side_training_gives_the_bytes_of_training_alone(tmp_path: Path) -> None:
    """The tiny experiment with two 1-thread training runs at once: every train stage sits beside another,
    and retraining one of them alone in this process writes the same weights, byte for byte."""
    cfg = load_config(ROOT / "configs" / "tiny.yaml", [f"store={tmp_path / 'store'}", "executor.workers=2",
                                                       "executor.train_threads=1", "train.seeds=[0,1]"])
    specs = [s for s in build_graph(cfg) if s.stage not in ("eval", "report")]  # up to the models
    trains = [s for s in specs if s.stage == "train"]
    assert {(s.threads, s.cores) for s in trains} == {(1, 1)}
    store = Store(cfg.store)
    run_graph(store, specs, 2, show_progress=False, stream=io.StringIO())
    spans = sorted((m["started"], m["finished"]) for m in
                   (json.loads((store.path(s.key) / "manifest.json").read_text())["timings"] for s in trains))
    assert any(nxt[0] < prev[1] for prev, nxt in zip(spans, spans[1:], strict=False))  # some overlapped
    first = trains[0]
    weights = (store.path(first.key) / "model" / "model.safetensors").read_bytes()
    shutil.rmtree(store.path(first.key))
    store.run(first, workers=2, show_progress=False)
    assert (store.path(first.key) / "model" / "model.safetensors").read_bytes() == weights


def test_train_threads_default_keeps_the_keys() -> None:
    base = load_config(ROOT / "configs" / "tiny.yaml")
    same = load_config(ROOT / "configs" / "tiny.yaml", [f"executor.train_threads={base.executor.workers}"])
    assert [s.key for s in build_graph(base)] == [s.key for s in build_graph(same)]
    assert all(s.cores is None for s in build_graph(base) if s.stage == "train")
