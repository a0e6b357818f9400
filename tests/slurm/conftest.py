"""A real one-node Slurm cluster for the whole test session (skipped when Slurm is not installed)."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm.cluster import LocalCluster

SLURM_TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "scancel")


def slurm_missing() -> list[str]:
    """Slurm/munge binaries that are not on PATH."""
    return [tool for tool in SLURM_TOOLS if shutil.which(tool) is None]


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[LocalCluster]:
    """Starts a LocalCluster under /tmp (munged refuses sockets under /root or pytest's 0700 tmp dirs)."""
    missing = slurm_missing()
    if missing:
        pytest.skip(f"Slurm binaries missing ({', '.join(missing)}): run scripts/slurm-ci-setup.sh")
    root = Path(tempfile.mkdtemp(prefix="propensity-slurm-test-", dir="/tmp"))
    root.chmod(0o755)
    cluster = LocalCluster(root / "cluster", cpus=4)
    try:
        t0 = time.monotonic()
        cluster.up()
        cluster.bringup_seconds = time.monotonic() - t0  # type: ignore[attr-defined]
        yield cluster
    finally:
        cluster.down()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def slurm_workdir(slurm_cluster: LocalCluster, request: pytest.FixtureRequest) -> Path:
    """A fresh folder for one test's job outputs, inside the cluster's world-readable tree."""
    unique = request.node.nodeid.replace("/", "_").replace("::", "__").replace(".py", "")
    folder = slurm_cluster.root.parent / "work" / unique
    folder.mkdir(parents=True)
    return folder
