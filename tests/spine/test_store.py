"""The artifact store: on-disk layout, atomic completion, reuse, invalidation, failures and path safety."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from core.errors import StageError, StoreError
from core.stage import StageContext
from core.store import MARKER, StageSpec, Store

CALLS: list[str] = []


def echo_stage(ctx: StageContext) -> dict:
    """Writes its config and the content of its inputs; records the call."""
    CALLS.append(ctx.name)
    upstream = {role: (p / "value.txt").read_text() for role, p in ctx.inputs.items()}
    (ctx.out / "value.txt").write_text(json.dumps({"config": ctx.config, "upstream": upstream}, sort_keys=True))
    return {"documents_in": 3, "kept": 2, "dropped": 1}


def failing_stage(ctx: StageContext) -> dict:
    (ctx.out / "half-written.txt").write_text("partial")
    raise RuntimeError("boom")


def warning_stage(ctx: StageContext) -> dict:
    logging.getLogger("propensity").warning("bf16 is emulated on this CPU")
    logging.getLogger("propensity").info("routine chatter")
    return {}


def spec(name: str = "a", config: dict | None = None, inputs: dict | None = None,
         impl: str = "echo_stage") -> StageSpec:
    return StageSpec("demo", name, f"{__name__}:{impl}", config or {"x": 1}, inputs or {})


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()


def test_layout_manifest_and_marker(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    s = spec()
    folder = store.run(s)
    assert folder == tmp_path / "store" / "demo" / f"a-{s.hash}"
    assert (folder / MARKER).read_text().strip() == s.key
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["config"] == {"x": 1}
    assert manifest["result"] == {"documents_in": 3, "kept": 2, "dropped": 1}
    assert manifest["key"] == s.key and manifest["hash"] == s.hash
    assert {"python", "propensity", "torch"} <= set(manifest["versions"])
    assert manifest["timings"]["seconds"] >= 0
    assert not list((tmp_path / "store" / "demo").glob("*.partial"))


def test_complete_artifact_is_reused_not_redone(tmp_path: Path) -> None:
    store = Store(tmp_path)
    first = store.run(spec())
    mtime = (first / "value.txt").stat().st_mtime_ns
    again = store.run(spec())
    assert again == first and CALLS == ["a"]
    assert (again / "value.txt").stat().st_mtime_ns == mtime


def test_changed_setting_never_reuses_stale_artifact(tmp_path: Path) -> None:
    store = Store(tmp_path)
    up1 = spec("up", {"threshold": 0.5})
    down1 = spec("down", {"k": 1}, {"source": up1})
    store.run(up1)
    store.run(down1)
    up2 = spec("up", {"threshold": 0.6})
    down2 = spec("down", {"k": 1}, {"source": up2})
    assert up2.key != up1.key and down2.key != down1.key
    assert not store.is_complete(down2)
    store.run(up2)
    out = store.run(down2)
    assert json.loads((out / "value.txt").read_text())["upstream"]["source"].count("0.6") == 1
    assert CALLS == ["up", "down", "up", "down"]


def test_hash_ignores_key_order_but_not_values(tmp_path: Path) -> None:
    assert spec(config={"a": 1, "b": 2}).hash == spec(config={"b": 2, "a": 1}).hash
    assert spec(config={"a": 1}).hash != spec(config={"a": 1.5}).hash
    assert StageSpec("demo", "a", "m:f", {}, version=1).hash != StageSpec("demo", "a", "m:f", {}, version=2).hash


def test_failure_leaves_no_complete_artifact_and_keeps_partial(tmp_path: Path) -> None:
    store = Store(tmp_path)
    s = spec(impl="failing_stage")
    with pytest.raises(StageError, match="boom"):
        store.run(s)
    assert not store.is_complete(s)
    assert store.has_partial(s)
    assert (store.path(s.key).with_name(store.path(s.key).name + ".partial") / "half-written.txt").exists()


def test_inputs_must_be_complete(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(StageError, match="inputs not complete"):
        store.run(spec("down", inputs={"source": spec("up")}))


def test_keys_cannot_escape_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    with pytest.raises(StoreError):
        store.path("../../etc/passwd")


def test_torchrun_ranks_share_one_work_folder_and_rank0_finalises(tmp_path: Path) -> None:
    """Two processes launched like torchrun (RANK/WORLD_SIZE): one artifact, one manifest, rank 0's bytes."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        "import sys; from core.store import Store, StageSpec; "
        "spec = StageSpec('train', 'dist', 'dist_stage:run', {'x': 1}); "
        f"print(Store({str(tmp_path / 'store')!r}).run(spec, show_progress=False))"
    )
    here = Path(__file__).resolve().parent
    env_base = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parents[1]), str(here)]),
                "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**env_base, "RANK": str(r), "LOCAL_RANK": str(r)}, text=True)
             for r in (1, 0)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    spec = StageSpec("train", "dist", "dist_stage:run", {"x": 1})
    store = Store(tmp_path / "store")
    final = store.path(spec.key)
    assert store.is_complete(spec) and not final.with_name(final.name + ".partial").exists()
    assert (final / "data.txt").read_text() == "3\n"  # rank 0 wrote the all-reduced sum (1 + 2)
    assert {f.name for f in final.glob("seen_by_rank*")} == {"seen_by_rank0", "seen_by_rank1"}
    assert {(final / f"seen_by_rank{r}").read_text() for r in (0, 1)} == {final.name + ".partial"}
    assert store.manifest(spec)["result"] == {"sum": 3.0, "world": 2}
    assert (final / "stage.rank1.log").is_file()


def test_stage_warnings_reach_the_terminal_not_only_the_log(tmp_path: Path, capfd: pytest.CaptureFixture
                                                         ) -> None:
    handlers = list(logging.getLogger("propensity").handlers)
    s = spec(impl="warning_stage")
    Store(tmp_path).run(s)
    err = capfd.readouterr().err
    assert f"warning ({s.key}): bf16 is emulated on this CPU" in err and "routine chatter" not in err
    assert logging.getLogger("propensity").handlers == handlers  # removed after the stage
