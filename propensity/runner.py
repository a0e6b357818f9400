"""Planning and running the stage graph on the local executor."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from core.store import StageSpec, Store
from propensity.config import ExperimentConfig
from propensity.graph import build_graph
from propensity.local_exec import run_graph
from propensity.preflight import check_inputs

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
    """Before any training: every variant of a train stage still to run must hold the token budget
    (``pretrain.checks.check_budgets``, the train stage's own count; variants are token-matched)."""
    from pretrain.checks import check_budgets as check_train_budgets

    pending = [s for s in specs if s.stage == "train" and not store.is_complete(s)]
    if pending:
        check_train_budgets(pending[0].config, {s.inputs["tokenize"].name: store.path(s.inputs["tokenize"].key)
                                                for s in pending})


def run_local(cfg: ExperimentConfig, *, show_progress: bool = True, stream=None) -> Path:
    """Check every input file (``propensity.preflight``), then run every incomplete stage on this machine
    (``propensity.local_exec``: in order, small stages side by side); return the report folder."""
    stream = stream or sys.stderr
    check_inputs(cfg)
    store = Store(cfg.store)
    specs = build_graph(cfg)
    budget_checked = False

    def before_stage(spec: StageSpec) -> None:
        nonlocal budget_checked
        if spec.stage == "train" and not budget_checked:
            check_budgets(cfg, specs, store)
            budget_checked = True

    run_graph(store, specs, cfg.executor.workers, show_progress=show_progress, stream=stream,
              before_stage=before_stage)
    return store.path(specs[-1].key)


def find_spec(cfg: ExperimentConfig, key: str) -> StageSpec:
    """The stage with this key, or with this ``stage/name`` (without the hash)."""
    specs = build_graph(cfg)
    for spec in specs:
        if key in (spec.key, f"{spec.stage}/{spec.name}"):
            return spec
    raise KeyError(f"no stage {key!r} in this experiment; stages: {', '.join(s.key for s in specs)}")
