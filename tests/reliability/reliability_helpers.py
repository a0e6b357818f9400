"""Shared helpers for the reliability tests: configs, a sandboxed subprocess environment, the harness module.

The sandbox is a ``sitecustomize.py`` put first on ``PYTHONPATH`` of every subprocess (and so of their own
children: fastText training, datatrove workers). It makes every IPv4/IPv6 ``connect`` and every DNS lookup
raise, recording the attempt in ``$PROPENSITY_TEST_NET_LOG``, and records each stage implementation call
(``<pid> start|end <key>``) in ``$PROPENSITY_TEST_CALL_LOG``, which shows which process did which work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.yaml"
ONE_VARIANT = [{"name": "filtered", "kind": "filter", "threshold": 0.5}]
"""The reliability runs use the tiny config with one variant (the filter: it has ``excluded/`` files)."""
RUN_TIMEOUT_S = 3600

SITECUSTOMIZE = '''\
"""Test sandbox (written by tests/reliability): no network; stage calls logged."""
import os
import socket

_NET_LOG = os.environ.get("PROPENSITY_TEST_NET_LOG")


def _record(what):
    if _NET_LOG:
        with open(_NET_LOG, "a") as f:
            f.write(f"{os.getpid()} {what}\\n")


class NetworkDisabled(OSError):
    pass


_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def _guard(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        _record(f"connect {address!r}")
        raise NetworkDisabled(f"network disabled by the reliability tests: connect to {address!r}")


def connect(self, address):
    _guard(self, address)
    return _connect(self, address)


def connect_ex(self, address):
    _guard(self, address)
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    _record(f"getaddrinfo {host!r}")
    raise NetworkDisabled(f"network disabled by the reliability tests: DNS lookup of {host!r}")


socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo

if os.environ.get("PROPENSITY_TEST_CALL_LOG"):
    import core.store as _store

    _load_impl = _store.StageSpec.load_impl

    def _logged_load_impl(self):
        impl = _load_impl(self)
        log = os.environ["PROPENSITY_TEST_CALL_LOG"]

        def run(ctx):
            with open(log, "a") as f:
                f.write(f"{os.getpid()} start {self.key}\\n")
            result = impl(ctx)
            with open(log, "a") as f:
                f.write(f"{os.getpid()} end {self.key}\\n")
            return result

        return run

    _store.StageSpec.load_impl = _logged_load_impl
'''


def sandbox_env(folder: Path) -> dict[str, str]:
    """Environment for sandboxed subprocesses; logs go to ``folder/net.log`` and ``folder/calls.log``."""
    site = folder / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    hf_home = folder / "hf-home"
    hf_home.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(
                [str(site), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "PROPENSITY_TEST_NET_LOG": str(folder / "net.log"),
            "PROPENSITY_TEST_CALL_LOG": str(folder / "calls.log"),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HOME": str(hf_home),
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    return env


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def stage_calls(folder: Path) -> list[tuple[int, str, str]]:
    """``(pid, "start"|"end", key)`` per stage implementation call recorded in ``folder/calls.log``."""
    out = []
    for line in read_lines(folder / "calls.log"):
        pid, event, key = line.split(" ", 2)
        out.append((int(pid), event, key))
    return out


def write_config(path: Path, changes: dict[str, Any] | None = None, base: Path = TINY) -> Path:
    """A copy of ``base`` with the top-level sections in ``changes`` replaced (``None`` removes one)."""
    data = yaml.safe_load(base.read_text())
    for key, value in (changes or {}).items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def one_variant_config(path: Path, changes: dict[str, Any] | None = None) -> Path:
    return write_config(path, {"variants": ONE_VARIANT, **(changes or {})})


def propensity(*args: str) -> list[str]:
    """The command line of the ``propensity`` CLI in this interpreter."""
    return [sys.executable, "-m", "propensity.cli", *args]


@dataclass
class RunOutcome:
    store: Path
    logs: Path
    """Folder with ``net.log`` and ``calls.log``."""
    returncode: int
    output: str


def run_cli(args: list[str], logs: Path, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run the CLI in the sandbox, capturing output."""
    return subprocess.run(
        propensity(*args),
        cwd=ROOT,
        env=sandbox_env(logs),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def crash_resume() -> ModuleType:
    """``scripts/crash_resume.py`` as a module (``scripts/`` is a namespace package on the test path)."""
    from scripts import crash_resume as module

    return module
