"""What an experiment will cost before it runs (``propensity plan CONFIG --estimate``) and what it cost.

**Estimate.** Each stage's work is counted in units: documents for the data stages (``source``, ``score``,
``variant``, ``tokenize``) and the tokenizer (which reads them all), training tokens for ``train``, one run
for the rest. Costs come from the manifests already in the store that were measured on this kind of machine
(``machine`` in the manifest: architecture, core count, CPU model), per stage kind and flavour (the
classifier kind for ``score``, the model preset and device for ``train``): CPU-seconds, GPU-seconds and wall
seconds as a start-up part plus a part per unit (:func:`fit_line` over the sizes measured; one size takes its
start-up from :data:`DEFAULTS`), bytes written per unit. Where the store has none, :data:`DEFAULTS` apply
(documented in docs/slurm.md); every row says which. Wall time is the start-up plus the per-unit wall
measured per worker over the configured parallelism (workers, and the array parts that run at once on
Slurm); from defaults it is CPU time over the configured parallelism plus a per-job start-up.

**Cost table.** For a finished report, each intervention's cost (its variant stage, plus the shared score
stage for filter and tag variants) as a share of the training compute of the models it feeds, in CPU-hours
and GPU-hours, from the manifests' ``usage``.
"""

from __future__ import annotations

import glob
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import StoreError
from core.store import MANIFEST, StageSpec, Store, machine_class
from propensity.config import ExperimentConfig
from propensity.graph import STAGE_ORDER, build_graph
from propensity.local_exec import cores_of
from propensity.slurm_exec import source_shards, stage_jobs

DATA_STAGES = ("source", "score", "variant", "tokenize")
DOCUMENT_STAGES = (*DATA_STAGES, "tokenizer")
"""Stages whose work is counted in the corpus' documents (the tokenizer reads them all, then trains)."""
DEFAULTS: dict[str, float] = {
    "source_cpu_s_per_doc": 2e-4,        # the synthetic generator, or hashing files: ~5k docs/s per core
    "score_cpu_s_per_doc": 1 / 5_000,    # fastText / blocklist scoring incl. reading, parsing, writing
    "score_gpu_s_per_doc": 1 / 1_000,    # a transformer classifier (ModernBERT-size): ~1k docs/s per GPU
    "variant_cpu_s_per_doc": 1 / 20_000,  # one pass, kept lines copied as bytes
    "tokenize_cpu_s_per_token": 1 / 500_000,  # HF tokenizers BPE, per core
    "train_cpu_flops_per_s": 2e10,       # dense fp32 matmul per CPU thread
    "train_gpu_flops_per_s": 989e12 * 0.4,  # H100 bf16 peak at 40% MFU
    "eval_s_per_gpe": 60.0,              # one GPE battery item set for one small model
    "run_s": 30.0,                       # classifier training, tokenizer training, report
    "job_start_s": 5.0,                  # interpreter + imports per job
    # Start-up per stage (seconds that do not grow with its documents or tokens: imports, loading models,
    # datatrove's executor, the synthetic world, the histogram plot), for a store that measured one size only:
    # fitted over configs/tiny.yaml at scale 0.03 / 0.12 / 0.3 on the 2-core dev VM (docs/slurm.md).
    "source_start_up_s": 4.5,
    "score_start_up_s": 2.3,
    "variant_start_up_s": 0.2,
    "tokenize_start_up_s": 0.5,
    "train_start_up_s": 5.0,
    "bytes_per_token": 1.5,              # gzip jsonl of ~4 characters per token
    "tokens_per_doc": 1_000.0,           # web documents (FineWeb: ~1k tokens per document)
    "synthetic_tokens_per_doc": 250.0,   # the quickstart generator's documents
}
"""Throughputs used when the store has measured none on this machine (see docs/slurm.md)."""


@dataclass
class StageCost:
    """One row of the estimate."""

    key: str
    units: float
    unit: str
    cpu_s: float
    gpu_s: float
    wall_s: float
    bytes: float
    source: str
    """``measured (N runs)`` or ``default``."""
    share: float = 1.0
    """Fraction of the local machine the stage occupies (stages with less run side by side)."""


