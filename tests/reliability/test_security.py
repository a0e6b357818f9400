"""Security: safe YAML, no pickle from artifacts, safetensors weights, contained store paths, no network,
quoted shell scripts."""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from reliability_helpers import ROOT, TINY, RunOutcome, crash_resume, read_lines, sandbox_env

from core.errors import ConfigError, StageError, StoreError
from core.store import Store
from propensity.cli import main
from propensity.config import load_config
from propensity.graph import build_graph

PACKAGES = ("propensity", "filters", "conditional_tags", "pretrain", "eval_gpe", "slurm")
PAYLOAD = '!!python/object/apply:os.system ["touch {marker}"]'


def test_yaml_tags_in_config_are_rejected(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    config = tmp_path / "evil.yaml"
    config.write_text(
        TINY.read_text().replace("experiment: tiny", "experiment: " + PAYLOAD.format(marker=marker))
    )
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(config)
    assert not marker.exists()


def test_yaml_tags_in_overrides_are_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do; what matters is the marker
        load_config(TINY, ["experiment=" + PAYLOAD.format(marker=marker)])
    assert not marker.exists()


def test_yaml_tags_in_overrides_are_a_config_error(tmp_path: Path) -> None:
    try:
        load_config(TINY, ["experiment=" + PAYLOAD.format(marker=tmp_path / "x")])
    except ConfigError as err:
        assert "experiment" in str(err)
    except Exception as err:  # noqa: BLE001
        raise AssertionError(f"not a ConfigError: {type(err).__name__}") from err


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            out.append((ast.unparse(node.func), node))
    return out


def _keyword(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else ast.unparse(kw.value)
    return None


UNSAFE_CALLS = (
    "pickle.load",
    "pickle.loads",
    "cPickle.load",
    "dill.load",
    "joblib.load",
    "yaml.load",
    "yaml.unsafe_load",
    "yaml.full_load",
    "marshal.loads",
)


def unsafe_uses(source: str, where: str) -> list[str]:
    """Unsafe deserialization in ``source``: pickle, unsafe YAML, torch.load without weights_only=True,
    trust_remote_code, np.load(allow_pickle=True)."""
    problems = []
    for name, call in _calls(ast.parse(source, where)):
        at = f"{where}:{call.lineno} {name}"
        if name in UNSAFE_CALLS:
            problems.append(at)
        if name.endswith("torch.load") and _keyword(call, "weights_only") is not True:
            problems.append(f"{at} without weights_only=True")
        if _keyword(call, "trust_remote_code") not in (None, False):
            problems.append(f"{at} with trust_remote_code")
        if name.endswith("np.load") and _keyword(call, "allow_pickle") not in (None, False):
            problems.append(f"{at} with allow_pickle")
    if re.search(r"^\s*(import pickle|from pickle import)", source, re.M):
        problems.append(f"{where} imports pickle")
    return problems


def test_unsafe_use_scanner_finds_each_pattern() -> None:
    bad = (
        "import pickle\nimport torch, yaml, numpy as np\n"
        "torch.load(p)\ntorch.load(p, weights_only=False)\ntorch.load(p, weights_only=True)\n"
        "pickle.loads(b)\nyaml.load(s)\nyaml.safe_load(s)\nnp.load(f, allow_pickle=True)\n"
        "AutoModel.from_pretrained(x, trust_remote_code=True)\n"
    )
    assert [p.split(" ", 1)[0] for p in unsafe_uses(bad, "bad.py")] == [
        "bad.py:3",
        "bad.py:4",
        "bad.py:6",
        "bad.py:7",
        "bad.py:9",
        "bad.py:10",
        "bad.py",
    ]


def test_no_unsafe_deserialization_in_packages() -> None:
    """No pickle, no unsafe YAML, torch.load only with weights_only=True, no remote code from the hub."""
    files = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    assert len(files) > 50, "the scan must see the packages"
    problems = [p for path in files for p in unsafe_uses(path.read_text(), str(path.relative_to(ROOT)))]
    assert problems == []


def test_only_safetensors_weights_in_trained_models(blocked_run: RunOutcome) -> None:
    assert blocked_run.returncode == 0, blocked_run.output[-4000:]
    models = list(blocked_run.store.glob("train/*/model"))
    assert models
    for model in models:
        names = {p.name for p in model.iterdir()}
        assert "model.safetensors" in names
        assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))], names


