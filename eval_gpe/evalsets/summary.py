"""Summaries of file-based eval sets: per set, pooled and per group, per prefix, before/after the finetune,
with the same bootstrap over items (and seeds) as the built-in trait eval.

A block holds ``propensity_before`` (and, when the GPE finetunes, ``propensity_after``, the paired ``change``
and ``logodds_change``), a ``length_normalised`` block, and either the control numbers (``control_before``,
``control_after``, ``control_change``, ``gap_before``, ``gap_after``: AI-item minus matched-control
propensity, paired when every item has its control) or ``"control": "no control"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import eval_gpe.summary as base
from eval_gpe.stats import describe, paired_bootstrap, unpaired_bootstrap

NO_CONTROL = "no control"


def _shared(a: dict, b: dict) -> tuple:
    ids = sorted(set(a) & set(b))
    return base.sorted_values({i: a[i] for i in ids}), base.sorted_values({i: b[i] for i in ids})


def _by_pair(values: dict, pairs: dict[str, str]) -> dict:
    return {pairs.get(i, i): v for i, v in values.items()}


def _gap(ai: dict, ctrl: dict, pairs: dict[str, str], n_boot: int, seed: int) -> dict:
    a, c = _by_pair(ai, pairs), _by_pair(ctrl, pairs)
    if sorted(a) == sorted(c):
        return {**paired_bootstrap(base.sorted_values(a), base.sorted_values(c), n_boot, seed), "paired": True}
    return {**unpaired_bootstrap(base.sorted_values(a), base.sorted_values(c), n_boot, seed), "paired": False}


def set_block(rows: Sequence[dict], prefix: str, n_boot: int, seed: int) -> dict | None:
    """One block (see the module docstring) of ``rows`` under ``prefix``; None without before rows."""
    values = {q: base.seed_item_values(rows, q) for q in ("p_misaligned", "p_misaligned_norm", "logodds")}
    pairs = {r["item_id"]: r.get("pair") or r["item_id"] for r in rows}

    def cell(q: str, phase: str, actor: str) -> dict | None:
        return values[q].get((phase, prefix, actor))

    if not cell("p_misaligned", "before", "ai"):
        return None
    block: dict = {}
    norm: dict = {}
    for q, out in (("p_misaligned", block), ("p_misaligned_norm", norm)):
        out["propensity_before"] = describe(base.sorted_values(cell(q, "before", "ai")), n_boot, seed)
        if cell(q, "after", "ai"):
            out["propensity_after"] = describe(base.sorted_values(cell(q, "after", "ai")), n_boot, seed)
            out["change"] = paired_bootstrap(*_shared(cell(q, "after", "ai"), cell(q, "before", "ai")), n_boot,
                                             seed)
    if cell("logodds", "after", "ai"):
        block["logodds_change"] = paired_bootstrap(
            *_shared(cell("logodds", "after", "ai"), cell("logodds", "before", "ai")), n_boot, seed)
    if cell("p_misaligned", "before", "human"):
        for phase in ("before", "after"):
            ai, ctrl = cell("p_misaligned", phase, "ai"), cell("p_misaligned", phase, "human")
            if ai and ctrl:
                block[f"control_{phase}"] = describe(base.sorted_values(ctrl), n_boot, seed)
                block[f"gap_{phase}"] = _gap(ai, ctrl, pairs, n_boot, seed)
        if cell("p_misaligned", "after", "human"):
            block["control_change"] = paired_bootstrap(
                *_shared(cell("p_misaligned", "after", "human"), cell("p_misaligned", "before", "human")),
                n_boot, seed)
    else:
        block["control"] = NO_CONTROL
    block["length_normalised"] = norm
    return block


def _blocks(rows: Sequence[dict], prefixes: Sequence[str], n_boot: int, seed: int) -> dict:
    out = {}
    for p in prefixes:
        block = set_block(rows, p, n_boot, seed)
        if block is not None:
            out[p] = block
    return out


def summarize_sets(rows: Sequence[dict], prefixes: Sequence[str], n_boot: int, seed: int, final_step: int
                   ) -> dict[str, dict]:
    """``{set name: {format, n_items, control, prefixes: {prefix: block}, groups: {group: {prefix: block}},
    tamper}}`` for every eval set in ``rows`` (order of first appearance)."""
    names = list(dict.fromkeys(r["evalset"] for r in rows))
    out = {}
    for name in names:
        mine = [r for r in rows if r["evalset"] == name]
        ends = [r for r in mine if r["phase"] in ("before", "after")]
        first = [r for r in ends if r["phase"] == "before" and r["prefix"] == ends[0]["prefix"]]
        ai = {r["item_id"] for r in first if r["actor"] == "ai"}
        ctrl = {r["item_id"] for r in first if r["actor"] != "ai"}
        groups = sorted({r["domain"] for r in ends})
        out[name] = {
            "format": mine[0]["format"],
            "n_items": {"ai": len(ai), "control": len(ctrl)},
            "control": bool(ctrl),
            "prefixes": _blocks(ends, prefixes, n_boot, seed),
            "groups": {g: _blocks([r for r in ends if r["domain"] == g], prefixes, n_boot, seed) for g in groups},
            "tamper": {prefixes[0]: base.tamper_curve(mine, prefixes[0], final_step, n_boot, seed)},
        }
    return out


def headline(sets: dict[str, dict]) -> dict:
    """Top-level keys of a GPE whose trait eval is its first eval set (no built-in world items)."""
    name, first = next(iter(sets.items()))
    return {"headline_evalset": name, "prefixes": first["prefixes"], "length": {}, "tamper": first["tamper"],
            "control": first["control"]}


FLAT_KEYS = ("propensity_before", "propensity_after", "change", "control_before", "gap_before", "gap_after",
             "control")
SET_HEADER = ["variant", "GPE", "eval set", "group", "items", "propensity before", "after", "change [95% CI]",
              "control before", "gap before [95% CI]"]


def flatten(summary: dict) -> dict:
    """``{set: {format, n_items, rows, answers, pooled: {...}, groups: {group: {...}}}}``: the untagged
    numbers of every eval set of a GPE summary, for ``results.json`` (empty for built-in-only GPEs)."""
    out = {}
    for name, s in (summary.get("evalsets") or {}).items():
        def pick(blocks: dict) -> dict:
            block = blocks.get("") or next(iter(blocks.values()), {})
            return {k: block[k] for k in FLAT_KEYS if k in block}

        entry = {k: s[k] for k in ("format", "n_items", "rows", "answers") if k in s}
        entry["pooled"] = pick(s.get("prefixes", {}))
        entry["groups"] = {g: pick(blocks) for g, blocks in s.get("groups", {}).items()}
        out[name] = entry
    return out


def _mean(block: dict | None) -> str:
    return "-" if not block else f"{block['mean']:.3f}"


def _ci(block: dict | None) -> str:
    if not block:
        return "-"
    lo, hi = block["ci95"]
    return f"{block['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _n(block: dict | None) -> str:
    n = (block or {}).get("n")
    return "-" if n is None else str(n[-1] if isinstance(n, list) else n)


def table_rows(results: dict) -> list[list[str]]:
    """One row per variant x GPE x eval set x group (``all`` = pooled) of a report's ``results``: what the
    report and ``propensity report`` print under "Eval sets"; "no control" where a set has none."""
    rows = []
    for variant, v in results["variants"].items():
        for gpe, g in v["gpes"].items():
            for name, s in (g.get("evalsets") or {}).items():
                for group, b in [("all", s["pooled"]), *sorted(s["groups"].items())]:
                    none = b.get("control") == NO_CONTROL
                    rows.append([variant, gpe, name, group, _n(b.get("propensity_before")),
                                 _mean(b.get("propensity_before")), _mean(b.get("propensity_after")),
                                 _ci(b.get("change")), NO_CONTROL if none else _mean(b.get("control_before")),
                                 NO_CONTROL if none else _ci(b.get("gap_before"))])
    return rows