def _walk(store: Store) -> list[dict[str, Any]]:
    """Every complete manifest of the store (one walk)."""
    out = []
    for stage in STAGE_ORDER:
        for path in sorted(glob.glob(str(store.root / stage / "*" / MANIFEST))):
            try:
                out.append(json.loads(Path(path).read_text()))
            except (OSError, json.JSONDecodeError):
                continue
    return out


def flavour(stage: str, config: dict[str, Any], classifier: str | None = None) -> str:
    """What a throughput depends on besides the stage kind."""
    if stage == "score":
        return classifier or "fasttext"
    if stage == "train":
        return f"{config.get('model')}/{config.get('device', 'auto')}"
    if stage == "variant":
        return str(config.get("kind", ""))
    return ""


def _documents(result: dict[str, Any]) -> float | None:
    """A result's document count (the synthetic source records one per group and a ``total``)."""
    docs = result.get("documents")
    return docs.get("total") if isinstance(docs, dict) else docs


def _units(m: dict[str, Any]) -> float | None:
    r = m.get("result", {})
    if m["stage"] in ("score", "variant", "tokenizer"):
        return r.get("documents_in")
    if m["stage"] in ("tokenize", "source"):
        return _documents(r)
    if m["stage"] == "train":
        return r.get("tokens_seen") or m["config"].get("tokens")
    return 1.0


SPREAD = 1.5
"""Largest over smallest size measured from which a stage's start-up is fitted, not taken from defaults."""


def fit_line(points: list[tuple[float, float]], start_up: float = 0.0) -> tuple[float, float]:
    """``(fixed, per_unit)`` of ``y = fixed + per_unit * x`` through measured ``(x, y)`` points, both >= 0.

    Least squares when the sizes measured span :data:`SPREAD` or more. Sizes closer than that (one size, or
    a baseline and a filtered variant of it) cannot tell a start-up cost from work that grows with the size:
    then ``start_up`` (a documented default, at most 90% of what was measured) is taken as the fixed part
    and the rest as proportional."""
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    if max(x for x, _ in points) >= SPREAD * min(x for x, _ in points):
        slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
        fixed = mean_y - slope * mean_x
        if slope >= 0 and fixed >= 0:
            return fixed, slope
        if slope >= 0:  # the line crosses below zero: no start-up cost is measurable
            return 0.0, sum(y for _, y in points) / sum(x for x, _ in points)
        return mean_y, 0.0  # cost does not grow with the size measured: all of it fixed
    fixed = min(start_up, 0.9 * mean_y)
    return fixed, (mean_y - fixed) / mean_x


def measured_rates(store: Store, machine: str | None = None) -> dict[tuple[str, str], dict[str, float]]:
    """Per (stage kind, flavour): a fixed (start-up) part and a per-unit part of CPU, GPU and wall seconds,
    fitted over this machine's runs (:func:`fit_line`; wall against units per worker, and only from whole
    runs, not job-array parts), bytes per unit, with ``runs`` and ``sizes`` (distinct unit counts)."""
    machine = machine or machine_class()
    runs: dict[tuple[str, str], list[tuple[float, dict[str, Any]]]] = defaultdict(list)
    for m in _walk(store):
        usage, units = m.get("usage"), _units(m)
        if not usage or m.get("machine") != machine or not units:
            continue
        runs[(m["stage"], flavour(m["stage"], m["config"], m.get("result", {}).get("classifier_kind")))].append(
            (float(units), usage))
    rates = {}
    for key, points in runs.items():
        spread = max(u for u, _ in points) >= SPREAD * min(u for u, _ in points)
        rate: dict[str, float] = {"runs": len(points), "sizes": len({u for u, _ in points}) if spread else 1,
                                  "bytes_per_unit": sum(p.get("bytes_written", 0) for _, p in points)
                                  / sum(u for u, _ in points)}
        start_up = DEFAULTS.get(f"{key[0]}_start_up_s", 0.0)
        rate["cpu_s_fixed"], rate["cpu_s_per_unit"] = fit_line([(u, p["cpu_seconds"]) for u, p in points], start_up)
        rate["gpu_s_fixed"], rate["gpu_s_per_unit"] = fit_line([(u, p.get("gpu_seconds", 0.0)) for u, p in points])
        whole = [(u / p.get("workers", 1), p["wall_seconds"]) for u, p in points if "parts" not in p]
        slowdown = sum(p["wall_seconds"] for _, p in points) / max(1e-9, sum(p["cpu_seconds"] for _, p in points))
        # the start-up default is CPU time; the runs measured took `slowdown` times their CPU time in wall time
        rate["wall_fixed"], rate["wall_per_unit"] = (fit_line(whole, start_up * max(1.0, slowdown)) if whole
                                                     else (math.nan, math.nan))
        rates[key] = rate
    return rates


