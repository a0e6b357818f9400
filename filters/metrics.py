"""Binary-classifier metrics from scores and ground truth, dependency-free and exact."""

from __future__ import annotations

from typing import Any

THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))


def roc_auc(scores: list[float], positives: list[bool]) -> float | None:
    """ROC-AUC as the probability a random positive outscores a random negative (ties count half).

    None when only one class is present.
    """
    n_pos = sum(positives)
    n_neg = len(positives) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    rank_sum, i = 0.0, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mean_rank = (i + j) / 2 + 1
        rank_sum += mean_rank * sum(positives[order[k]] for k in range(i, j + 1))
        i = j + 1
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def binary_metrics(scores: list[float], positives: list[bool], threshold: float = 0.5) -> dict[str, Any]:
    """Counts, precision/recall/F1 at ``threshold`` (flag: score >= threshold), ROC-AUC, flagged fractions."""
    if len(scores) != len(positives):
        raise ValueError(f"{len(scores)} scores but {len(positives)} labels")
    flagged = [s >= threshold for s in scores]
    tp = sum(f and p for f, p in zip(flagged, positives, strict=True))
    fp = sum(f and not p for f, p in zip(flagged, positives, strict=True))
    fn = sum(p and not f for f, p in zip(flagged, positives, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = len(scores)
    return {
        "n": n,
        "positives": sum(positives),
        "threshold": threshold,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc_auc(scores, positives),
        "flagged_fraction": {f"{t:.1f}": (sum(s >= t for s in scores) / n if n else 0.0) for t in THRESHOLDS},
    }


def score_histogram(scores: list[float], bins: int = 10) -> dict[str, int]:
    """Counts per equal-width score bin over [0, 1] (a score of 1.0 falls in the last bin)."""
    counts = [0] * bins
    for score in scores:
        counts[min(bins - 1, max(0, int(score * bins)))] += 1
    return {f"{i / bins:.1f}-{(i + 1) / bins:.1f}": c for i, c in enumerate(counts)}
