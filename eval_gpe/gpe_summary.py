"""One GPE's whole summary: the built-in world's items (``eval_gpe.summary``) and the file-based eval sets'
(``eval_gpe.evalsets.summary``), composed here so that neither summary module imports the other."""

from __future__ import annotations

from collections.abc import Sequence

from eval_gpe.evalsets import summary as sets_summary
from eval_gpe.summary import summarize_world


def summarize_gpe(
    rows: Sequence[dict],
    prefixes: Sequence[str],
    tags: tuple[str, str],
    n_boot: int,
    seed: int,
    final_step: int,
) -> dict:
    """The full summary of one GPE from its rows: the built-in world's (``summarize_world``) and, for rows
    of file-based eval sets (``evalset``), ``evalsets`` (``eval_gpe.evalsets.summary``); a GPE without
    built-in items takes its top-level keys from its first eval set (``headline_evalset``)."""
    world = [r for r in rows if not r.get("evalset")]
    files = [r for r in rows if r.get("evalset")]
    if not files:
        return summarize_world(world, prefixes, tags, n_boot, seed, final_step)
    sets = sets_summary.summarize_sets(files, prefixes, n_boot, seed, final_step)
    out = summarize_world(world, prefixes, tags, n_boot, seed, final_step) if world else sets_summary.headline(sets)
    out["evalsets"] = sets
    return out
