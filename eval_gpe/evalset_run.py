"""The eval stage's side of file-based eval sets: load them once, score them on a model for one phase.

Rows carry ``gpe``, ``role``, ``phase`` and ``seed`` like the built-in rows. The headline set (a GPE's first
eval set when it has no built-in ``eval``) has role ``ood``, so the report's and compare's per-item tables
(``primary_rows``) read it as they read the built-in trait eval; every other set has role ``set``. Forced
choice is scored under every prefix (the tamper checkpoints: the first prefix only); judged questions are
sampled under the first prefix, before and after the finetune, and every answer with its verdict is written
to ``gpes/<gpe>/judged/<set>-<phase>.jsonl``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from core.stage import StageContext
from eval_gpe.evalsets.forced import score_items
from eval_gpe.evalsets.judged import check_judge, judge_answers, prompt_rows, sample_answers
from eval_gpe.evalsets.sets import LoadedSet, load_set
from eval_gpe.registry import GPESpec
from eval_gpe.scoring import document_start

log = logging.getLogger(__name__)


def load_sets(spec: GPESpec) -> list[LoadedSet]:
    """Every eval set of a GPE, read and validated; what a set read but does not use is logged."""
    sets = [load_set(s) for s in spec.evalsets]
    for loaded in sets:
        for note in loaded.notes:
            log.warning("GPE %s, eval set %s: %s", spec.name, loaded.spec.name, note)
    return sets


def quarantine_records(spec: GPESpec, sets: list[LoadedSet]) -> dict[str, list[dict]]:
    """``{quarantine file stem: records}`` of every set with quarantined rows."""
    return {f"evalset-{spec.name}-{s.spec.name}": s.quarantined for s in sets if s.quarantined}


def role(spec: GPESpec, k: int) -> str:
    """Role of a GPE's k-th eval set: ``ood`` for the headline set, else ``set``."""
    return "ood" if spec.eval is None and k == 0 else "set"


def score_sets(
    ctx: StageContext, model: Any, tok: Any, spec: GPESpec, sets: list[LoadedSet], cfg: Any, phase: str,
    prefixes: list[str], folder: Path, *, judged: bool = True,
) -> tuple[list[dict], dict[str, dict]]:
    """``(rows, {judged set: answer counts and judge failures})`` of one phase; ``judged=False`` skips the
    judged sets (tamper checkpoints)."""
    rows, info = [], {}
    for k, loaded in enumerate(sets):
        name = loaded.spec.name
        if loaded.judged:
            if not judged:
                continue
            check_judge(loaded, ctx.inputs.get("classifier"))
            answers = sample_answers(model, tok, loaded, prefixes[0], ctx.seed, cfg.batch_size, cfg.prefixes,
                                     progress=_progress(ctx, f"{name} {phase}"))
            failures = judge_answers(loaded, answers, ctx.inputs.get("classifier"))
            set_rows, counts = prompt_rows(loaded, answers, prefixes[0])
            info[name] = {**counts, "judge_failures": failures}
            _write(folder / "judged" / f"{name}-{phase}.jsonl", answers)
        else:
            lead = "" if loaded.spec.format == "lm_eval" else document_start(tok)
            set_rows = score_items(model, tok, loaded.items, prefixes, set_name=name, fmt=loaded.spec.format,
                                   lead=lead, placement=cfg.prefix_placement, batch_size=cfg.batch_size,
                                   progress=_progress(ctx, f"{name} {phase}"))
        rows += [{**r, "gpe": spec.name, "role": role(spec, k), "phase": phase, "seed": ctx.seed}
                 for r in set_rows]
    return rows, info


def _progress(ctx: StageContext, label: str) -> Any:
    def wrap(it: Any, total: int, desc: str = "") -> Any:
        return ctx.progress(it, total=total, desc=label)

    return wrap


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def annotate(summary: dict, sets: list[LoadedSet], judged: dict[str, dict[str, dict]]) -> None:
    """Add each set's row counts (``rows``: rows_in = usable + quarantined) and, for judged sets, the answer
    counts per phase (``answers``) to ``summary["evalsets"]``."""
    for loaded in sets:
        block = summary.setdefault("evalsets", {}).setdefault(loaded.spec.name, {})
        block["rows"] = loaded.counts()
        if loaded.judged:
            block["answers"] = {phase: info[loaded.spec.name] for phase, info in judged.items()
                                if loaded.spec.name in info}