def corpus_documents(cfg: ExperimentConfig, store: Store, corpus_tokens: float | None,
                     tokens_per_doc: float) -> tuple[float, str]:
    """Documents of the configured corpus and how that number was found."""
    if corpus_tokens:
        return corpus_tokens / tokens_per_doc, f"--corpus-tokens {corpus_tokens:.3g} / {tokens_per_doc:g}"
    source = build_graph(cfg)[0]
    if store.is_complete(source) and _documents(store.manifest(source)["result"]):
        return float(_documents(store.manifest(source)["result"])), "source manifest"
    if cfg.source.kind == "synthetic":
        from synth.config import QUICKSTART_TOKENS, SyntheticSourceConfig

        scale = SyntheticSourceConfig.model_validate(cfg.source.synthetic).scale
        seen = [(_documents(m["result"]), m["config"]["scale"]) for m in _walk(store)
                if m["stage"] == "source" and _documents(m.get("result", {})) and m["config"].get("scale")]
        if seen:
            return scale * sum(d for d, _ in seen) / sum(s for _, s in seen), "synthetic scale x measured docs"
        return scale * QUICKSTART_TOKENS / DEFAULTS["synthetic_tokens_per_doc"], "synthetic scale x default docs"
    files = [p for pattern in cfg.source.paths for p in glob.glob(pattern)]
    size = sum(Path(p).stat().st_size for p in files)
    return size / (DEFAULTS["bytes_per_token"] * tokens_per_doc), f"{len(files)} file(s), {size:,} bytes"


def _parallel(cfg: ExperimentConfig, spec: StageSpec, shards: int) -> int:
    """Processes working on the stage at once as configured (workers x array parts running together)."""
    workers = cfg.executor.workers
    if spec.stage == "train":
        return spec.threads or workers
    if spec.stage not in ("score", "variant", "tokenize"):
        return workers
    if cfg.executor.kind != "slurm":
        return max(1, min(workers, shards))
    sj = stage_jobs(cfg, spec.stage)
    tasks = max(1, min(sj.array_tasks, shards))
    running = min(tasks, sj.array_throttle or tasks)
    return max(1, running * min(workers, math.ceil(shards / tasks)))


def _default(cfg: ExperimentConfig, spec: StageSpec, units: float, tokens_per_doc: float, par: int
             ) -> tuple[float, float, float, float]:
    """cpu_s, gpu_s, CPU-bound wall seconds (without start-up) and bytes of a stage from :data:`DEFAULTS`."""
    d, gpu, size = DEFAULTS, 0.0, 0.0
    if spec.stage in ("source", "score", "variant"):
        cpu = units * d[f"{spec.stage}_cpu_s_per_doc"]
        size = units * tokens_per_doc * d["bytes_per_token"]
        if spec.stage == "score" and cfg.classifier.kind == "transformer":
            gpu = units * d["score_gpu_s_per_doc"]
    elif spec.stage == "tokenize":
        cpu, size = units * tokens_per_doc * d["tokenize_cpu_s_per_token"], units * tokens_per_doc * 2
    elif spec.stage == "train":
        from pretrain.metrics import flops_per_token
        from pretrain.model import ModelSpec

        model = ModelSpec.preset(cfg.model.preset, cfg.model.overrides)
        flops = units * flops_per_token(model, cfg.tokenizer.vocab_size, cfg.train.seq_len)
        on_gpu = cfg.train.device.startswith("cuda")
        gpu = flops / d["train_gpu_flops_per_s"] if on_gpu else 0.0
        cpu = 0.0 if on_gpu else flops / (d["train_cpu_flops_per_s"] * par)
        size = model.param_count(cfg.tokenizer.vocab_size) * 16.0
        return cpu * par, gpu, cpu, size
    elif spec.stage == "eval":
        cpu = d["eval_s_per_gpe"] * len(cfg.eval.gpes)
    else:
        cpu = d["run_s"]
    return cpu, gpu, cpu / par, size


