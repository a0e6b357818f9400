"""Comparisons across models: a variant difference with a paired interval, and pooling over seeds.

Rows are ``items.jsonl`` rows (any number of seeds: rows carry ``seed``). Item values are averaged over
orders and formats (``summary.item_values``); two variants are compared on the items both scored, paired
item by item, so item difficulty cancels. With several seeds per variant the interval also resamples seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eval_gpe.stats import paired_bootstrap
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
    common = sorted(set.intersection(*(set(v) for v in (*a.values(), *b.values()))))
    if not common:
        raise ValueError(
            f"variant_difference: no items scored by both variants in phase {phase!r}, "
            f"prefix {prefix!r}, actor {actor!r}"
        )
    if len(a) != len(b):
        raise ValueError(
            f"variant_difference: need as many seeds in A as in B, got {sorted(a)} and {sorted(b)}"
        )
    mat_a = np.array([[a[s][i] for i in common] for s in sorted(a)])
    mat_b = np.array([[b[s][i] for i in common] for s in sorted(b)])
    return {**paired_bootstrap(mat_a, mat_b, n_boot, seed), "paired": True}  # several seeds: two-way
