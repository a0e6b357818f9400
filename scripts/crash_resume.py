"""Crash-resume harness: SIGKILL stages at random points, rerun them, compare with an uninterrupted run.

1. A reference store runs every stage the chosen kill targets need, uninterrupted (in this process).
2. For each kill point: a fresh store gets copies of the target's upstream folders (complete), then
   ``propensity stage CONFIG KEY`` starts as a subprocess (its own process group), is SIGKILLed after a
   seeded random delay within the stage's measured duration (counted from the moment its ``.partial`` work
   folder appears), and is rerun to completion.
3. The rerun's artifact is compared with the reference byte for byte (``manifest.json`` without timings,
   host and package versions; timing fields dropped from results and ``log.jsonl``; datatrove ``logs/``,
   ``stage.log`` and training checkpoints excluded, but every other file name must match), and for data
   stages the set of document ids must equal the reference's, with no duplicate and none missing.

    .venv/bin/python scripts/crash_resume.py configs/tiny.yaml --points 3 --stages score,variant,train

Prints a table (stage, kill points tried, killed mid-stage, survived) and exits non-zero when any point
did not survive. ``--json`` writes every point's outcome.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("score", "variant", "tokenize", "train", "eval")
DATA_STAGES = {"score": ("shards", "quarantine"), "variant": ("shards", "excluded", "quarantine")}
"""Stages whose documents carry ids, and the folders (jsonl.gz) that together must hold every input id."""
SKIPPED_DIRS = ("logs",)
"""datatrove's per-attempt logs and stats (timings, host names): never compared."""
VOLATILE_FILES = ("stage.log",)
UNCOMPARED_BYTES = ("checkpoints",)
"""Names compared, bytes not: a checkpoint records the wall-clock training seconds."""
MANIFEST_VOLATILE = ("timings", "host", "versions", "usage", "machine")
TIMING_FILES = ("cost.json",)
TEXT_SUFFIXES = (".md", ".json", ".jsonl", ".txt")
"""JSON files that record resource use (the eval stage's CPU/wall seconds): compared without timing keys."""
STAGE_TIMEOUT_S = 1800