def _gpus_at_once(cfg: ExperimentConfig, spec: StageSpec, shards: int) -> int:
    """GPUs working on the stage at once: per job (or array part) x parts running together."""
    if cfg.executor.kind != "slurm":
        return 1
    sj = stage_jobs(cfg, spec.stage)
    tasks = max(1, min(sj.array_tasks, shards)) if spec.stage in ("score", "variant", "tokenize") else 1
    return max(1, min(tasks, sj.array_throttle or tasks) * (sj.resources.gpus or 1) * (sj.resources.nodes or 1))


def estimate(cfg: ExperimentConfig, store: Store | None = None, *, corpus_tokens: float | None = None,
             tokens_per_doc: float | None = None) -> tuple[list[StageCost], str]:
    """Every stage's estimated cost, and how the corpus size was found."""
    store = store or Store(cfg.store)
    rates = measured_rates(store)
    measured_tpd = [m["result"]["tokens"] / _documents(m["result"]) for m in _walk(store)
                    if m["stage"] == "tokenize" and _documents(m.get("result", {}))]
    fallback = DEFAULTS["synthetic_tokens_per_doc" if cfg.source.kind == "synthetic" and not corpus_tokens
                        else "tokens_per_doc"]
    tpd = tokens_per_doc or (sum(measured_tpd) / len(measured_tpd) if measured_tpd and not corpus_tokens
                             else fallback)
    docs, how = corpus_documents(cfg, store, corpus_tokens, tpd)
    shards = source_shards(cfg) or 1
    if corpus_tokens:  # a corpus of that size has as many shards as the arrays are configured to use
        shards = max(shards, 1_000_000)
    rows = []
    for spec in build_graph(cfg):
        units, unit = (docs, "docs") if spec.stage in DOCUMENT_STAGES else (
            (float(cfg.train.tokens), "tokens") if spec.stage == "train" else (1.0, "run"))
        par = _parallel(cfg, spec, shards)
        key = (spec.stage, flavour(spec.stage, spec.config, cfg.classifier.kind))
        rate = rates.get(key)
        if rate is None:
            cpu, gpu, wall, size = _default(cfg, spec, units, tpd, par)
            wall = max(wall, gpu / _gpus_at_once(cfg, spec, shards)) + DEFAULTS["job_start_s"]
            source = "default"
        else:
            cpu, gpu = (rate[f"{x}_fixed"] + units * rate[f"{x}_per_unit"] for x in ("cpu_s", "gpu_s"))
            size = units * rate["bytes_per_unit"]
            wall = (rate["wall_fixed"] + units * rate["wall_per_unit"] / par
                    if not math.isnan(rate["wall_per_unit"]) else cpu / par)
            wall = max(wall, gpu / _gpus_at_once(cfg, spec, shards))
            runs, sizes = int(rate["runs"]), int(rate["sizes"])
            fixed = f"{sizes} sizes" if sizes > 1 else "1 size, default start-up"
            source = f"measured ({runs} run{'s' if runs > 1 else ''}, {fixed})"
        share = cores_of(spec, cfg.executor.workers) / cfg.executor.workers
        rows.append(StageCost(spec.key, units, unit, cpu, gpu, wall, size, source,
                              share if cfg.executor.kind == "local" else 1.0))
    return rows, how


