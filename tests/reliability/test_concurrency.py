"""Concurrency: three ``propensity run`` processes on one store at once, two with the same config and one with
a config that shares every stage up to training (it differs in ``eval.bootstrap``).

All must succeed; every stage of the union of both graphs must have run exactly once (the others waited on
the stage's lock and reused the result); no ``.partial`` is left; the artifacts are byte-identical to the
sequential reference run.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import (
    ROOT,
    RUN_TIMEOUT_S,
    RunOutcome,
    crash_resume,
    one_variant_config,
    propensity,
    sandbox_env,
    stage_calls,
)

from propensity.config import load_config
from propensity.graph import build_graph

pytestmark = pytest.mark.slow  # full tiny runs under SIGKILL / in parallel: `make test-slow`

CR = crash_resume()
EVAL_B = {"gpes": ["em_medicine"], "heldout_docs": 20, "bootstrap": 100}


@pytest.fixture(scope="module")
def concurrent(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("concurrent")
    configs = {
        "A1": one_variant_config(root / "a.yaml"),
        "B": one_variant_config(root / "b.yaml", {"eval": EVAL_B}),
    }
    configs["A2"] = configs["A1"]
    store, logs = root / "store", root / "logs"
    env = sandbox_env(logs)
    # the expected keys come from the code the runs start with, not from whatever the tree holds after them
    graphs = {name: build_graph(load_config(path, [f"store={store}"])) for name, path in configs.items()}
    procs = {}
    for name in ("A1", "A2", "B"):
        out = open(root / f"{name}.out", "w")  # noqa: SIM115 - closed below
        procs[name] = (
            subprocess.Popen(
                propensity("run", str(configs[name]), "--set", f"store={store}", "--no-progress"),
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            ),
            out,
        )
    codes = {}
    for name, (proc, out) in procs.items():
        codes[name] = proc.wait(timeout=RUN_TIMEOUT_S)
        out.close()
    return {
        "store": store,
        "logs": logs,
        "codes": codes,
        "graphs": graphs,
        "outputs": {name: (root / f"{name}.out").read_text() for name in procs},
    }


def test_every_run_succeeds(concurrent: dict[str, Any]) -> None:
    assert concurrent["codes"] == {"A1": 0, "A2": 0, "B": 0}, {
        k: v[-3000:] for k, v in concurrent["outputs"].items()
    }


def test_each_stage_ran_exactly_once(concurrent: dict[str, Any]) -> None:
    calls = stage_calls(concurrent["logs"])
    starts = Counter(key for _, event, key in calls if event == "start")
    ends = Counter(key for _, event, key in calls if event == "end")
    wanted = {s.key for graph in concurrent["graphs"].values() for s in graph}
    assert set(starts) == wanted and set(ends) == wanted
    assert max(starts.values()) == 1 and max(ends.values()) == 1, starts.most_common(3)
    shared = {s.key for s in concurrent["graphs"]["A1"]} & {s.key for s in concurrent["graphs"]["B"]}
    assert {key.split("/")[0] for key in shared} >= {
        "source",
        "classifier",
        "score",
        "variant",
        "tokenize",
        "train",
    }
    assert len(wanted - shared) == 4, "B's own eval and report, and A's"


def test_no_partial_and_no_stray_folders(concurrent: dict[str, Any]) -> None:
    store: Path = concurrent["store"]
    assert not list(store.glob("*/*.partial"))
    folders = {f"{p.parent.name}/{p.name}" for p in store.glob("*/*") if p.is_dir()}
    wanted = {s.key for graph in concurrent["graphs"].values() for s in graph}
    assert folders == wanted
    assert all((store / key / ".complete").is_file() for key in wanted)


def test_results_identical_to_sequential_run(concurrent: dict[str, Any], blocked_run: RunOutcome) -> None:
    """Config A's artifacts are byte-identical to the sequential reference in another store (manifest
    timings aside; no store root is normalized away: artifacts name each other by store key)."""
    assert blocked_run.returncode == 0
    problems = {
        s.key: CR.compare_artifacts(blocked_run.store / s.key, concurrent["store"] / s.key)
        for s in concurrent["graphs"]["A1"]
    }
    assert {k: v for k, v in problems.items() if v} == {}
    rows = {
        name: [
            line for line in concurrent["outputs"][name].splitlines() if "filtered" in line and "│" in line
        ]
        for name in ("A1", "A2")
    }
    assert rows["A1"] and rows["A1"] == rows["A2"], rows


def test_report_bytes_do_not_depend_on_the_store_location(
    concurrent: dict[str, Any], blocked_run: RunOutcome
) -> None:
    """The same report key in two stores: the same bytes; and no artifact of the store (logs aside) holds
    the store's own path, so none goes stale when the store moves."""
    report = next(s for s in concurrent["graphs"]["A1"] if s.stage == "report")
    assert CR.compare_artifacts(blocked_run.store / report.key, concurrent["store"] / report.key) == []
    for files in (report.key + "/results.json", report.key + "/report.md"):
        assert (blocked_run.store / files).read_bytes() == (concurrent["store"] / files).read_bytes()
    store: Path = concurrent["store"]
    roots = {str(store).encode(), str(store.resolve()).encode()}
    naming_the_store = [
        path.relative_to(store).as_posix()
        for path in sorted(store.rglob("*"))
        if path.is_file()
        and "logs" not in path.relative_to(store).parts
        and path.name not in CR.VOLATILE_FILES
        and any(root in path.read_bytes() for root in roots)
    ]
    assert naming_the_store == []