@dataclass
class KillPoint:
    """The outcome of one kill point."""

    stage: str
    key: str
    delay_s: float
    window_s: float
    killed: bool = False
    """False when the stage finished before the delay ran out (the rerun then only reuses it)."""
    partial_left: bool = False
    rerun_rc: int | None = None
    differences: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def survived(self) -> bool:
        return self.rerun_rc == 0 and not self.differences


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for stage subprocesses: offline HF, no tokenizer threads, plus ``extra``."""
    env = dict(os.environ)
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.setdefault(key, "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.update(extra or {})
    return env


def load(config: str | Path, overrides: list[str], store: Path) -> Any:
    """The experiment config with ``store`` pointed at ``store``."""
    from propensity.config import load_config

    return load_config(config, [*overrides, f"store={store}"])


def closure(spec: Any) -> dict[str, Any]:
    """``spec`` and every stage it depends on, by key."""
    out = {spec.key: spec}
    for upstream in spec.inputs.values():
        out.update(closure(upstream))
    return out


def pick_targets(
    specs: list[Any], stages: list[str], points: int, names: list[str] | None = None
) -> list[Any]:
    """Per stage kind, ``points`` targets cycling through its instances (only names matching ``names``)."""
    targets = []
    for kind in stages:
        found = [s for s in specs if s.stage == kind and (not names or any(n in s.name for n in names))]
        if not found:
            raise SystemExit(f"no {kind!r} stage in this experiment (names filter: {names})")
        targets += [found[i % len(found)] for i in range(points)]
    return targets


def build_reference(cfg: Any, targets: list[Any]) -> Path:
    """Run (or reuse) every stage the targets need in ``cfg.store``, uninterrupted; return the store root."""
    from core.store import Store
    from propensity.graph import build_graph

    store = Store(cfg.store)
    needed: dict[str, Any] = {}
    for target in targets:
        needed.update(closure(target))
    for spec in build_graph(cfg):  # topological order
        if spec.key in needed and not store.is_complete(spec):
            t0 = time.time()
            store.run(spec, workers=cfg.executor.workers, show_progress=False)
            print(f"reference: {spec.key} ({time.time() - t0:.1f}s)", file=sys.stderr, flush=True)
    return store.root


def seed_store(reference: Path, target: Any, dest: Path) -> None:
    """Copy the complete upstream folders of ``target`` (not the target) from ``reference`` into ``dest``."""
    for key in closure(target):
        if key != target.key:
            shutil.copytree(reference / key, dest / key)


def stage_command(config: Path, overrides: list[str], store: Path, key: str) -> list[str]:
    sets = [arg for o in [*overrides, f"store={store}"] for arg in ("--set", o)]
    return [sys.executable, "-m", "propensity.cli", "stage", str(config), key, "--no-progress", *sets]


def kill_once(
    cmd: list[str], partial: Path, delay: float, log: Path, env: dict[str, str], after_glob: str | None = None
) -> bool:
    """Start ``cmd``; once ``partial`` exists (and holds a file matching ``after_glob``, when given) wait
    ``delay`` s and SIGKILL its whole process group.

    Returns whether the kill landed (False: the process had already exited).
    """
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    deadline = time.time() + STAGE_TIMEOUT_S
    ready = (lambda: partial.exists()) if after_glob is None else (lambda: any(partial.glob(after_glob)))
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    end = time.time() + delay
    while proc.poll() is None and time.time() < end:
        time.sleep(min(0.005, max(0.0, end - time.time())))
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return killed


def run_kill_point(
    config: Path,
    overrides: list[str],
    reference: Path,
    target: Any,
    workdir: Path,
    delay: float,
    env: dict[str, str],
    after_glob: str | None = None,
    attempts: int = 4,
) -> KillPoint:
    """One kill point on ``target`` in a fresh store under ``workdir``; see the module docstring.

    When the stage finishes before the delay runs out (the machine got faster than during the reference), the
    store is reset and the kill retried with half the delay, up to ``attempts`` times.
    """
    t0 = time.time()
    ref_folder = reference / target.key
    window = max(0.05, json.loads((ref_folder / "manifest.json").read_text())["timings"]["seconds"])
    point = KillPoint(target.stage, target.key, round(delay, 3), window)
    store = workdir / "store"
    cmd = stage_command(config, overrides, store, target.key)
    final = store / target.key
    partial = final.with_name(final.name + ".partial")
    for _ in range(attempts):
        shutil.rmtree(store, ignore_errors=True)
        seed_store(reference, target, store)
        # a kill that lands after the rename (the process was still exiting) interrupted nothing
        point.killed = kill_once(cmd, partial, point.delay_s, workdir / "stage.out", env, after_glob) and (
            partial.exists()
        )
        if point.killed:
            break
        point.delay_s = round(point.delay_s / 2, 3)
    point.partial_left = partial.exists()
    if final.exists() and not (final / ".complete").is_file():
        point.differences.append("after the kill the final folder exists without .complete")
    with open(workdir / "stage.out", "ab") as out:
        point.rerun_rc = subprocess.run(
            cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=STAGE_TIMEOUT_S, check=False
        ).returncode
    if point.rerun_rc == 0:
        point.differences += compare_artifacts(ref_folder, final)
        point.differences += check_ids(target.stage, ref_folder, final, store)
        if partial.exists():
            point.differences.append(f"{partial.name} left behind after a successful rerun")
    else:
        point.differences.append(f"rerun failed (rc {point.rerun_rc}); see {workdir / 'stage.out'}")
    point.seconds = round(time.time() - t0, 2)
    return point


def _files(folder: Path) -> set[str]:
    out = set()
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if path.is_file() and rel.parts[0] not in SKIPPED_DIRS and rel.name not in VOLATILE_FILES:
            out.add(rel.as_posix())
    return out


def _timing_key(key: str) -> bool:
    """Keys that measure wall-clock or CPU time, or throughput: they differ between any two runs."""
    return (
        "seconds" in key
        or key.endswith(("_s", "per_s"))
        or key.startswith(("cpu_s", "wall_s"))
        or key in ("elapsed", "duration")
    )


def _drop_timing(value: Any) -> Any:
    """``value`` without timing keys (recursively)."""
    if isinstance(value, dict):
        return {k: _drop_timing(v) for k, v in value.items() if not _timing_key(k)}
    if isinstance(value, list):
        return [_drop_timing(v) for v in value]
    return value


def normalized_manifest(path: Path) -> dict[str, Any]:
    """A manifest without what legitimately differs between two runs of the same stage."""
    data = json.loads(path.read_text())
    for key in MANIFEST_VOLATILE:
        data.pop(key, None)
    return _drop_timing(data)


def _same(ref: Path, new: Path, rel: str, roots: tuple[Path, Path] | None = None) -> bool:
    if rel == "manifest.json":
        return normalized_manifest(ref) == normalized_manifest(new)
    if rel in TIMING_FILES:
        return _drop_timing(json.loads(ref.read_text())) == _drop_timing(json.loads(new.read_text()))
    if rel.endswith("log.jsonl"):
        read = lambda p: [_drop_timing(json.loads(line)) for line in p.read_text().splitlines()]  # noqa: E731
        return read(ref) == read(new)
    a, b = ref.read_bytes(), new.read_bytes()
    if roots and a != b and rel.endswith(TEXT_SUFFIXES):
        a, b = a.replace(str(roots[0]).encode(), b"<store>"), b.replace(str(roots[1]).encode(), b"<store>")
    return a == b


def compare_artifacts(ref: Path, new: Path, roots: tuple[Path, Path] | None = None) -> list[str]:
    """Differences between two folders of the same stage key (empty when they match).

    ``roots``: the two store roots; text files then compare with each root replaced by ``<store>``.
    """
    if not (new / ".complete").is_file():
        return [f"{new} is not complete"]
    ref_files, new_files = _files(ref), _files(new)
    problems = [f"missing file {f}" for f in sorted(ref_files - new_files)]
    problems += [f"extra file {f}" for f in sorted(new_files - ref_files)]
    for rel in sorted(ref_files & new_files):
        if Path(rel).parts[0] not in UNCOMPARED_BYTES and not _same(ref / rel, new / rel, rel, roots):
            problems.append(f"file differs: {rel}")
    return problems


def document_ids(folder: Path) -> list[str]:
    """Ids of every record in ``folder/*.jsonl.gz`` (quarantine records: their source position)."""
    ids = []
    for path in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                if "reason" in record and "source_file" in record:
                    ids.append(f"quarantine:{record['source_file']}:{record.get('line', record.get('row'))}")
                else:
                    ids.append(str(record["id"]))
    return ids


def _input_ids(stage: str, store: Path, folder: Path) -> list[str] | None:
    """Ids the stage was given: the score shards for a variant, the source shards for score."""
    inputs = json.loads((folder / "manifest.json").read_text())["inputs"]
    if stage == "variant":
        return document_ids(store / inputs["score"]["key"] / "shards")
    source = store / inputs["source"]["key"]
    spec = json.loads((source / "source.json").read_text())
    if spec.get("format", "jsonl") != "jsonl":
        return None
    ids = []
    for rel in spec["paths"]:
        path = Path(rel) if os.path.isabs(rel) else source / rel
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle if line.strip()]
        if any(spec.get("id_key", "id") not in r for r in records):
            return None  # ids made up by the reader: nothing to compare against
        ids += [str(r[spec.get("id_key", "id")]) for r in records]
    return ids


def check_ids(stage: str, ref: Path, new: Path, store: Path) -> list[str]:
    """For data stages: no duplicate id, the reference's ids exactly, and every input id accounted for."""
    if stage not in DATA_STAGES:
        return []
    got = [i for sub in DATA_STAGES[stage] for i in document_ids(new / sub)]
    want = [i for sub in DATA_STAGES[stage] for i in document_ids(ref / sub)]
    problems = [f"duplicate id {i!r} ({n}x)" for i, n in sorted(Counter(got).items()) if n > 1][:5]
    if set(got) != set(want):
        problems.append(
            f"ids differ from the reference: {len(set(want) - set(got))} missing, "
            f"{len(set(got) - set(want))} extra"
        )
    given = _input_ids(stage, store, new)
    documents = {i for i in got if not i.startswith("quarantine:")}
    quarantined = len(got) - len(documents)
    if given is not None and (not documents <= set(given) or len(documents) + quarantined != len(given)):
        problems.append(f"{len(given)} input documents but {len(documents)} ids + {quarantined} quarantined")
    return problems


def run_harness(
    config: Path,
    overrides: list[str],
    stages: list[str],
    points: int,
    seed: int,
    workdir: Path,
    names: list[str] | None = None,
    env: dict[str, str] | None = None,
    reference: Path | None = None,
    max_fraction: float = 1.0,
) -> list[KillPoint]:
    """Build (or reuse) the reference and try ``points`` kill points per stage kind; return every outcome.

    Each delay is drawn (seeded) uniformly from ``[0, max_fraction x the reference duration]``.
    """
    from propensity.graph import build_graph

    reference = reference or workdir / "reference"
    cfg = load(config, overrides, reference)
    targets = pick_targets(build_graph(cfg), stages, points, names)
    build_reference(cfg, targets)
    rng = random.Random(seed)
    results = []
    for i, target in enumerate(targets):
        point_dir = workdir / f"point-{i:03d}-{target.stage}"
        point_dir.mkdir(parents=True, exist_ok=True)
        window = json.loads((reference / target.key / "manifest.json").read_text())["timings"]["seconds"]
        delay = rng.uniform(0.0, max(0.05, window) * max_fraction)
        result = run_kill_point(config, overrides, reference, target, point_dir, delay, child_env(env))
        status = "survived" if result.survived else "FAILED: " + "; ".join(result.differences[:3])
        print(
            f"{target.key}: kill after {result.delay_s:.2f}s of {result.window_s:.2f}s "
            f"({'killed' if result.killed else 'finished first'}) -> {status}",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
    return results


def table(results: list[KillPoint]) -> str:
    """stage | kill points tried | killed mid-stage | survived, one row per stage kind and a total."""
    rows = [("stage", "tried", "killed mid-stage", "survived")]
    kinds = list(dict.fromkeys(r.stage for r in results))
    for kind in [*kinds, "total"]:
        sel = [r for r in results if kind in (r.stage, "total")]
        rows.append((kind, str(len(sel)), str(sum(r.killed for r in sel)), str(sum(r.survived for r in sel))))
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)) for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default=str(ROOT / "configs" / "tiny.yaml"))
    parser.add_argument("--points", type=int, default=3, help="kill points per stage kind (default 3)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {STAGES}")
    parser.add_argument(
        "--names", help="only stage instances whose name contains one of these (comma-separated)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill delays")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    parser.add_argument(
        "--workdir", help="folder for the reference and the kill stores (default: a temp dir)"
    )
    parser.add_argument("--reference", help="reuse (or build) the reference store here")
    parser.add_argument("--json", help="write every kill point's outcome to this file")
    args = parser.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown or args.points < 1:
        parser.error(f"--stages must be a subset of {STAGES} (got {unknown}) and --points >= 1")
    os.environ.update({k: v for k, v in child_env().items() if k not in os.environ})
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="crash-resume-")).resolve()
    t0 = time.time()
    results = run_harness(
        Path(args.config).resolve(),
        args.overrides,
        stages,
        args.points,
        args.seed,
        workdir,
        names=args.names.split(",") if args.names else None,
        reference=Path(args.reference).resolve() if args.reference else None,
    )
    print(table(results))
    print(
        f"{sum(r.survived for r in results)}/{len(results)} kill points survived in {time.time() - t0:.0f}s; "
        f"work folder {workdir}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps([asdict(r) | {"survived": r.survived} for r in results], indent=2)
        )
    return 0 if all(r.survived for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
