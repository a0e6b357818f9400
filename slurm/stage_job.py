"""What every batch job of a submitted graph runs: one stage, or one part of a stage, as frozen in the graph.

``python -m slurm.stage_job stage GRAPH KEY`` runs stage ``KEY`` (for an array stage: the finishing run);
``python -m slurm.stage_job part GRAPH KEY COUNT`` runs part ``$SLURM_ARRAY_TASK_ID`` of ``COUNT``. Both
rebuild the stage from the graph file with ``core.store`` alone (no experiment config, no graph builder).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from core.errors import PropensityError
from core.store import Store
from slurm.errors import SlurmError
from slurm.graph import load_graph


def _attempt(key: str, what: str) -> None:
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    job = os.environ.get("SLURM_JOB_ID", "-")
    print(f"stage {key}{what}: attempt {int(restarts) + 1 if restarts.isdigit() else restarts} "
          f"(job {job} on {socket.gethostname()})", flush=True)


def run_stage(graph_path: Path, key: str, *, show_progress: bool = False) -> Path:
    """Run stage ``key`` exactly as frozen in ``graph_path`` (what every batch job does); return its folder.

    Prints one line per attempt to stdout (the job log), with Slurm's restart count, so that a requeued job's
    appended log shows each attempt; the stage's own output goes to ``stage.log`` in its folder.
    """
    data, specs = load_graph(graph_path)
    if key not in specs:
        raise SlurmError(f"stage {key!r} is not in graph file {graph_path} (stages: {', '.join(specs)})")
    _attempt(key, "")
    folder = Store(data["store"]).run(specs[key], workers=int(data["workers"]), show_progress=show_progress)
    print(f"stage {key}: complete in {folder}", flush=True)
    return folder


def run_part(graph_path: Path, key: str, index: int, count: int) -> Path:
    """Run part ``index`` of ``count`` of stage ``key`` (one array task); return the stage's work folder."""
    data, specs = load_graph(graph_path)
    if key not in specs:
        raise SlurmError(f"stage {key!r} is not in graph file {graph_path} (stages: {', '.join(specs)})")
    if not 0 <= index < count:
        raise SlurmError(f"part {index} of stage {key}: not in 0..{count - 1}")
    _attempt(key, f" part {index}/{count}")
    folder = Store(data["store"]).run_part(specs[key], index, count, workers=int(data["workers"]))
    print(f"stage {key} part {index}/{count}: complete in {folder}", flush=True)
    return folder


def _task_index() -> int:
    value = os.environ.get("SLURM_ARRAY_TASK_ID", "")
    if not value.isdigit():
        raise SlurmError(f"SLURM_ARRAY_TASK_ID is {value!r}: `part` runs inside a job array task")
    return int(value)


def main(argv: Sequence[str] | None = None) -> int:
    """The command of every batch job: ``stage GRAPH KEY`` or ``part GRAPH KEY COUNT``."""
    parser = argparse.ArgumentParser(prog="python -m slurm.stage_job",
                                     description="Run one stage (or one part of it) of a submitted graph.")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("stage", help="run one stage as frozen in a graph file written at submission")
    p.add_argument("graph", type=Path, help="<store>/slurm/<experiment>/graphs/graph-<hash>.json")
    p.add_argument("key", help="the stage key <stage>/<name>-<hash>")
    p.add_argument("--progress", action="store_true", help="show progress bars (off in batch logs)")
    q = sub.add_parser("part", help="run part $SLURM_ARRAY_TASK_ID of COUNT of a stage (one array task)")
    q.add_argument("graph", type=Path)
    q.add_argument("key")
    q.add_argument("count", type=int, help="parts the stage's ranks are split into")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    for noisy in ("datatrove", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if args.action == "stage":
            run_stage(args.graph, args.key, show_progress=args.progress)
        else:
            run_part(args.graph, args.key, _task_index(), args.count)
    except PropensityError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
