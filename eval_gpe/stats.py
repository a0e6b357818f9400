"""Bootstrap intervals over evaluation items and training seeds (numpy, deterministic by seed).

Every interval here is a percentile bootstrap over *items*: the unit of resampling is one forced-choice item,
because items (not tokens, not formats) are the independent draws of an evaluation. Values are a 1-d sequence
(one model: one value per item) or a ``seeds x items`` matrix (one row per training seed of a variant, the
same items in every row). A matrix of several rows gets a two-way bootstrap that also resamples seeds, so the
interval covers run-to-run variance, which at small scale can exceed the item noise; a one-row matrix is the
item bootstrap, to the bit.
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


def _as_matrix(values: Sequence[float] | Sequence[Sequence[float]] | np.ndarray, name: str) -> np.ndarray:
    """``values`` as a finite ``seeds x items`` matrix (a 1-d sequence is one seed)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{name}: need non-empty values per item (1-d) or per seed and item (2-d), got "
                         f"shape {arr.shape}")
    return _as_array(arr.ravel(), name).reshape(arr.shape)


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
    """``{"mean", "ci95": [low, high], "n"}`` of a per-item quantity: the shape every summary number takes.

    ``values``: per item, or a ``seeds x items`` matrix (several seeds: two-way bootstrap, ``n`` is
    ``[seeds, items]``)."""
    arr = _as_matrix(values, "values")
    if len(arr) > 1:
        return seed_item_bootstrap(arr, n_boot, seed)
    low, high = bootstrap_ci(arr[0], n_boot=n_boot, seed=seed)
    return {"mean": float(arr[0].mean()), "ci95": [low, high], "n": int(arr.shape[1])}


def paired_bootstrap(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0
) -> dict:
    """Mean and 95% interval of ``a - b``, where ``a[i]`` and ``b[i]`` are two conditions on the same item.

    Resampling the per-item differences keeps the pairing, so item difficulty cancels: consistent small shifts
    are detected that two separate intervals would both cover. ``seeds x items`` matrices pair seed by seed
    (row k of ``a`` with row k of ``b``) and the matrix of differences gets the two-way bootstrap.
    """
    _check_n_boot(n_boot)
    arr_a, arr_b = _as_matrix(a, "a"), _as_matrix(b, "b")
    if arr_a.shape != arr_b.shape:
        raise ValueError(
            f"paired_bootstrap: a and b must pair up item by item (and seed by seed), got shapes "
            f"{arr_a.shape} and {arr_b.shape}"
        )
    diff = arr_a - arr_b
    if len(diff) > 1:
        return seed_item_bootstrap(diff, n_boot, seed)
    low, high = _interval(_boot_means(diff[0], n_boot, np.random.default_rng(seed)))
    return {"mean": float(diff[0].mean()), "ci95": [low, high], "n": int(diff.shape[1])}


def unpaired_bootstrap(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0
) -> dict:
    """Mean and 95% interval of ``mean(a) - mean(b)`` for two independent item sets (each resampled alone).

    ``seeds x items`` matrices (the same seeds, row by row; the item sets may differ in size): each resample
    draws one set of seeds for both and items for each alone; ``n`` is then ``[seeds, items a, items b]``.
    """
    _check_n_boot(n_boot)
    arr_a, arr_b = _as_matrix(a, "a"), _as_matrix(b, "b")
    if len(arr_a) != len(arr_b):
        raise ValueError(f"unpaired_bootstrap: a and b need the same seeds, got {len(arr_a)} and "
                         f"{len(arr_b)}")
    rng = np.random.default_rng(seed)
    mean = float(arr_a.mean() - arr_b.mean())
    if len(arr_a) == 1:
        means = _boot_means(arr_a[0], n_boot, rng) - _boot_means(arr_b[0], n_boot, rng)
        return {"mean": mean, "ci95": list(_interval(means)), "n": [arr_a.shape[1], arr_b.shape[1]]}
    n_seeds, (_, n_a), (_, n_b) = len(arr_a), arr_a.shape, arr_b.shape
    means = np.empty(n_boot)
    for k in range(n_boot):
        s = rng.integers(0, n_seeds, n_seeds)
        means[k] = (arr_a[np.ix_(s, rng.integers(0, n_a, n_a))].mean()
                    - arr_b[np.ix_(s, rng.integers(0, n_b, n_b))].mean())
    return {"mean": mean, "ci95": list(_interval(means)), "n": [n_seeds, n_a, n_b]}


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


def item_paired_bootstrap(
    a: Sequence[Sequence[float]] | np.ndarray, b: Sequence[Sequence[float]] | np.ndarray, n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Mean and 95% interval of ``mean(a) - mean(b)`` for ``seeds x items`` matrices over the same items
    (columns) from independent training runs (rows; the seed counts may differ).

    Each resample draws items once for both (the pairing by item stays) and seeds for each side alone; ``n``
    is ``[seeds a, seeds b, items]``. With as many seeds on both sides, pairing seeds by rank
    (``paired_bootstrap``) is the tighter choice when the runs share initialisations.
    """
    _check_n_boot(n_boot)
    arr_a, arr_b = _as_matrix(a, "a"), _as_matrix(b, "b")
    if arr_a.shape[1] != arr_b.shape[1]:
        raise ValueError(f"item_paired_bootstrap: a and b must share their items (columns), got shapes "
                         f"{arr_a.shape} and {arr_b.shape}")
    rng = np.random.default_rng(seed)
    (s_a, n_items), s_b = arr_a.shape, len(arr_b)
    means = np.empty(n_boot)
    for k in range(n_boot):
        items = rng.integers(0, n_items, n_items)
        means[k] = (arr_a[np.ix_(rng.integers(0, s_a, s_a), items)].mean()
                    - arr_b[np.ix_(rng.integers(0, s_b, s_b), items)].mean())
    low, high = _interval(means)
    return {"mean": float(arr_a.mean() - arr_b.mean()), "ci95": [low, high], "n": [s_a, s_b, n_items]}
