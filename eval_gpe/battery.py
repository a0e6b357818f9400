"""Running a battery of GPEs on one base model: one shared before-finetune eval, then per GPE a narrow
finetune whose checkpoints are scored (the tamper curve), the after eval, capability and free generation.

Rows (one per item x prefix x format x order x phase) carry ``gpe``, ``role`` (``ood`` / ``id``), ``split``
(``seen_behaviour`` / ``never_seen``) and ``phase`` (``before``, ``step_<n>``, ``after``). Intermediate
checkpoints are scored under the first prefix only (the untagged condition in the graph).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.stage import StageContext
from eval_gpe.finetune import finetune
from eval_gpe.items import item_key
from eval_gpe.registry import GPESpec
from eval_gpe.scoring import (
    FORMATS,
    ORDERS,
    document_start,
    forced_choice,
    model_max_length,
    prefix_token_id,
    score_tokens,
)

RowKey = tuple[str, str, str, str]
ExtraScorer = Callable[[Any, str, list[str], bool], list[dict]]
"""``(model, phase, prefixes, judged) -> rows`` of a GPE's file-based eval sets (``eval_gpe.evalset_run``)."""


@dataclass
class Costs:
    """CPU seconds (``time.process_time``) per named phase, summed."""

    cpu_s: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, start: float) -> None:
        """Add the CPU time since ``start`` to ``name``."""
        self.cpu_s[name] = self.cpu_s.get(name, 0.0) + time.process_time() - start


def _variants(formats: Sequence[str]) -> list[tuple[str, str]]:
    return [(f, order) for f in formats for order in ORDERS[FORMATS[f].ordered]]


def score_items(
    ctx: StageContext,
    model: Any,
    tok: Any,
    items: list[dict],
    formats: Sequence[str],
    prefixes: Sequence[str],
    batch_size: int,
    phase: str,
    placement: str = "start",
) -> dict[RowKey, dict]:
    """Forced-choice rows keyed by ``(item_key, prefix, format, order)``; ``placement``: where prefixes go."""

    def progress(it: Any, total: int, desc: str) -> Any:
        return ctx.progress(it, total=total, desc=f"{desc} {phase}")

    rows = forced_choice(
        model, tok, items, formats, prefixes, batch_size, progress=progress, lead=document_start(tok),
        placement=placement,
    )
    keys = [item_key(item) for item in items for _ in prefixes for _ in _variants(formats)]
    return {(k, r["prefix"], r["format"], r["order"]): r for k, r in zip(keys, rows, strict=True)}


def score_shared(
    ctx: StageContext,
    model: Any,
    tok: Any,
    specs: list[GPESpec],
    items: dict[str, dict],
    prefixes: Sequence[str],
    batch_size: int,
    phase: str,
    placement: str = "start",
) -> dict[RowKey, dict]:
    """Score the union of every GPE's items once per format (identical items across GPEs are scored once)."""
    by_format: dict[str, dict[str, dict]] = {}
    for spec in specs:
        if spec.eval is None:
            continue
        for item in items[spec.name]["ood"] + items[spec.name]["id"]:
            for fmt in spec.eval.formats:
                by_format.setdefault(fmt, {}).setdefault(item_key(item), item)
    cache: dict[RowKey, dict] = {}
    for fmt, unique in by_format.items():
        cache |= score_items(ctx, model, tok, list(unique.values()), [fmt], prefixes, batch_size, phase, placement)
    return cache


def gpe_rows(
    spec: GPESpec,
    items: dict[str, list[dict]],
    scored: dict[RowKey, dict],
    prefixes: Sequence[str],
    phase: str,
    seed: int,
) -> list[dict]:
    """This GPE's rows of one phase, in item x prefix x format x order order, from scored rows."""
    out: list[dict] = []
    if spec.eval is None:
        return out
    for role in ("ood", "id"):
        for item in items[role]:
            key = item_key(item)
            for prefix in prefixes:
                for fmt, order in _variants(spec.eval.formats):
                    row = scored[(key, prefix, fmt, order)]
                    out.append({**row, "gpe": spec.name, "role": role, "phase": phase, "seed": seed})
    return out


