"""What a stage used: CPU-seconds, peak memory, GPU-seconds and bytes on disk, for its manifest.

``UsageMeter`` is started before a stage runs and read after it: CPU time is ``getrusage`` of this process
and of its waited-for children (datatrove's worker processes), as a difference, so a process that runs
several stages charges each its own. Peak RSS is the larger of this process's high-water mark (reset at
start where Linux allows it, ``/proc/self/clear_refs``) and the largest child's. GPU-seconds are wall time
times the GPUs the job holds (Slurm's ``SLURM_GPUS_ON_NODE``, else ``CUDA_VISIBLE_DEVICES``, else the
devices torch initialised), so they count what a scheduler charges, not what kernels kept busy. Parts of a
job array write their usage to ``usage/part-<i>.json`` in the work folder; the finishing run adds them.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

USAGE_DIR = "usage"


def _cpu() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def _own_peak_kb() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def held_gpus() -> int:
    """GPUs this process holds: Slurm's allocation, else the visible devices, else those torch opened."""
    slurm = os.environ.get("SLURM_GPUS_ON_NODE", "")
    if slurm.isdigit():
        return int(slurm)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return int(torch.cuda.device_count())
    return 0


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder`` (what the stage leaves on disk)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())


class UsageMeter:
    """Measures one stage run: create it just before the stage, call :meth:`read` just after."""

    def __init__(self) -> None:
        try:  # "5": reset this process's peak RSS to its current RSS (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self.wall0 = time.time()
        self.own0, self.kids0 = _cpu()

    def read(self, folder: Path | None = None) -> dict[str, Any]:
        """``cpu_seconds``, ``wall_seconds``, ``peak_rss_mb``, ``gpus``, ``gpu_seconds`` (and ``bytes_written``
        of ``folder``) since the meter started."""
        own, kids = _cpu()
        wall = time.time() - self.wall0
        kids_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if kids > self.kids0 else 0
        gpus = held_gpus()
        usage: dict[str, Any] = {
            "cpu_seconds": round(own - self.own0 + kids - self.kids0, 3),
            "wall_seconds": round(wall, 3),
            "peak_rss_mb": round(max(_own_peak_kb(), kids_peak) / 1024, 1),
            "gpus": gpus,
            "gpu_seconds": round(wall * gpus, 3),
        }
        if folder is not None:
            usage["bytes_written"] = folder_bytes(folder)
        return usage


def write_part_usage(work: Path, index: int, usage: dict[str, Any]) -> None:
    """Record what part ``index`` of a job array used, for the finishing run to add up."""
    folder = Path(work) / USAGE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".part-{index}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(usage, sort_keys=True) + "\n")
    os.replace(tmp, folder / f"part-{index}.json")


def total_usage(work: Path, own: dict[str, Any]) -> dict[str, Any]:
    """``own`` (the finishing run) plus every part's usage: CPU and GPU seconds add, peak RSS is the max,
    ``parts`` counts the array tasks and ``part_wall_seconds`` is the longest task."""
    parts = [json.loads(p.read_text()) for p in sorted((Path(work) / USAGE_DIR).glob("part-*.json"))]
    if not parts:
        return own
    total = dict(own)
    for key in ("cpu_seconds", "gpu_seconds"):
        total[key] = round(own[key] + sum(p[key] for p in parts), 3)
    total["peak_rss_mb"] = max([own["peak_rss_mb"], *(p["peak_rss_mb"] for p in parts)])
    total["parts"] = len(parts)
    total["part_wall_seconds"] = max(p["wall_seconds"] for p in parts)
    return total
