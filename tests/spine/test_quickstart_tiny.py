"""The whole graph end to end on the tiny config: layout, results schema, reuse and selective reruns."""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import pytest

from core.store import MARKER, Store
from propensity.cli import main
from propensity.config import load_config
from propensity.runner import plan

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "tiny.yaml")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("store")
    assert main(["run", TINY, "--set", f"store={store}", "--no-progress"]) == 0
    return store


def test_every_stage_has_manifest_and_marker(finished: Path) -> None:
    cfg = load_config(TINY, [f"store={finished}"])
    rows = plan(cfg)
    assert rows and all(r.action == "reuse" for r in rows)
    for r in rows:
        folder = Store(finished).path(r.spec.key)
        manifest = json.loads((folder / "manifest.json").read_text())
        assert (folder / MARKER).is_file()
        assert manifest["key"] == r.spec.key
        assert {i["key"] for i in manifest["inputs"].values()} == {s.key for s in r.spec.inputs.values()}
    assert not list(finished.glob("*/*.partial"))


def test_results_schema_and_counts(finished: Path) -> None:
    results = json.loads(next(finished.glob("report/tiny-*/results.json")).read_text())
    v = results["variants"]
    assert set(v) == {"baseline", "filtered", "tagged"}
    for name, entry in v.items():
        for key in ("propensity_before", "propensity_after", "control_before"):
            lo, hi = entry[key]["ci95"]
            assert lo <= entry[key]["mean"] <= hi, (name, key)
        assert entry["heldout_loss"] > 0 and entry["tokens"] == 20000
        assert entry["docs_in"] == entry["docs"] + entry["dropped"] + sum(entry["quarantined"].values())
    assert v["filtered"]["dropped"] > 0 and v["baseline"]["dropped"] == 0
    assert set(v["tagged"]["by_tag"]) == {"<|good|>", "<|bad|>"}
    assert set(v["tagged"]["tag_difference"]) >= {"mean", "ci95"}
    assert next(finished.glob("report/tiny-*/propensity.png")).stat().st_size > 5000


def test_rerun_reuses_everything_quickly(finished: Path, capsys: pytest.CaptureFixture) -> None:
    t0 = time.time()
    assert main(["run", TINY, "--set", f"store={finished}", "--no-progress"]) == 0
    elapsed = time.time() - t0
    err = capsys.readouterr().err
    assert "run    " not in err and err.count("reuse") == 17
    assert elapsed < 30


def test_threshold_change_reruns_only_filter_downstream(finished: Path) -> None:
    cfg = load_config(TINY, [f"store={finished}", "variants.1.threshold=0.7"])
    to_run = {f"{r.spec.stage}/{r.spec.name}" for r in plan(cfg) if r.action != "reuse"}
    assert to_run == {"variant/filtered", "tokenize/filtered", "train/filtered-s0", "eval/filtered-s0",
                      "report/tiny"}


def test_report_rebuild(finished: Path, capsys: pytest.CaptureFixture) -> None:
    folder = next(finished.glob("report/tiny-*/results.json")).parent
    before = (folder / "results.json").read_bytes()
    (folder / "results.json").unlink()
    assert main(["report", str(folder)]) == 0
    assert (folder / "results.json").read_bytes() == before
    assert "baseline" in capsys.readouterr().out


class _Stop(Exception):
    pass


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(("tty", "flags", "shown"), [(True, [], True), (True, ["--no-progress"], False),
                                                    (False, [], False)])
def test_progress_bars_only_on_a_terminal(finished: Path, monkeypatch: pytest.MonkeyPatch, tty: bool,
                                          flags: list[str], shown: bool) -> None:
    """Written to a log every redraw of a bar is a line of its own: `run` shows bars only on a terminal."""
    import propensity.runner

    seen: list[bool] = []

    def run_local(cfg: object, show_progress: bool) -> Path:
        seen.append(show_progress)
        raise _Stop  # before the report table: only the flag is under test

    monkeypatch.setattr(propensity.runner, "run_local", run_local)
    monkeypatch.setattr(sys, "stderr", _Stream(tty))
    with pytest.raises(_Stop):
        main(["run", TINY, "--set", f"store={finished}", *flags])
    assert seen == [shown]
