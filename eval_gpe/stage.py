"""The ``eval`` stage: a battery of GPEs on one model (shared before-eval, then per GPE: narrow finetune with
scored checkpoints, after-eval, capability, optional free generation scored by a judge).

Inputs: ``model`` (a ``train`` folder; the HF model and tokenizer are in ``model/``), ``source`` (its
``source.json`` may name a ``heldout`` file: without one the held-out loss is skipped) and optionally
``classifier`` (for the classifier judge).
Writes:

- ``items.jsonl`` / ``summary.json``: the primary GPE in the original layout (out-of-distribution "seen
  behaviour" rows of phases before/after; ``summary.json`` adds ``battery`` and ``capability``).
- ``gpes/<name>/items.jsonl`` (every row: roles, splits, tamper phases), ``gpes/<name>/summary.json``,
  ``gpes/<name>/generations.jsonl`` (when generating).
- ``generations_before.jsonl``, ``cost.json`` (CPU seconds per phase; not deterministic), ``quarantine/``.

On CPU every process of the stage runs one torch thread, and with ``workers > 1`` the GPEs of the battery run
in that many processes at once (the shared part first, in this process, while they start). A GPE's numbers
are a function of its config and seed only, so any number of workers writes the same bytes; small models
score and finetune ~1.4x faster per core on one thread than on two.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from core.documents import DocumentReader, file_format, load_source
from core.errors import ConfigError, InputDataError
from core.names import escape_control_strings
from core.stage import StageContext
from eval_gpe.battery import Costs, GPERun, heldout_losses, run_gpe, score_shared
from eval_gpe.config import EvalStageConfig
from eval_gpe.data import narrow_texts
from eval_gpe.evalset_run import annotate, load_sets, quarantine_records, score_sets
from eval_gpe.evalsets.sets import LoadedSet
from eval_gpe.gpe_summary import summarize_gpe
from eval_gpe.items import build_items
from eval_gpe.phases import capability_tasks, free_generation, generation_prompts
from eval_gpe.registry import GPESpec
from eval_gpe.splits import APART_SPLITS, headline

__all__ = ["EvalStageConfig", "gpe_dir", "gpe_items", "load_model", "primary_rows", "read_heldout", "run"]


WORLD_MODULES = {"hard": "synth", "learnable": "synth.learnable"}
"""The module that makes a world's items and finetune texts (the same functions in each)."""


def _synth(world: str = "hard") -> ModuleType:
    return importlib.import_module(WORLD_MODULES[world])


