"""What the cluster allows, checked before anything is submitted: array sizes and GPUs.

``MaxArraySize`` comes from ``scontrol show config`` (array indices must be below it); GPUs from the GRES
that ``sinfo`` lists per partition. A request the cluster cannot meet fails here, naming the config field,
instead of at ``sbatch`` time halfway through a graph (or, for GPUs on some clusters, pending forever).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import ConfigError
from slurm.errors import SlurmError


@dataclass(frozen=True)
class ClusterLimits:
    """The limits of one cluster as its controller reports them."""

    max_array_size: int
    """``MaxArraySize``: array task indices must be below this."""
    gpus_by_partition: Mapping[str, int]
    """The most GPUs one node of each partition has (0: none); ``*`` marks nothing, the default is
    ``default_partition``."""
    default_partition: str | None

    def gpus_in(self, partition: str | None) -> int:
        """The most GPUs a node of ``partition`` (the default one when None) has."""
        name = partition or self.default_partition
        if name is None:
            return max(self.gpus_by_partition.values(), default=0)
        return self.gpus_by_partition.get(name, 0)


def _out(argv: list[str], env: Mapping[str, str] | None) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    except FileNotFoundError as exc:
        raise SlurmError(f"`{argv[0]}` not found on PATH: is this a Slurm client machine?") from exc
    if proc.returncode != 0:
        raise SlurmError(f"`{shlex.join(argv)}` exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def gres_gpus(gres: str) -> int:
    """GPUs in one ``sinfo %G`` value: ``gpu:4``, ``gpu:a100:8(S:0-1)``, ``gpu:2,shard:8`` or ``(null)``."""
    total = 0
    for item in gres.split(","):
        fields = re.sub(r"\(.*?\)", "", item).split(":")
        if fields[0] == "gpu" and len(fields) >= 2 and fields[-1].isdigit():
            total += int(fields[-1])
    return total


def cluster_limits(env: Mapping[str, str] | None = None) -> ClusterLimits:
    """Ask the controller (``scontrol show config``, ``sinfo -h -o %P|%G``)."""
    conf = dict(re.findall(r"^(\w+)\s*=\s*(.*?)\s*$", _out(["scontrol", "show", "config"], env), flags=re.M))
    max_array = int(conf["MaxArraySize"]) if conf.get("MaxArraySize", "").isdigit() else 1001
    gpus: dict[str, int] = {}
    default = None
    for line in _out(["sinfo", "-h", "-o", "%P|%G"], env).splitlines():
        part, _, gres = line.partition("|")
        if part.endswith("*"):
            part = part[:-1]
            default = part
        gpus[part] = max(gpus.get(part, 0), gres_gpus(gres.strip()))
    return ClusterLimits(max_array, gpus, default)


def check_request(limits: ClusterLimits, field: str, *, array_tasks: int = 1, gpus: int = 0,
                  partition: str | None = None) -> None:
    """Refuse an array or a GPU count the cluster cannot give; ``field`` names the config section."""
    if array_tasks > limits.max_array_size:
        raise ConfigError(f"{field}.array_tasks: {array_tasks} tasks need array indices up to "
                          f"{array_tasks - 1}, but this cluster's MaxArraySize is {limits.max_array_size} "
                          f"(allowed: at most {limits.max_array_size} tasks; `scontrol show config`)")
    if gpus > 0:
        have = limits.gpus_in(partition)
        where = f"partition {partition or limits.default_partition or '(default)'}"
        if have < gpus:
            found = ", ".join(f"{p}: {n}" for p, n in sorted(limits.gpus_by_partition.items()))
            raise ConfigError(f"{field}.gpus: {gpus} GPU(s) per node asked, but no node of {where} has "
                              f"{'any' if have == 0 else 'that many'} (GPUs per node by partition, from "
                              f"sinfo GRES: {found or 'none'}; allowed: 0..{have})")
