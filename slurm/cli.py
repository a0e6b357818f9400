"""``propensity slurm up|down|status``: a throw-away one-node Slurm cluster on this machine."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from core.errors import PropensityError
from slurm.cluster import LocalCluster

DEFAULT_ROOT = Path(os.environ.get("PROPENSITY_SLURM_ROOT", "/tmp/propensity-slurm"))
"""Where the cluster lives unless ``--root`` says otherwise (must not be under /root: munged refuses)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="propensity slurm", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    for action, text in (("up", "start the cluster (no-op when it is up) and print the SLURM_CONF export"),
                         ("down", "stop the cluster's daemons"),
                         ("status", "say whether the cluster is up; exit 0 when up, 1 when down")):
        p = sub.add_parser(action, help=text, description=text)
        p.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                       help=f"folder holding config, state and logs (default {DEFAULT_ROOT}, "
                       "or $PROPENSITY_SLURM_ROOT)")
        if action == "up":
            p.add_argument("--cpus", type=int, default=None,
                           help="CPUs to declare for the node (default: what `slurmd -C` reports)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one action; print ``export SLURM_CONF=...`` for ``up`` and ``status``; return the exit code."""
    args = _parser().parse_args(argv)
    cluster = LocalCluster(args.root, cpus=getattr(args, "cpus", None))
    export = f"export SLURM_CONF={shlex.quote(str(cluster.conf))}"
    try:
        if args.action == "up":
            seconds = cluster.up()
            note = "already up" if seconds == 0.0 else f"up in {seconds:.1f} s"
            print(f"# local slurm cluster {note} (root {cluster.root}); point clients at it with:")
            print(export)
        elif args.action == "down":
            cluster.down()
            print(f"# local slurm cluster under {cluster.root} stopped")
        else:
            up = cluster.is_up()
            print(f"# local slurm cluster under {cluster.root} is {'up' if up else 'down'}")
            if up:
                print(export)
            return 0 if up else 1
    except PropensityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
