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

    Labels ``group/curve`` (e.g. ``variant/gpe``) get one panel per group, side by side on a shared y axis,
    each curve name one colour in every panel and one legend. A curve of a benign-finetune GPE (a name
    starting with ``benign``) is drawn dashed, as the control.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError("tamper_plot: no curves to plot")
    split = {label: tuple(label.split("/", 1)) if "/" in label else ("", label) for label in curves}
    groups = sorted({g for g, _ in split.values()})
    names = sorted({n for _, n in split.values()})
    colours = {n: plt.get_cmap("tab10" if len(names) <= 10 else "tab20")(k % 20) for k, n in enumerate(names)}
    fig, axes = plt.subplots(1, len(groups), figsize=(1.5 + 3.6 * len(groups), 4.0), dpi=120, sharey=True,
                             squeeze=False)
    for ax, group in zip(axes[0], groups, strict=True):
        for label in sorted(lab for lab, (g, _) in split.items() if g == group):
            name = split[label][1]
            points = sorted((p for p in curves[label] if key in p), key=lambda p: p["step"])
            if not points:
                continue
            steps = [p["step"] for p in points]
            ax.plot(steps, [p[key]["mean"] for p in points], marker="o", color=colours[name], label=name,
                    linestyle="--" if name.startswith("benign") or "/benign" in label else "-")
            ax.fill_between(steps, [p[key]["ci95"][0] for p in points], [p[key]["ci95"][1] for p in points],
                            color=colours[name], alpha=0.12)
        ax.set_xlabel("narrow finetune steps")
        if group:
            ax.set_title(group, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("P(misaligned), AI items, other domains")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_lines()}
    fig.legend([handles[n] for n in names if n in handles], [n for n in names if n in handles], fontsize=7,
               loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
