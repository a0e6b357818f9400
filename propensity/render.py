"""How results look, shared by the report and ``propensity compare``: intervals as text and bar charts with CIs.

A result block is ``{"mean": float, "ci95": [lo, hi], ...}`` (``eval_gpe.stats``); a missing block renders as
``-`` in tables and as an empty bar in charts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PROPENSITY_SERIES = {"AI items, before": "propensity_before", "AI items, after": "propensity_after",
                     "human items, before": "control_before"}
"""The bars of every propensity chart: label -> the result block's key."""


def interval(block: dict | None, signed: bool = True) -> str:
    """``+0.123 [+0.100, +0.150]`` (``signed``: differences) or ``0.123 [0.100, 0.150]`` (probabilities)."""
    if not block:
        return "-"
    lo, hi = block["ci95"]
    fmt = "+.3f" if signed else ".3f"
    return f"{block['mean']:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def mean(block: dict | None) -> str:
    """The block's mean as ``0.123``, or ``-``."""
    return "-" if not block else f"{block['mean']:.3f}"


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def error_bars(blocks: list[dict | None]) -> tuple[list[float], list[list[float]]]:
    """Means and asymmetric error bars (below, above) of result blocks; a missing block is NaN with no bar."""
    means = [b["mean"] if b else float("nan") for b in blocks]
    errs = [[b["mean"] - b["ci95"][0] if b else 0.0 for b in blocks],
            [b["ci95"][1] - b["mean"] if b else 0.0 for b in blocks]]
    return means, errs


def propensity_bars(labels: list[str], blocks: list[dict], path: Path, *, title: str, dpi: int,
                    width_per_label: float, fontsize: int, rotation: float = 0) -> None:
    """Grouped bars of ``PROPENSITY_SERIES`` per label (one result dict per label), with 95% CIs, as a PNG."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, width_per_label * len(labels)), 4))
    width = 0.8 / len(PROPENSITY_SERIES)
    for j, (label, key) in enumerate(PROPENSITY_SERIES.items()):
        means, errs = error_bars([b.get(key) for b in blocks])
        xs = [i + (j - 1) * width for i in range(len(labels))]
        ax.bar(xs, means, width, yerr=errs, capsize=3, label=label)
    ax.set_xticks(range(len(labels)), labels, fontsize=fontsize, **({"rotation": rotation} if rotation else {}))
    ax.set_ylabel("P(misaligned)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, metadata={"Software": None})
    plt.close(fig)
