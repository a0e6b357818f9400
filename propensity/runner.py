"""Planning and running the stage graph on the local executor."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import BudgetError
from core.store import StageSpec, Store
from propensity.config import ExperimentConfig
from propensity.graph import build_graph

log = logging.getLogger("propensity")


@dataclass
class PlanRow:
    spec: StageSpec
    action: str
    """``reuse`` (complete), ``resume`` (a partial attempt exists) or ``run``."""


def plan(cfg: ExperimentConfig, store: Store | None = None) -> list[PlanRow]:
    store = store or Store(cfg.store)
    rows = []
    for spec in build_graph(cfg):
        if store.is_complete(spec):
            action = "reuse"
        elif store.has_partial(spec):
            action = "resume"
        else:
            action = "run"
        rows.append(PlanRow(spec, action))
    return rows


def format_plan(rows: list[PlanRow], store: Store) -> str:
    width = max(len(r.spec.key) for r in rows)
    lines = [f"store: {store.root}", f"{'stage':<{width}}  action  inputs"]
    for r in rows:
        inputs = ", ".join(sorted({s.stage for s in r.spec.inputs.values()})) or "-"
        lines.append(f"{r.spec.key:<{width}}  {r.action:<6}  {inputs}")
    counts = {a: sum(r.action == a for r in rows) for a in ("reuse", "resume", "run")}
    lines.append(f"{len(rows)} stages: {counts['reuse']} reuse, {counts['resume']} resume, {counts['run']} run")
    return "\n".join(lines)


def check_budgets(cfg: ExperimentConfig, specs: list[StageSpec], store: Store) -> None:
    """Before any training: every variant must hold the token budget (variants are token-matched).

    A variant with windowed injection needs fewer windows of its own (injected rows replace base rows) and
    enough injected windows for the schedule; both are checked as the trainer will count them."""
    from pretrain.data import TokenFolder, WindowLoader
    from pretrain.train import inject_plan

    t = cfg.train
    steps = t.tokens // (t.batch_size * t.seq_len)
    short = []
    for spec in specs:
        if spec.stage != "train" or store.is_complete(spec):
            continue
        tokenized = store.path(spec.inputs["tokenize"].key)
        name = spec.inputs["tokenize"].name
        loader = WindowLoader(TokenFolder(tokenized / "tokens"), t.seq_len, t.batch_size, t.packing, 0, 0,
                              inject_plan(tokenized, steps))
        base, injected = loader.windows_needed(steps)
        if injected and injected > len(loader.inject_table):
            short.append(f"{name}: the injection schedule takes {injected:,} windows, "
                         f"{len(loader.inject_table):,} injected")
        if base > len(loader.table):
            short.append(f"{name}: {len(loader.table) * t.seq_len:,} window positions offered, "
                         f"{base * t.seq_len:,} needed")
    if short and not t.allow_repeat:
        raise BudgetError(
            f"token budget train.tokens={t.tokens:,} is more than some variants hold "
            f"({'; '.join(sorted(set(short)))}). "
            "Lower train.tokens, add data, or set train.allow_repeat: true to train for more than one epoch."
        )


def run_local(cfg: ExperimentConfig, *, show_progress: bool = True, stream=None) -> Path:
    """Run every incomplete stage in order; return the report folder."""
    stream = stream or sys.stderr
    store = Store(cfg.store)
    specs = build_graph(cfg)
    total = len(specs)
    budget_checked = False
    for i, spec in enumerate(specs, 1):
        if spec.stage == "train" and not budget_checked:
            check_budgets(cfg, specs, store)
            budget_checked = True
        if store.is_complete(spec):
            print(f"[{i:>2}/{total}] reuse  {spec.key}", file=stream, flush=True)
            continue
        print(f"[{i:>2}/{total}] run    {spec.key} ...", file=stream, flush=True)
        t0 = time.time()
        store.run(spec, workers=cfg.executor.workers, show_progress=show_progress)
        print(f"[{i:>2}/{total}] done   {spec.key} ({time.time() - t0:.1f}s)", file=stream, flush=True)
    return store.path(specs[-1].key)


def find_spec(cfg: ExperimentConfig, key: str) -> StageSpec:
    """The stage with this key, or with this ``stage/name`` (without the hash)."""
    specs = build_graph(cfg)
    for spec in specs:
        if key in (spec.key, f"{spec.stage}/{spec.name}"):
            return spec
    raise KeyError(f"no stage {key!r} in this experiment; stages: {', '.join(s.key for s in specs)}")