def load_model(model_dir: Path, seed: int) -> tuple[Any, Any]:
    """HF causal LM (float32, eval mode) and tokenizer from ``model_dir``; seeds torch."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (model_dir / "config.json").is_file():
        raise InputDataError(
            f"input 'model': no HF model at {model_dir} (expected config.json from a train stage)"
        )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def _quarantine(out: Path, name: str, records: list[dict]) -> None:
    if records:
        _write_jsonl(out / "quarantine" / f"{name}.jsonl", records)


def read_heldout(
    source: Path, n_docs: int, out: Path, group_key: str = "domain"
) -> tuple[list[tuple[str, str]], int]:
    """First ``n_docs`` usable held-out ``(text, group)`` documents and how many records were quarantined.

    The file named by ``source.json``'s ``heldout`` is read by ``core.documents`` (jsonl, plain or compressed,
    or parquet, recognised by content) with the source's quarantine policy. No held-out file, or
    ``n_docs == 0``, gives no documents: the held-out loss is skipped (``None`` in the summary). Control
    strings are escaped as the score stage escapes the corpus's (``core.names``), so the loss reads the text
    training saw.
    ``group`` is ``metadata[group_key]``, else ``metadata["kind"]``, else ``"all"``."""
    spec = load_source(source)
    path = spec.heldout_path
    if path is None or n_docs == 0:
        return [], 0
    if not path.is_file():
        raise InputDataError(f"source.heldout: held-out file {path} does not exist (or is not a file)")
    reader = DocumentReader([str(path)], file_format(path), spec.text_key, spec.id_key)
    docs: list[tuple[str, str]] = []
    for _, text, record in reader:
        meta_doc = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
        docs.append((escape_control_strings(text)[0], str(meta_doc.get(group_key) or meta_doc.get("kind") or "all")))
        if len(docs) >= n_docs:
            break
    _quarantine(out, "heldout", reader.quarantined)
    if not docs:
        raise InputDataError(
            f"source.heldout: no usable documents in {path} (quarantined {reader.quarantine_counts})"
        )
    return docs, len(reader.quarantined)


def heldout_note(source: Path, n_docs: int) -> str | None:
    """Why the held-out loss is skipped (``None`` when it is computed)."""
    if n_docs == 0:
        return "skipped: eval.heldout_docs is 0"
    return None if load_source(source).heldout else "skipped: the source has no held-out file (source.heldout)"


def _check_prefixes(ctx: StageContext, tok: Any, prefixes: list[str]) -> None:
    for prefix in prefixes:
        if prefix and len(tok(prefix, add_special_tokens=False)["input_ids"]) != 1:
            ctx.log.warning(
                "prefix %r is not a single token for this tokenizer (is it a tagged model?)", prefix
            )


def _parse(ctx: StageContext) -> EvalStageConfig:
    try:
        cfg = EvalStageConfig.model_validate(ctx.config)
    except ValidationError as exc:
        raise ConfigError(f"eval stage {ctx.name}: invalid config:\n{exc}") from exc
    for role in ("model", "source"):
        if role not in ctx.inputs:
            raise ConfigError(f"eval stage {ctx.name}: missing input {role!r} (got {sorted(ctx.inputs)})")
    return cfg


def _gpe_summary(
    spec: GPESpec,
    run: GPERun,
    items: dict,
    cfg: EvalStageConfig,
    ctx: StageContext,
    n_bad: dict,
    before_loss: dict,
) -> dict:
    """One GPE's summary: the original keys plus in-distribution, never-seen, tamper and capability."""
    ood_ai = [i for i in items["ood"] if i["actor"] == "ai" and headline(i)]
    ood_ctrl = [i for i in items["ood"] if i["actor"] != "ai" and headline(i)]
    after = run.heldout_after or {}
    steps = spec.finetune.steps if spec.finetune is not None else 0
    return {
        "gpe": spec.name,
        "trait": spec.trait,
        "formats": spec.eval.formats if spec.eval is not None else [s.format for s in spec.evalsets],
        **summarize_gpe(run.rows, cfg.prefixes, cfg.tags(), cfg.bootstrap, ctx.seed, steps),
        "heldout_loss": before_loss["loss"],
        **({"heldout_loss_note": before_loss["note"]} if before_loss.get("note") else {}),
        "heldout_loss_after": after.get("loss"),
        "heldout_tokens": before_loss["tokens"],
        "capability": {
            "heldout_by_group_before": before_loss["by_group"],
            "heldout_by_group_after": after.get("by_group"),
        },
        "n_items": {
            "ai": len(ood_ai),
            "human": len(ood_ctrl),
            "in_distribution": sum(headline(i) for i in items["id"]),
            **{split: n for split in APART_SPLITS if (n := sum(i.get("split") == split for i in items["ood"]))},
        },
        "quarantined": n_bad,
        "finetune": run.finetune,
    }


@dataclass
class Shared:
    """What every GPE of the battery reuses: the base model, items, before-finetune results."""

    model: Any
    tok: Any
    items: dict[str, dict]
    n_bad_items: dict[str, int]
    heldout: list[tuple[str, str]]
    n_bad_heldout: int
    before_loss: dict
    before: dict
    prompts: list[dict]
    gen_before: dict | None
    caps_before: dict | None
    texts: dict[str, list[str]] = field(default_factory=dict)
    """Each GPE's narrow finetune texts (built once here, so worker processes need no data generator)."""
    n_bad_texts: dict[str, int] = field(default_factory=dict)
    sets: dict[str, list[LoadedSet]] = field(default_factory=dict)
    """Each GPE's file-based eval sets, read once."""
    sets_before: dict[str, list[dict]] = field(default_factory=dict)
    """Their rows on the base model, and the judged sets' answer counts (``judged_before``)."""
    judged_before: dict[str, dict] = field(default_factory=dict)


def primary_rows(rows: list[dict]) -> list[dict]:
    """The rows of the original ``items.jsonl``: out-of-distribution, seen behaviour, before / after."""
    return [
        r
        for r in rows
        if r["role"] == "ood" and headline(r) and r["phase"] in ("before", "after")
    ]


def gpe_dir(eval_dir: Path, gpe: str) -> Path:
    """Where an eval artifact keeps one GPE's ``summary.json`` and ``items.jsonl``."""
    return Path(eval_dir) / "gpes" / gpe