def heldout_losses(model: Any, tok: Any, docs: list[tuple[str, str]], batch_size: int) -> dict:
    """Mean token NLL (nats) overall and per group over held-out ``(text, group)`` documents.

    Each text is cut to the model's context and scored after the BOS (else EOS) token."""
    if not docs:
        return {"loss": None, "tokens": 0, "by_group": {}}
    max_len, start = model_max_length(model), prefix_token_id(tok)
    pairs = [([start], tok(t, add_special_tokens=False)["input_ids"][:max_len]) for t, _ in docs]
    scores = score_tokens(model, pairs, batch_size)
    groups: dict[str, list[float]] = {}
    for (_, group), (lp, n) in zip(docs, scores, strict=True):
        acc = groups.setdefault(group, [0.0, 0])
        acc[0] -= lp
        acc[1] += n
    total_nll, total_n = sum(g[0] for g in groups.values()), sum(g[1] for g in groups.values())
    return {
        "loss": total_nll / max(total_n, 1),
        "tokens": total_n,
        "by_group": {g: {"loss": v[0] / max(v[1], 1), "tokens": v[1]} for g, v in sorted(groups.items())},
    }


@dataclass
class GPERun:
    """What one GPE produced on one base model."""

    rows: list[dict]
    finetune: dict | None
    """The finetune's recipe and losses (None for a GPE without finetune)."""
    heldout_after: dict | None
    model: Any = None
    """The finetuned model (only while the stage runs generation / lm-eval on it)."""


def _phase_rows(
    ctx: StageContext, model: Any, tok: Any, spec: GPESpec, items: dict[str, list[dict]], prefixes: list[str],
    cfg: Any, phase: str, extra: ExtraScorer | None, judged: bool,
) -> list[dict]:
    """A finetuned model's rows of one phase: the built-in items, then the eval sets (``extra``)."""
    rows: list[dict] = []
    if spec.eval is not None:
        scored = score_items(ctx, model, tok, items["ood"] + items["id"], spec.eval.formats, prefixes,
                             cfg.batch_size, phase, cfg.prefix_placement)
        rows += gpe_rows(spec, items, scored, prefixes, phase, ctx.seed)
    if extra is not None:
        rows += extra(model, phase, list(prefixes), judged)
    return rows


def run_gpe(
    ctx: StageContext,
    base: Any,
    tok: Any,
    spec: GPESpec,
    items: dict[str, list[dict]],
    before: dict[RowKey, dict],
    texts: list[str],
    cfg: Any,
    heldout: list[tuple[str, str]],
    costs: Costs,
    extra: ExtraScorer | None = None,
) -> GPERun:
    """Finetune a copy of ``base`` on ``texts``, scoring the tamper checkpoints and the final model.

    ``extra(model, phase, prefixes, judged)`` scores the GPE's file-based eval sets on a model (their
    before rows are in ``before_rows``'s caller); a GPE without finetune keeps its before rows only."""
    prefixes, ft = cfg.prefixes, spec.finetune
    rows = gpe_rows(spec, items, before, prefixes, "before", ctx.seed)
    if ft is None:
        return GPERun(rows, None, None, None)

    def on_step(step: int, model: Any) -> None:
        start = time.process_time()
        rows.extend(_phase_rows(ctx, model, tok, spec, items, prefixes[:1], cfg, f"step_{step}", extra, False))
        costs.add("tamper_checkpoints", start)

    start, tamper_before = time.process_time(), costs.cpu_s.get("tamper_checkpoints", 0.0)
    result = finetune(
        copy.deepcopy(base),
        tok,
        texts,
        steps=ft.steps,
        lr=ft.lr,
        batch_size=ft.batch_size,
        seed=ft.seed,
        progress=ctx.progress,
        lora=ft.lora if ft.method == "lora" else None,
        on_step=on_step,
        callback_steps=ft.checkpoints,
    )
    costs.add(
        "finetune", start + costs.cpu_s.get("tamper_checkpoints", 0.0) - tamper_before
    )  # net of scoring
    start = time.process_time()
    rows += _phase_rows(ctx, result.model, tok, spec, items, prefixes, cfg, "after", extra, True)
    costs.add("trait_eval_after", start)
    start = time.process_time()
    heldout_after = heldout_losses(result.model, tok, heldout, cfg.batch_size)
    costs.add("heldout_loss", start)
    info = {
        **ft.model_dump(mode="json"),
        "n_texts_used": len(texts),
        "n_examples": result.n_examples,
        "loss_first": result.losses[0],
        "loss_last": result.losses[-1],
        "n_tokens": result.n_tokens,
        "losses": result.losses,
    }
    return GPERun(rows, info, heldout_after, result.model)
