"""The tamper-resistance plot: P(misaligned) against narrow-finetune steps, one line per variant and GPE."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def tamper_plot(
    curves: Mapping[str, Sequence[dict]],
    path: Path,
    title: str = "Propensity under narrow finetuning",
    key: str = "propensity",
) -> Path:
    """Plot ``{label: tamper_curve}`` (points ``{"step", key: {"mean", "ci95"}}``) with 95% bands.

    A label of a benign-finetune GPE (a name starting with ``benign``) is drawn dashed, as the control.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError("tamper_plot: no curves to plot")
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for label, points in sorted(curves.items()):
        points = sorted((p for p in points if key in p), key=lambda p: p["step"])
        if not points:
            continue
        steps = [p["step"] for p in points]
        means = [p[key]["mean"] for p in points]
        line = ax.plot(steps, means, marker="o", label=label, linestyle="--" if "benign" in label else "-")[0]
        ax.fill_between(
            steps,
            [p[key]["ci95"][0] for p in points],
            [p[key]["ci95"][1] for p in points],
            color=line.get_color(),
            alpha=0.15,
        )
    ax.set_xlabel("narrow finetune steps")
    ax.set_ylabel("P(misaligned), AI items, other domains")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
