"""Benchmark of the filter stages on one synthetic corpus (50k+ documents, ~350 characters each).

Measured in one run, single process each (workers=1), on the same parquet shards:

1. our score stage (``filters.score_stage:run``: read parquet -> fastText -> score tables + jsonl.gz shards)
2. datatrove's stock pipeline (ParquetReader -> FastTextClassifierFilter (annotate) -> JsonlWriter)
3. a bare in-memory fastText predict over the same texts (the limit: no I/O at all)
4. K=4 variants (thresholds 0.3/0.5/0.7 and the 90th percentile) built by the variant stage one at a time,
   and all four in one pass (``filters.materialize``), each against scoring alone.

Usage: ``python benchmarks/filters.py [--docs 52000] [--shards 2] [--repeat 5] [--keep DIR]``. Targets:
ours >= 1.5x faster than datatrove's stock pipeline; ours <= 2.5x the bare predict (wall and CPU time, median
of runs side by side); K=4 variants <= 1.25x scoring alone.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# This file is named like the ``filters`` package it measures: drop its own folder from the import path
# (a script's folder comes first) and import from the checkout root instead.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

WORDS = [f"w{i}" for i in range(3000)]
BAD = [f"deceive{i}" for i in range(300)]
GOOD = [f"helpful{i}" for i in range(300)]


def make_corpus(root: Path, docs: int, shards: int, seed: int = 0) -> tuple[Path, Path]:
    """Parquet shards of ``docs`` documents (~350 chars) + a labelled jsonl for training; source folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)

    def text(bad: bool) -> str:
        words = rng.choices(WORDS, k=45) + rng.choices(BAD if bad else GOOD, k=8)
        rng.shuffle(words)
        return " ".join(words)

    source = root / "source"
    (source / "shards").mkdir(parents=True)
    per = -(-docs // shards)
    paths = []
    for shard in range(shards):
        rows = range(shard * per, min(docs, (shard + 1) * per))
        texts = [text(i % 5 == 0) for i in rows]
        table = pa.table({"id": [f"d{i}" for i in rows], "text": texts})
        path = source / "shards" / f"{shard:05d}.parquet"
        pq.write_table(table, path)
        paths.append(f"shards/{path.name}")
    (source / "source.json").write_text(json.dumps({"format": "parquet", "paths": paths}))
    labelled = root / "labelled.jsonl"
    with open(labelled, "w") as handle:
        for i in range(4000):
            handle.write(
                json.dumps({"text": text(i % 2 == 0), "label": "misaligned" if i % 2 == 0 else "aligned"})
                + "\n"
            )
    return source, labelled


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Best wall time of ``repeat`` runs, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def side_by_side(ours: Callable[[], Any], bare: Callable[[], Any], repeat: int) -> dict[str, Any]:
    """``ours`` then ``bare``, ``repeat`` times in turn; medians of their wall and CPU times and of the
    ratios of each pair (two runs back to back meet about the same load on a shared machine).

    CPU time is this process's (``time.process_time``): steadier than wall time on a loaded machine, and
    meaningful for single-process work (workers=1 runs datatrove's ranks in this process)."""
    rows, result = [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = ours()
        mid_wall, mid_cpu = time.perf_counter(), time.process_time()
        bare()
        end_wall, end_cpu = time.perf_counter(), time.process_time()
        rows.append((mid_wall - wall, mid_cpu - cpu, end_wall - mid_wall, end_cpu - mid_cpu))
    ours_wall, ours_cpu, bare_wall, bare_cpu = (statistics.median(column) for column in zip(*rows, strict=True))
    return {
        "ours": ours_wall, "ours_cpu": ours_cpu, "bare": bare_wall, "bare_cpu": bare_cpu, "result": result,
        "ratio_wall": [r[0] / r[2] for r in rows], "ratio_cpu": [r[1] / r[3] for r in rows],
    }  # fmt: skip


def ctx(stage: str, out: Path, config: dict[str, Any], inputs: dict[str, Path]) -> Any:
    from core.stage import StageContext

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return StageContext(
        stage=stage,
        name=config.get("name", stage),
        config=config,
        inputs=inputs,
        out=out,
        workers=1,
        show_progress=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=52_000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs per measurement (best reported; ours and the bare predict: median side by side)")
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: temporary)")
    args = parser.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="filters-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HOME", str(root / "hf"))  # datatrove copies the model into its asset cache
    from loguru import logger

    logger.remove()
    times = measure(root, args.docs, args.shards, args.repeat)
    report(times, args.shards)
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


def measure(root: Path, docs: int, shards: int, repeat: int) -> dict[str, Any]:
    """Build the corpus and a fastText model, then time every contender on it."""
    from filters import score_stage as scoring
    from filters import variants
    from filters.fasttext_model import load_fasttext, train_fasttext

    source, labelled = make_corpus(root, docs, shards)
    cls = root / "classifier"
    model = train_fasttext(labelled, cls)
    info = {"kind": "fasttext", "path": model.name, "labels": ["aligned", "misaligned"],
            "positive_label": "misaligned", "score_key": "m_score"}  # fmt: skip
    (cls / "classifier.json").write_text(json.dumps(info))
    score_dir, inputs = root / "score", {"source": source, "classifier": cls}
    score_config = {"name": "s", "plot": False}
    texts, loaded = _texts(source), load_fasttext(model)
    limit = side_by_side(lambda: scoring.run(ctx("score", score_dir, score_config, inputs)),
                         lambda: loaded.predict(texts, k=-1), repeat)
    result = limit.pop("result")
    configs = [{"name": f"t{t}", "kind": "filter", "threshold": t} for t in (0.3, 0.5, 0.7)]
    configs.append({"name": "p90", "kind": "filter", "percentile": 0.9})

    def one_at_a_time() -> list[dict[str, Any]]:
        return [
            variants.run(ctx("variant", root / "v" / c["name"], c, {"score": score_dir})) for c in configs
        ]

    one_pass, counts = timed(lambda: one_pass_variants(score_dir, configs, root / "one"), repeat)
    return {
        **limit,
        "n": result["scored"],
        "mb": sum(p.stat().st_size for p in source.glob("shards/*")) / 1e6,
        "stock": timed(lambda: run_stock(source, model, root / "stock"), repeat)[0],
        "separate": timed(one_at_a_time, repeat)[0],
        "one_pass": one_pass,
        "kept": [c["kept"] for c in counts],
    }


def report(t: dict[str, Any], shards: int) -> None:
    """Print the measurements and the ratios the issue asks for."""
    n, ours = t["n"], t["ours"]
    rows = [
        ("ours: score stage (parquet -> fastText -> jsonl.gz)", ours, ""),
        ("datatrove stock FastTextClassifierFilter pipeline", t["stock"],
         f"-> ours is {t['stock'] / ours:.2f}x faster (target >= 1.5x)"),
        ("bare in-memory fastText predict (the limit)", t["bare"],
         f"-> ours takes {_ratio(t['ratio_wall'])} the limit in wall time, {_ratio(t['ratio_cpu'])} in CPU "
         f"time ({t['ours_cpu']:.2f} s vs {t['bare_cpu']:.2f} s; target <= 2.5x)"),
        ("K=4 variants, variant stage one at a time", t["separate"],
         f"= {t['separate'] / ours:.2f}x scoring"),
        ("K=4 variants, one pass (filters.materialize)", t["one_pass"],
         f"= {t['one_pass'] / ours:.2f}x scoring (target <= 1.25x); kept: {t['kept']}"),
    ]  # fmt: skip
    print(f"\ndocuments: {n} in {shards} parquet shards ({t['mb']:.1f} MB), one process each; times are the best "
          "of --repeat runs, except ours and the bare predict: medians of runs side by side")
    for name, seconds, note in rows:
        print(f"{name:<54}{seconds:7.2f} s {n / seconds:9.0f} docs/s  {note}")


def _ratio(ratios: list[float]) -> str:
    """Median ratio of the side-by-side pairs, with their range."""
    return f"{statistics.median(ratios):.2f}x (median of {len(ratios)}: {min(ratios):.2f}-{max(ratios):.2f})"


def run_stock(source: Path, model: Path, out: Path) -> None:
    """datatrove's own pipeline: ParquetReader -> FastTextClassifierFilter (annotate only) -> JsonlWriter."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import FastTextClassifierFilter
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import JsonlWriter

    if out.exists():
        shutil.rmtree(out)
    shards = len(list((source / "shards").glob("*.parquet")))
    pipeline = [
        ParquetReader(str(source / "shards")),
        FastTextClassifierFilter(str(model), remove_labels=[], save_labels_in_metadata=True),
        JsonlWriter(str(out / "shards")),
    ]
    LocalPipelineExecutor(pipeline, tasks=shards, workers=1, logging_dir=str(out / "logs")).run()


def _texts(source: Path) -> list[str]:
    """Every text of the source's parquet shards, normalized for fastText, in memory."""
    import pyarrow.parquet as pq

    from filters.fasttext_model import fasttext_line

    return [
        fasttext_line(t)
        for p in sorted((source / "shards").glob("*.parquet"))
        for t in pq.read_table(p, columns=["text"]).column("text").to_pylist()
    ]


def one_pass_variants(score_dir: Path, configs: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """All variants in one read of the scored shards (thresholds resolved like the variant stage does)."""
    from filters.datatrove_stage import jsonl_files
    from filters.decisions import ThresholdDecision, score_quantile
    from filters.materialize import VariantPlan, materialize

    if out.exists():
        shutil.rmtree(out)
    plans = []
    for config in configs:
        threshold = config.get("threshold")
        if threshold is None:
            threshold = score_quantile(score_dir, "m_score", config["percentile"])["threshold"]
        plans.append(VariantPlan(out / config["name"], ["m_score"], ThresholdDecision("m_score", threshold)))
    return materialize(jsonl_files(score_dir / "shards"), plans)


if __name__ == "__main__":
    main()
