"""Wall time of one experiment on the local one-node Slurm cluster vs the local executor, side by side.

    .venv/bin/python benchmarks/slurm.py                          # configs/tiny.yaml
    .venv/bin/python benchmarks/slurm.py --config configs/quickstart.yaml --timeout 3600
    .venv/bin/python benchmarks/slurm.py --markdown               # also the table as Markdown (docs/slurm.md)

Both runs start from empty stores under ``--root`` (default /tmp/propensity-slurm-bench; it must not be under
/root, munged refuses). The Slurm run is timed from ``propensity run --executor slurm`` until its last job
ends. Also printed: the sum of the stages' own seconds (from their manifests), so the difference is the
executor's overhead (job start-up, imports per job, scheduling), and whether both reports agree.
The node declares ``--cpus`` (default: what ``slurmd -C`` reports) and every job asks for the config's
``cpus`` (default 2), so on a 2-core machine the cluster runs one job at a time, like the local executor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from core.store import Store  # noqa: E402
from propensity.config import load_config  # noqa: E402
from propensity.slurm_exec import experiment  # noqa: E402
from slurm.cluster import LocalCluster  # noqa: E402
from slurm.graph_status import wait_experiment  # noqa: E402


def _propensity() -> list[str]:
    exe = Path(sys.executable).parent / "propensity"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "propensity.cli"]


def _stage_seconds(store: Path) -> tuple[float, Path, set[str]]:
    """Sum of the stages' own run times, the report folder and the stage keys of the run in ``store``.

    Read from the manifests in the (fresh) store rather than from a graph rebuilt now, so that a change to
    the code while the benchmark runs cannot point at folders that were never written.
    """
    manifests = [json.loads(p.read_text()) for p in sorted(store.glob("*/*/manifest.json"))]
    reports = [m for m in manifests if m["stage"] == "report"]
    if len(reports) != 1:
        raise SystemExit(f"{store}: expected one report, found {[m['key'] for m in reports]}")
    total = sum(m["timings"]["seconds"] for m in manifests)
    return total, Store(store).path(reports[0]["key"]), {m["key"] for m in manifests}


def run_local(config: Path, store: Path) -> float:
    """Wall seconds of ``propensity run`` with the local executor."""
    t0 = time.monotonic()
    subprocess.run([*_propensity(), "run", str(config), "--executor", "local", "--set", f"store={store}",
                    "--no-progress"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t0


def run_slurm(config: Path, store: Path, timeout: float) -> float:
    """Wall seconds from submitting every stage until the last job finishes (SLURM_CONF must be set)."""
    t0 = time.monotonic()
    subprocess.run([*_propensity(), "run", str(config), "--executor", "slurm", "--set", f"store={store}"],
                   check=True, stdout=subprocess.DEVNULL)
    states = wait_experiment(experiment(load_config(config, [f"store={store}"])), timeout, poll=0.5)
    bad = {k: s.state for k, s in states.items() if s.state != "COMPLETED"}
    if bad:
        raise SystemExit(f"slurm jobs did not complete: {bad} (see `propensity status {config} "
                         f"--set store={store}`)")
    return time.monotonic() - t0


def cluster_cpus(cluster: LocalCluster) -> str:
    """The CPUs the cluster's node line declares (read from its slurm.conf)."""
    for line in cluster.conf.read_text().splitlines():
        if line.startswith("NodeName="):
            return next((w.split("=", 1)[1] for w in line.split() if w.startswith("CPUs=")), "?")
    return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "tiny.yaml")
    parser.add_argument("--root", type=Path, default=Path("/tmp/propensity-slurm-bench"))
    parser.add_argument("--cpus", type=int, default=None, help="CPUs the local cluster declares")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the Slurm run")
    parser.add_argument("--keep", action="store_true", help="keep the stores and leave the cluster up")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cluster = LocalCluster(args.root / "cluster", cpus=args.cpus)
    bringup = cluster.up()
    os.environ.update(cluster.env())
    stores = {"local": args.root / "store-local", "slurm": args.root / "store-slurm"}
    for store in stores.values():
        shutil.rmtree(store, ignore_errors=True)
    try:
        wall = {"local": run_local(args.config, stores["local"]),
                "slurm": run_slurm(args.config, stores["slurm"], args.timeout)}
        own = {name: _stage_seconds(store) for name, store in stores.items()}
    finally:
        if not args.keep:
            cluster.down()
    same = all(json.loads((own[n][1] / "results.json").read_text()) ==
               json.loads((own["local"][1] / "results.json").read_text()) for n in own)
    stages = len(own["slurm"][2])
    print(f"{args.config.name}: {stages} stages; local cluster up in {bringup:.1f} s "
          f"({cluster_cpus(cluster)} CPUs declared, {os.cpu_count()} on this machine)")
    print(f"{'executor':<10}{'wall s':>10}{'stages s':>10}{'overhead s':>12}")
    for name in ("local", "slurm"):
        print(f"{name:<10}{wall[name]:>10.1f}{own[name][0]:>10.1f}{wall[name] - own[name][0]:>12.1f}")
    print(f"results.json identical: {'yes' if same else 'NO'}")
    if own["local"][2] != own["slurm"][2]:  # not the executor's doing: the checkout changed between the runs
        print(f"note: the two runs built different stage keys (the code changed while this ran): "
              f"{sorted(own['local'][2] ^ own['slurm'][2])}")
    if args.markdown:
        print(f"\n| executor ({args.config.name}, {stages} stages) | wall s | sum of stage s | overhead s |")
        print("|---|---:|---:|---:|")
        labels = {"local": "local (`--executor local`)", "slurm": "local one-node Slurm cluster"}
        for name, label in labels.items():
            print(f"| {label} | {wall[name]:.1f} | {own[name][0]:.1f} | {wall[name] - own[name][0]:.1f} |")
    if not args.keep:
        for store in stores.values():
            shutil.rmtree(store, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