class _Bomb:
    """Unpickling this object would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_checkpoint_with_pickle_code_is_not_executed(
    blocked_run: RunOutcome, reliability_config: Path, tmp_path: Path
) -> None:
    """A checkpoint carrying code in its pickle stops the resume without running the code."""
    assert blocked_run.returncode == 0, blocked_run.output[-4000:]
    marker = tmp_path / "executed"
    cfg = load_config(reliability_config, [f"store={tmp_path / 'store'}"])
    train = next(s for s in build_graph(cfg) if s.stage == "train")
    crash_resume().seed_store(blocked_run.store, train, tmp_path / "store")
    final = Store(cfg.store).path(train.key)
    ckpt = final.with_name(final.name + ".partial") / "checkpoints" / "step-00000020.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"model": {}, "step": 20, "bomb": _Bomb(marker)}, ckpt)
    with pytest.raises(StageError, match="Weights only load failed|weights_only"):
        Store(cfg.store).run(train, workers=1, show_progress=False)
    assert not marker.exists()


@pytest.mark.parametrize(
    "key", ["../outside", "source/../../outside", "/etc/passwd", "source/x/../../../etc"]
)
def test_store_keys_cannot_escape(tmp_path: Path, key: str) -> None:
    with pytest.raises(StoreError, match="escapes the store root"):
        Store(tmp_path / "store").path(key)


def test_symlink_out_of_the_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "source").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(StoreError, match="escapes the store root"):
        Store(tmp_path / "store").path("source/synthetic-abc")
    assert Store(tmp_path / "store").path("score/x-1").parent.name == "score"


def test_stage_command_refuses_unknown_keys(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["stage", str(TINY), "../../etc/passwd", "--set", f"store={tmp_path / 'store'}"]) == 2
    assert "no stage '../../etc/passwd'" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def test_sandbox_blocks_and_records_network(tmp_path: Path) -> None:
    """The sandbox used by the runs below really blocks connects and DNS, and logs each attempt."""
    code = (
        "import socket\nfor f in (lambda: socket.socket().connect(('127.0.0.1', 9)),\n"
        "          lambda: socket.getaddrinfo('huggingface.co', 443)):\n"
        "    try:\n        f()\n    except OSError as e:\n        print(type(e).__name__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=sandbox_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert proc.stdout.split() == ["NetworkDisabled", "NetworkDisabled"]
    assert [line.split(" ", 1)[1] for line in read_lines(tmp_path / "net.log")] == [
        "connect ('127.0.0.1', 9)",
        "getaddrinfo 'huggingface.co'",
    ]


def test_tiny_run_needs_no_network(blocked_run: RunOutcome) -> None:
    """The whole one-variant tiny experiment ran with every connect and DNS lookup refused, and tried none."""
    assert blocked_run.returncode == 0, blocked_run.output[-4000:]
    assert read_lines(blocked_run.logs / "net.log") == []
    assert list(blocked_run.store.glob("report/*/report.md"))


HOSTILE = "st ore$(touch PWNED)`touch PWNED2`'q\"d;x&y"


def test_generated_slurm_scripts_quote_every_value(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A store path full of shell syntax survives the sbatch scripts verbatim, and nothing is executed."""
    store = tmp_path / HOSTILE
    assert main(["run", str(TINY), "--executor", "slurm", "--dry-run", "--set", f"store={store}"]) == 0
    capsys.readouterr()
    scripts = sorted(store.glob("slurm/tiny/dry-run-*/*.sbatch"))
    submit = next(store.glob("slurm/tiny/dry-run-*/submit.sh"))
    assert len(scripts) == len(build_graph(load_config(TINY, [f"store={store}"])))
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text(
        f'#!/bin/bash\nprintf "%s\\n" "$@" >> {shlex.quote(str(tmp_path / "argv"))}\necho 42\n'
    )
    (fake / "sbatch").chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "HOME": str(tmp_path)}
    subprocess.run(["bash", str(submit)], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=60)
    for script in scripts:
        subprocess.run(["bash", "-n", str(script)], check=True)
        line = next(x for x in script.read_text().splitlines() if " stage " in x and not x.startswith("#"))
        command = line.removeprefix("exec ").removesuffix(" &")
        printed = subprocess.run(
            ["bash", "-c", "printf '%s\\n' " + command],
            cwd=tmp_path,
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        argv = printed.splitlines()
        graph = argv[argv.index("stage") + 1]  # the stage graph written at submission, inside the store
        assert graph.startswith(str(store / "slurm")) and Path(graph).is_file(), argv
    assert not list(tmp_path.rglob("PWNED*")), "a value was executed by the shell"
    assert (tmp_path / "argv").read_text().count("--parsable") == len(scripts)