def _h(seconds: float) -> str:
    return f"{seconds / 3600:.3g}" if seconds >= 36 else f"{seconds / 3600:.2g}"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def _wall(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 86400}d {s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 86400 else (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}")


def format_estimate(cfg: ExperimentConfig, rows: list[StageCost], how: str) -> str:
    """The ``--estimate`` table: per stage and in total. The total wall time runs the stages one after another,
    except that locally stages needing part of the machine share it (``StageSpec.cores``)."""
    width = max(len(r.key) for r in rows)
    lines = [f"estimate for {cfg.experiment} on {machine_class()} ({cfg.executor.kind} executor, "
             f"{cfg.executor.workers} worker(s)); corpus: {how}",
             f"{'stage':<{width}}  {'units':>10}  {'CPU-h':>8}  {'GPU-h':>8}  {'disk':>9}  {'wall':>11}  from"]
    for r in rows:
        lines.append(f"{r.key:<{width}}  {r.units:>10.3g}  {_h(r.cpu_s):>8}  {_h(r.gpu_s):>8}  {_size(r.bytes):>9}"
                     f"  {_wall(r.wall_s):>11}  {r.source} [{r.unit}]")
    total = [sum(getattr(r, f) for r in rows) for f in ("cpu_s", "gpu_s", "bytes")]
    total.append(sum(r.wall_s * r.share for r in rows))
    how_wall = ("stages in sequence, small ones side by side" if any(r.share < 1 for r in rows)
                else "stages in sequence; independent stages overlap on Slurm")
    lines.append(f"{'total':<{width}}  {'':>10}  {_h(total[0]):>8}  {_h(total[1]):>8}  {_size(total[2]):>9}"
                 f"  {_wall(total[3]):>11}  (wall: {how_wall})")
    return "\n".join(lines)


# ---- the cost table of a finished report ---------------------------------------------------------------
def cost_rows(store: Store, report_manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Per variant: the intervention's usage (variant stage + the score stage it reads, unless a baseline)
    and the training usage of the models it feeds (from the report's inputs' manifests)."""
    inputs = {role: ref["key"] for role, ref in report_manifest["inputs"].items()}
    rows = []
    for role, key in sorted(inputs.items()):
        if not role.startswith("variant:"):
            continue
        name = role.split(":", 1)[1]
        variant = store.manifest(key)
        parts = [variant] + ([] if variant["result"].get("kind") == "baseline" else
                             [store.manifest(variant["inputs"]["score"]["key"])])
        trains = [store.manifest(k) for r, k in inputs.items() if r.startswith(f"train:{name}:")]

        def total(ms: list[dict[str, Any]], field: str) -> float:
            return sum(m.get("usage", {}).get(field, 0.0) for m in ms)

        row = {"variant": name, "cpu_s": total(parts, "cpu_seconds"), "gpu_s": total(parts, "gpu_seconds"),
               "train_cpu_s": total(trains, "cpu_seconds"), "train_gpu_s": total(trains, "gpu_seconds"),
               "train_flops": sum(m["result"].get("flops_per_token", 0) * m["result"].get("tokens_seen", 0)
                                  for m in trains), "measured": all("usage" in m for m in parts + trains)}
        train_total = row["train_cpu_s"] + row["train_gpu_s"]
        row["share"] = (row["cpu_s"] + row["gpu_s"]) / train_total if train_total else None
        rows.append(row)
    return rows


def print_costs(report_dir: Path, console: Any) -> None:
    """Print the cost table of the report in ``report_dir`` (nothing for stores made before usage was kept)."""
    from rich.table import Table

    from core.lineage import locate

    try:
        store, key = locate(report_dir)
    except StoreError:  # a report folder outside a store (copied away): its inputs' usage is not at hand
        return
    rows = cost_rows(store, store.manifest(key))
    if not rows or not any(r["measured"] for r in rows):
        return
    table = Table(title="intervention cost (score + variant stages) vs training the models it feeds")
    for h in ("variant", "CPU-h", "GPU-h", "training CPU-h", "training GPU-h", "training FLOPs", "share"):
        table.add_column(h, justify="left" if h == "variant" else "right")
    for r in rows:
        share = "-" if r["share"] is None else f"{100 * r['share']:.2f}%"
        table.add_row(r["variant"], _h(r["cpu_s"]), _h(r["gpu_s"]), _h(r["train_cpu_s"]), _h(r["train_gpu_s"]),
                      f"{r['train_flops']:.3g}", share + ("" if r["measured"] else " (some stages unmeasured)"))
    console.print(table)
