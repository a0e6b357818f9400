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


def test_one_seed_matrix_is_the_item_bootstrap_to_the_bit() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0, 1, 40), rng.uniform(0, 1, 40)
    assert describe(a[None], 300, 2) == describe(a, 300, 2)
    assert paired_bootstrap(a[None], b[None], 300, 2) == paired_bootstrap(a, b, 300, 2)
    assert unpaired_bootstrap(a[None], b[None, :30], 300, 2) == unpaired_bootstrap(a, b[:30], 300, 2)


def test_seed_matrices_resample_seeds() -> None:
    """Item values constant across items but not across seeds: an item-only bootstrap would give a zero-width
    interval; over seeds and items it spans the seed means."""
    seeds = np.array([[0.2] * 30, [0.4] * 30])
    d = describe(seeds, 2000, 0)
    assert d["n"] == [2, 30] and d["mean"] == pytest.approx(0.3) and d["ci95"] == pytest.approx([0.2, 0.4])
    # paired seed by seed: the seed effect cancels in the differences
    p = paired_bootstrap(seeds + 0.05, seeds, 2000, 0)
    assert p["n"] == [2, 30] and p["ci95"] == pytest.approx([0.05, 0.05])
    u = unpaired_bootstrap(seeds, np.zeros((2, 10)), 2000, 0)
    assert u["n"] == [2, 30, 10] and u["ci95"] == pytest.approx([0.2, 0.4])
    with pytest.raises(ValueError, match="same seeds"):
        unpaired_bootstrap(seeds, np.zeros((3, 10)))


def test_item_paired_bootstrap_with_unequal_seed_counts() -> None:
    from eval_gpe.stats import item_paired_bootstrap

    rng = np.random.default_rng(1)
    items = rng.uniform(0.2, 0.8, 50)
    a = np.stack([items + 0.1, items + 0.1])  # two seeds, same values: only items vary
    out = item_paired_bootstrap(a, items[None], 2000, 0)
    assert out["n"] == [2, 1, 50] and out["ci95"] == pytest.approx([0.1, 0.1])  # items paired: cancels
    spread = item_paired_bootstrap(np.stack([items, items + 0.2]), items[None], 2000, 0)
    assert spread["mean"] == pytest.approx(0.1) and spread["ci95"] == pytest.approx([0.0, 0.2])
    with pytest.raises(ValueError, match="share their items"):
        item_paired_bootstrap(a, items[None, :10])