def gpe_items(eval_dir: Path, gpe: str) -> list[dict]:
    """Every item row (all roles, splits and phases) of one GPE in an eval artifact folder."""
    folder = gpe_dir(eval_dir, gpe)
    if not (folder / "summary.json").is_file():
        raise InputDataError(f"eval artifact {eval_dir} has no GPE {gpe!r} (no {folder / 'summary.json'})")
    with open(folder / "items.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _one_gpe(ctx: StageContext, cfg: EvalStageConfig, spec: GPESpec, shared: Shared, costs: Costs) -> dict:
    """Finetune, evaluate and summarise one GPE; writes ``gpes/<name>/`` and returns its summary."""
    items, folder, sets = shared.items[spec.name], gpe_dir(ctx.out, spec.name), shared.sets[spec.name]
    judged: dict[str, dict] = {"before": shared.judged_before[spec.name]}

    def extra(model: Any, phase: str, prefixes: list[str], with_judged: bool) -> list[dict]:
        rows, info = score_sets(ctx, model, shared.tok, spec, sets, cfg, phase, prefixes, folder, judged=with_judged)
        if info:
            judged[phase] = info
        return rows

    result = run_gpe(
        ctx, shared.model, shared.tok, spec, items, shared.before, shared.texts[spec.name], cfg,
        shared.heldout, costs, extra if sets else None,
    )
    result.rows[0:0] = shared.sets_before[spec.name]
    quarantined = {"items": shared.n_bad_items[spec.name], "heldout": shared.n_bad_heldout,
                   "finetune_rows": shared.n_bad_texts[spec.name]}
    summary = _gpe_summary(spec, result, items, cfg, ctx, quarantined, shared.before_loss)
    if sets:
        annotate(summary, sets, judged)
    gen_after = free_generation(ctx, result.model, shared.tok, shared.prompts, cfg, "after", costs)
    if gen_after is not None and shared.gen_before is not None:
        summary["generation"] = {"before": shared.gen_before["summary"], "after": gen_after["summary"]}
        _write_jsonl(folder / "generations.jsonl", gen_after["rows"])
    if shared.caps_before is not None:
        summary["capability"]["lm_eval_before"] = shared.caps_before
        summary["capability"]["lm_eval_after"] = capability_tasks(result.model, shared.tok, cfg, costs)
    result.model = None
    _write_jsonl(folder / "items.jsonl", result.rows)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if spec.name == cfg.gpe:
        _write_jsonl(ctx.out / "items.jsonl", primary_rows(result.rows))
    return summary


# A battery worker process: its model and tokenizer, loaded once by ``_init_worker``.
_WORKER: dict[str, Any] = {}


def _init_worker(model_dir: str, seed: int) -> None:
    import torch

    torch.set_num_threads(1)
    _WORKER["model"], _WORKER["tok"] = load_model(Path(model_dir), seed)


def _worker_gpe(fields: dict, spec: GPESpec, shared: Shared) -> tuple[dict, dict, float]:
    """``_one_gpe`` in a worker process: ``(summary, CPU seconds per phase, CPU seconds in all)``."""
    start, costs = time.process_time(), Costs()
    ctx = StageContext(**fields, show_progress=False)
    shared = replace(shared, model=_WORKER["model"], tok=_WORKER["tok"])
    summary = _one_gpe(ctx, EvalStageConfig.model_validate(ctx.config), spec, shared, costs)
    return summary, costs.cpu_s, time.process_time() - start


@contextmanager
def _battery_pool(ctx: StageContext, n_gpes: int) -> Iterator[ProcessPoolExecutor | None]:
    """``min(workers, GPEs)`` spawned processes (None when that is 1); they load the model meanwhile."""
    n = min(max(ctx.workers, 1), n_gpes)
    if n < 2:
        yield None
        return
    pool = ProcessPoolExecutor(
        n, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
        initargs=(str(Path(ctx.inputs["model"]) / "model"), ctx.seed),
    )
    for _ in range(n):  # start every worker now, so imports overlap the shared eval
        pool.submit(time.sleep, 0)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_battery(
    ctx: StageContext, cfg: EvalStageConfig, specs: list[GPESpec], shared: Shared, costs: Costs,
    pool: ProcessPoolExecutor | None,
) -> tuple[dict[str, dict], float]:
    """Every GPE's summary (in battery order) and the CPU seconds its worker processes spent."""
    if pool is None:
        return {spec.name: _one_gpe(ctx, cfg, spec, shared, costs) for spec in specs}, 0.0
    fields = {"stage": ctx.stage, "name": ctx.name, "config": ctx.config, "inputs": ctx.inputs,
              "out": ctx.out, "seed": ctx.seed, "workers": 1}
    data = replace(shared, model=None, tok=None)
    futures: dict[Future, str] = {
        pool.submit(_worker_gpe, fields, spec, data): spec.name for spec in specs
    }
    done, worker_cpu = {}, 0.0
    for future in ctx.progress(as_completed(futures), total=len(futures), desc="battery"):
        summary, cpu_s, total = future.result()
        done[futures[future]] = summary
        worker_cpu += total
        for phase, seconds in cpu_s.items():
            costs.cpu_s[phase] = costs.cpu_s.get(phase, 0.0) + seconds
    return {spec.name: done[spec.name] for spec in specs}, worker_cpu


def _shared(
    ctx: StageContext, cfg: EvalStageConfig, specs: list[GPESpec], synth: ModuleType, costs: Costs
) -> Shared:
    """Items of every GPE, held-out docs, the base model and everything scored on it before finetuning."""
    items, n_bad_items, sets = {}, {}, {}
    for spec in specs:
        items[spec.name], bad = build_items(spec, synth) if spec.eval is not None else ({"ood": [], "id": []}, [])
        n_bad_items[spec.name] = len(bad)
        _quarantine(ctx.out, "items" if spec is specs[0] else f"items-{spec.name}", bad)
        sets[spec.name] = load_sets(spec)  # before the model loads: a bad item file fails fast
        for name, records in quarantine_records(spec, sets[spec.name]).items():
            _quarantine(ctx.out, name, records)
    source = Path(ctx.inputs["source"])
    heldout, n_bad_heldout = read_heldout(source, cfg.heldout_docs, ctx.out, cfg.heldout_group_key)
    model, tok = load_model(Path(ctx.inputs["model"]) / "model", ctx.seed)
    _check_prefixes(ctx, tok, cfg.prefixes)
    start = time.process_time()
    before_loss = heldout_losses(model, tok, heldout, cfg.batch_size)
    note = heldout_note(source, cfg.heldout_docs)
    if note:
        ctx.log.info("held-out loss %s", note)
        before_loss["note"] = note
    costs.add("heldout_loss", start)
    start = time.process_time()
    before = score_shared(ctx, model, tok, specs, items, cfg.prefixes, cfg.batch_size, "before",
                          cfg.prefix_placement)
    sets_before, judged_before = {}, {}
    for spec in specs:
        sets_before[spec.name], judged_before[spec.name] = score_sets(
            ctx, model, tok, spec, sets[spec.name], cfg, "before", cfg.prefixes, gpe_dir(ctx.out, spec.name))
    costs.add("trait_eval_before", start)
    prompts = generation_prompts(items[specs[0].name], cfg)
    gen_before = free_generation(ctx, model, tok, prompts, cfg, "before", costs)
    caps_before = capability_tasks(model, tok, cfg, costs)
    texts, n_bad_texts = {}, {}
    for spec in specs:
        texts[spec.name], bad_rows = narrow_texts(spec, synth, tok) if spec.finetune is not None else ([], [])
        n_bad_texts[spec.name] = len(bad_rows)
        _quarantine(ctx.out, f"finetune-{spec.name}", bad_rows)
    return Shared(
        model, tok, items, n_bad_items, heldout, n_bad_heldout, before_loss, before, prompts, gen_before,
        caps_before, texts, n_bad_texts, sets, sets_before, judged_before,
    )


@contextmanager
def _one_thread() -> Iterator[None]:
    """One torch thread for the duration (see the module docstring), then the caller's count again."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run(ctx: StageContext) -> dict:
    """The battery on one model; writes the files listed in the module docstring and returns the summary."""
    cfg = _parse(ctx)
    specs, synth, costs, wall, cpu = cfg.specs(), _synth(cfg.world), Costs(), time.time(), time.process_time()
    with _one_thread(), _battery_pool(ctx, len(specs)) as pool:
        shared = _shared(ctx, cfg, specs, synth, costs)
        summaries, worker_cpu = _run_battery(ctx, cfg, specs, shared, costs, pool)
    if shared.gen_before is not None:
        _write_jsonl(ctx.out / "generations_before.jsonl", shared.gen_before["rows"])
    top = {**summaries[specs[0].name], "gpes": [s.name for s in specs], "battery": summaries}
    (ctx.out / "summary.json").write_text(json.dumps(top, indent=2) + "\n")
    cost = {
        "cpu_s": {k: round(v, 2) for k, v in sorted(costs.cpu_s.items())},
        "cpu_s_total": round(time.process_time() - cpu + worker_cpu, 2),
        "wall_s": round(time.time() - wall, 2),
    }
    (ctx.out / "cost.json").write_text(json.dumps(cost, indent=2) + "\n")
    return {**top, "cost": cost}
