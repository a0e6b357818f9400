from __future__ import annotations

import numpy as np
import pytest

from eval_gpe.compare import variant_difference
from eval_gpe.plots import tamper_plot


def _rows(shift: float, seed: int, n: int = 50) -> list[dict]:
    base = np.random.default_rng(7).uniform(0.2, 0.7, n)
    noise = np.random.default_rng(seed).normal(0, 0.002, n)
    return [
        {
            "item_id": f"ai-{k}",
            "actor": "ai",
            "phase": "after",
            "prefix": "",
            "format": "plain",
            "order": "none",
            "p_misaligned": float(base[k] + shift + noise[k]),
            "seed": seed,
        }
        for k in range(n)
    ]


def test_variant_difference_is_paired_over_items_and_seeds() -> None:
    one = variant_difference(_rows(0.02, 0), _rows(0.0, 1), n_boot=1000)
    assert one["mean"] == pytest.approx(0.02, abs=0.002) and one["ci95"][0] > 0 and one["paired"]
    two = variant_difference(_rows(0.02, 0) + _rows(0.03, 2), _rows(0.0, 1) + _rows(0.0, 3), n_boot=1000)
    assert two["n"] == [2, 50] and two["mean"] == pytest.approx(0.025, abs=0.002)
    with pytest.raises(ValueError, match="no items scored by both"):
        variant_difference(_rows(0, 0), _rows(0, 1), phase="before")
    with pytest.raises(ValueError, match="scoring 'odds'"):
        variant_difference(_rows(0, 0), _rows(0, 1), scoring="odds")


def test_tamper_plot_writes_a_png(tmp_path) -> None:
    point = lambda s, m: {"step": s, "propensity": {"mean": m, "ci95": [m - 0.05, m + 0.05]}}  # noqa: E731
    path = tamper_plot(
        {
            "baseline/em_medicine": [point(0, 0.3), point(50, 0.4), point(100, 0.45)],
            "baseline/benign_medicine": [point(0, 0.3), point(100, 0.28)],
        },
        tmp_path / "t.png",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    wide = tamper_plot({f"{v}/{g}": [point(0, 0.3), point(100, 0.4)] for v in ("baseline", "filtered", "tagged")
                        for g in ("em_medicine", "benign_medicine")}, tmp_path / "w.png")
    width = lambda p: int.from_bytes(p.read_bytes()[16:20], "big")  # noqa: E731  (PNG IHDR width)
    assert width(wide) > 2 * width(path)  # one panel per variant, side by side
    with pytest.raises(ValueError, match="no curves"):
        tamper_plot({}, tmp_path / "e.png")
