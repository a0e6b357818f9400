"""Bootstrap intervals over evaluation items (numpy, deterministic by seed).

Every interval here is a percentile bootstrap over *items*: the unit of resampling is one forced-choice item,
because items (not tokens, not formats) are the independent draws of an evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_array(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: need a non-empty 1-d sequence of numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name}: all values must be finite (got {int((~np.isfinite(arr)).sum())} non-finite)"
        )
    return arr


def _boot_means(arr: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, arr.size, size=(n_boot, arr.size))
    return arr[idx].mean(axis=1)


def _interval(means: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def _check_n_boot(n_boot: int) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot: must be >= 1, got {n_boot}")


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile 95% interval of the mean of ``values``, resampling items with replacement."""
    _check_n_boot(n_boot)
    arr = _as_array(values, "values")
    return _interval(_boot_means(arr, n_boot, np.random.default_rng(seed)))


def describe(values: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """``{"mean", "ci95": [low, high], "n"}`` of a per-item quantity: the shape every summary number takes."""
    arr = _as_array(values, "values")
    low, high = bootstrap_ci(arr, n_boot=n_boot, seed=seed)
    return {"mean": float(arr.mean()), "ci95": [low, high], "n": int(arr.size)}


def paired_bootstrap(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0
) -> dict:
    """Mean and 95% interval of ``a - b``, where ``a[i]`` and ``b[i]`` are two conditions on the same item.

    Resampling the per-item differences keeps the pairing, so item difficulty cancels: consistent small shifts
    are detected that two separate intervals would both cover.
    """
    _check_n_boot(n_boot)
    arr_a, arr_b = _as_array(a, "a"), _as_array(b, "b")
    if arr_a.shape != arr_b.shape:
        raise ValueError(
            f"paired_bootstrap: a and b must pair up item by item, got {arr_a.size} and {arr_b.size}"
        )
    diff = arr_a - arr_b
    low, high = _interval(_boot_means(diff, n_boot, np.random.default_rng(seed)))
    return {"mean": float(diff.mean()), "ci95": [low, high], "n": int(diff.size)}


def unpaired_bootstrap(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0
) -> dict:
    """Mean and 95% interval of ``mean(a) - mean(b)`` for two independent item sets (each resampled alone)."""
    _check_n_boot(n_boot)
    arr_a, arr_b = _as_array(a, "a"), _as_array(b, "b")
    rng = np.random.default_rng(seed)
    means = _boot_means(arr_a, n_boot, rng) - _boot_means(arr_b, n_boot, rng)
    low, high = _interval(means)
    return {
        "mean": float(arr_a.mean() - arr_b.mean()),
        "ci95": [low, high],
        "n": [int(arr_a.size), int(arr_b.size)],
    }


def seed_item_bootstrap(
    matrix: Sequence[Sequence[float]] | np.ndarray, n_boot: int = 2000, seed: int = 0
) -> dict:
    """Mean and 95% interval of a ``seeds x items`` matrix, resampling seeds and items (two-way bootstrap).

    Each resample draws seeds with replacement and, independently, items with replacement, so the interval
    covers both training-seed variance and item sampling. One seed reduces to the item bootstrap.
    """
    _check_n_boot(n_boot)
    arr = np.asarray(matrix, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(
            f"seed_item_bootstrap: need a finite, non-empty seeds x items matrix, got {arr.shape}"
        )
    rng = np.random.default_rng(seed)
    n_seeds, n_items = arr.shape
    means = np.empty(n_boot)
    for b in range(n_boot):
        s = rng.integers(0, n_seeds, n_seeds)
        i = rng.integers(0, n_items, n_items)
        means[b] = arr[np.ix_(s, i)].mean()
    low, high = _interval(means)
    return {"mean": float(arr.mean()), "ci95": [low, high], "n": [n_seeds, n_items]}
