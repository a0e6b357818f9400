from __future__ import annotations

import numpy as np
import pytest

from eval_gpe.stats import bootstrap_ci, describe, paired_bootstrap, unpaired_bootstrap


def test_bootstrap_ci_covers_mean_and_is_deterministic() -> None:
    values = np.random.default_rng(1).uniform(0, 1, 200)
    low, high = bootstrap_ci(values, n_boot=2000, seed=7)
    assert low < values.mean() < high
    assert 0.05 < high - low < 0.2  # ~ 2 * 1.96 * 0.289 / sqrt(200) = 0.08
    assert bootstrap_ci(values, n_boot=2000, seed=7) == (low, high)
    assert bootstrap_ci(values, n_boot=2000, seed=8) != (low, high)


def test_describe_shape() -> None:
    d = describe([0.0, 1.0, 1.0, 0.0], n_boot=500, seed=0)
    assert d["mean"] == 0.5 and d["n"] == 4 and 0.0 <= d["ci95"][0] <= 0.5 <= d["ci95"][1] <= 1.0


def test_paired_bootstrap_detects_planted_small_difference() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.9, 240)  # large item-to-item spread
    shifted = base + 0.01 + rng.normal(0, 0.002, 240)  # consistent small shift
    paired = paired_bootstrap(shifted, base, n_boot=2000, seed=0)
    assert paired["mean"] == pytest.approx(0.01, abs=0.001)
    assert paired["ci95"][0] > 0.0
    # separate intervals overlap heavily: only the pairing reveals the shift
    assert bootstrap_ci(shifted, seed=0)[0] < bootstrap_ci(base, seed=0)[1]
    unpaired = unpaired_bootstrap(shifted, base, n_boot=2000, seed=0)
    assert unpaired["ci95"][0] < 0.0 < unpaired["ci95"][1]


def test_paired_bootstrap_null_covers_zero() -> None:
    a = np.random.default_rng(3).uniform(0, 1, 100)
    b = a + np.random.default_rng(4).normal(0, 0.05, 100) * np.where(np.arange(100) % 2, 1, -1)
    low, high = paired_bootstrap(b, a, seed=1)["ci95"]
    assert low < 0 < high


def test_stats_errors() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="pair up"):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        describe([1.0, float("nan")])
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci([1.0], n_boot=0)


def test_seed_item_bootstrap_widens_with_seed_variance() -> None:
    from eval_gpe.stats import seed_item_bootstrap

    rng = np.random.default_rng(0)
    items = rng.uniform(0.2, 0.8, 100)
    same = np.stack([items, items, items])
    spread = np.stack([items - 0.1, items, items + 0.1])
    a, b = seed_item_bootstrap(same, 1000, 0), seed_item_bootstrap(spread, 1000, 0)
    assert a["n"] == [3, 100] and a["mean"] == pytest.approx(b["mean"])
    assert (b["ci95"][1] - b["ci95"][0]) > 1.5 * (a["ci95"][1] - a["ci95"][0])
    one = seed_item_bootstrap(items[None], 1000, 0)
    assert one["ci95"] == list(bootstrap_ci(items, 1000, 0)) or one["ci95"][0] < items.mean() < one["ci95"][1]
