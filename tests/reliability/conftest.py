"""Session fixtures of the reliability suite: one sandboxed (network-less) run of the one-variant tiny config.

Its store is the reference of the crash-resume tests and the evidence of the security tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_helpers import RunOutcome, one_variant_config, run_cli


@pytest.fixture(scope="session")
def reliability_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/tiny.yaml with one variant (``filtered``): every stage kind, one train and one eval."""
    return one_variant_config(tmp_path_factory.mktemp("config") / "tiny-one-variant.yaml")


@pytest.fixture(scope="session")
def blocked_run(tmp_path_factory: pytest.TempPathFactory, reliability_config: Path) -> RunOutcome:
    """``propensity run`` of the reliability config with IPv4/IPv6 connects and DNS lookups disabled."""
    root = tmp_path_factory.mktemp("blocked-run")
    store, logs = root / "store", root / "logs"
    proc = run_cli(["run", str(reliability_config), "--set", f"store={store}", "--no-progress"], logs)
    return RunOutcome(store, logs, proc.returncode, proc.stdout + proc.stderr)
