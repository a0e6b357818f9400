"""``propensity slurm up|down|status``: a throw-away one-node Slurm cluster on this machine.

Without ``--root`` the cluster is the one under ``$PROPENSITY_SLURM_ROOT``, else the one ``$SLURM_CONF`` points
at when that is a cluster these commands started (the export ``up`` prints), else the one under
``/tmp/propensity-slurm``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from core.errors import PropensityError
from slurm.cluster import LocalCluster

DEFAULT_ROOT = Path("/tmp/propensity-slurm")
"""Where the cluster lives unless ``--root``, ``$PROPENSITY_SLURM_ROOT`` or ``$SLURM_CONF`` say otherwise
(must not be under /root: munged refuses)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="propensity slurm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    for action, text in (("up", "start the cluster (no-op when it is up) and print the SLURM_CONF export"),
                         ("down", "cancel the cluster's jobs and stop its daemons; exit 1 when it was not "
                                  "running but another local cluster is (named in the message)"),
                         ("status", "say whether the cluster is up; exit 0 when up, 1 when down")):
        p = sub.add_parser(action, help=text, description=text)
        p.add_argument("--root", type=Path, default=None,
                       help="folder holding config, state and logs (default: $PROPENSITY_SLURM_ROOT, else the "
                       f"cluster $SLURM_CONF points at when it is a local one, else {DEFAULT_ROOT})")
        if action == "up":
            p.add_argument("--cpus", type=int, default=None,
                           help="CPUs to declare for the node (default: what `slurmd -C` reports)")
    return parser


def _conf_cluster() -> LocalCluster | None:
    """The local cluster ``$SLURM_CONF`` points at (None when unset or not one of ours)."""
    conf = os.environ.get("SLURM_CONF")
    return LocalCluster.from_conf(conf) if conf else None


def resolve_root(root: Path | None) -> tuple[Path, str]:
    """The cluster root to act on and where it came from (``--root``, an environment variable, the default)."""
    if root is not None:
        return Path(root).absolute(), "--root"
    if os.environ.get("PROPENSITY_SLURM_ROOT"):
        return Path(os.environ["PROPENSITY_SLURM_ROOT"]).absolute(), "$PROPENSITY_SLURM_ROOT"
    conf = _conf_cluster()
    if conf is not None:
        return conf.root, "$SLURM_CONF"
    return DEFAULT_ROOT, "default"


def _others_running(root: Path) -> list[LocalCluster]:
    """Local clusters other than the one under ``root`` that run (any daemon alive): the one ``$SLURM_CONF``
    points at, the one under ``$PROPENSITY_SLURM_ROOT`` and the default one."""
    candidates = [_conf_cluster(), *(LocalCluster(Path(p)) for p in (os.environ.get("PROPENSITY_SLURM_ROOT"),
                                                                    DEFAULT_ROOT) if p)]
    seen, out = {root}, []
    for cluster in candidates:
        if cluster is not None and cluster.root not in seen:
            seen.add(cluster.root)
            if cluster.running():
                out.append(cluster)
    return out


def _named(clusters: list[LocalCluster], action: str) -> str:
    return "; ".join(f"the local slurm cluster under {c.root} is up (`propensity slurm {action} --root "
                     f"{shlex.quote(str(c.root))}`)" for c in clusters)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one action; print ``export SLURM_CONF=...`` for ``up`` and ``status``; return the exit code."""
    args = _parser().parse_args(argv)
    root, origin = resolve_root(args.root)
    cluster = LocalCluster(root, cpus=getattr(args, "cpus", None))
    export = f"export SLURM_CONF={shlex.quote(str(cluster.conf))}"
    where = f"under {cluster.root}" + (f" (from {origin})" if origin.startswith("$") else "")
    try:
        if args.action == "up":
            seconds = cluster.up()
            note = "already up" if seconds == 0.0 else f"up in {seconds:.1f} s"
            print(f"# local slurm cluster {note} (root {cluster.root}); point clients at it with:")
            print(export)
        elif args.action == "down":
            running = cluster.running()
            cluster.down()  # also clears the pid files and socket a crashed cluster left
            if running:
                partly = "" if len(running) == 3 else f" (only {', '.join(running)} was running)"
                print(f"# local slurm cluster {where} stopped{partly}")
                return 0
            others = _others_running(cluster.root)
            if others:
                print(f"error: no local slurm cluster runs {where}, nothing stopped; "
                      f"{_named(others, 'down')}", file=sys.stderr)
                return 1
            print(f"# no local slurm cluster runs {where}: nothing to stop")
        else:
            up = cluster.is_up()
            print(f"# local slurm cluster {where} is {'up' if up else 'down'}")
            if up:
                print(export)
            else:
                others = _others_running(cluster.root)
                if others:
                    print(f"# but {_named(others, 'status')}")
            return 0 if up else 1
    except PropensityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
