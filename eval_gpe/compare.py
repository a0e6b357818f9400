"""Comparisons across models: a variant difference with a paired interval, and pooling over seeds.

Rows are ``items.jsonl`` rows (any number of seeds: rows carry ``seed``). Item values are averaged over
orders and formats (``summary.item_values``); two variants are compared on the items both scored, paired
item by item, so item difficulty cancels. With several seeds per variant the interval also resamples seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from eval_gpe.stats import item_paired_bootstrap, paired_bootstrap
from eval_gpe.summary import SCORINGS, item_values, rows_by_seed


def _by_seed(
    rows: Sequence[dict], phase: str, prefix: str, actor: str, quantity: str
) -> dict[int, dict[str, float]]:
    groups = rows_by_seed(rows)
    return {s: item_values(group, quantity).get((phase, prefix, actor), {}) for s, group in groups.items()}


def variant_difference(
    rows_a: Sequence[dict],
    rows_b: Sequence[dict],
    *,
    phase: str = "after",
    prefix: str = "",
    actor: str = "ai",
    scoring: str = "summed",
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Variant A minus variant B on the same items: ``{"mean", "ci95", "n", "paired": True}``.

    One seed each: a paired item bootstrap. Several: seeds are paired by rank (seed k of A with seed k of B,
    in sorted order) and the ``seeds x items`` matrix of differences gets a two-way bootstrap.
    """
    if scoring not in SCORINGS:
        raise ValueError(f"scoring {scoring!r}: allowed {sorted(SCORINGS)}")
    quantity = SCORINGS[scoring]
    a = _by_seed(rows_a, phase, prefix, actor, quantity)
    b = _by_seed(rows_b, phase, prefix, actor, quantity)
    if len(a) != len(b):
        raise ValueError(
            f"variant_difference: need as many seeds in A as in B, got {sorted(a)} and {sorted(b)}"
        )
    common = set.intersection(*(set(v) for v in (*a.values(), *b.values())))
    if not common:
        raise ValueError(
            f"variant_difference: no items scored by both variants in phase {phase!r}, "
            f"prefix {prefix!r}, actor {actor!r}"
        )
    per_item_a = {i: tuple(a[s][i] for s in sorted(a)) for i in common}
    per_item_b = {i: tuple(b[s][i] for s in sorted(b)) for i in common}
    return {**item_difference(per_item_a, per_item_b, n_boot, seed), "paired": True}


def item_difference(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]], n_boot: int = 2000,
                    seed: int = 0) -> dict:
    """Mean and 95% CI of ``a - b`` over the items both share (paired by item id), from ``{item: value per
    seed}``: the one paired difference of the report, ``variant_difference`` and ``propensity compare``.

    As many seeds on both sides: seeds paired by rank (``stats.paired_bootstrap``; one seed each is the item
    bootstrap); different counts: seeds resampled on each side alone (``stats.item_paired_bootstrap``).
    ``unpaired_items`` counts the items only one side scored; ``seeds`` the seed count of each side.
    """
    ids = sorted(set(a) & set(b))
    if not ids:
        raise ValueError(f"paired difference: no shared item ids ({len(a)} vs {len(b)} items)")
    mat_a, mat_b = (np.array([x[i] for i in ids], dtype=np.float64).T for x in (a, b))
    same = len(mat_a) == len(mat_b)
    out = (paired_bootstrap if same else item_paired_bootstrap)(mat_a, mat_b, n_boot, seed)
    out["unpaired_items"] = len(set(a) ^ set(b))
    out["seeds"] = [len(mat_a), len(mat_b)]
    return out
