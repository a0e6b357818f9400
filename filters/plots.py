"""Score histograms per shard set, read from the score tables (no text is read)."""

from __future__ import annotations

from pathlib import Path

from filters.decisions import SCORE_TABLES, read_scores


def histogram_counts(scores: list[float], bins: int = 20) -> list[int]:
    """Counts per equal-width bin over [0, 1] (a score of 1.0 falls in the last bin)."""
    counts = [0] * bins
    for score in scores:
        counts[min(bins - 1, max(0, int(score * bins)))] += 1
    return counts


def plot_score_histograms(
    score_dirs: dict[str, Path], score_key: str, out: Path, *, bins: int = 20, per_shard: bool = False
) -> dict[str, list[int]]:
    """Plot one histogram of ``score_key`` per shard set (score artifact, or each shard with ``per_shard``)
    into ``out`` (png) and return the plotted counts by series name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[int]] = {}
    for name, folder in score_dirs.items():
        if per_shard:
            for table in sorted((Path(folder) / SCORE_TABLES).glob("*.parquet")):
                series[f"{name}/{table.stem}"] = histogram_counts(_table_scores(table, score_key), bins)
        else:
            series[name] = histogram_counts(read_scores(Path(folder), score_key), bins)
    edges = [i / bins for i in range(bins + 1)]
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, counts in series.items():
        ax.stairs(counts, edges, label=f"{name} (n={sum(counts)})")
    ax.set_xlabel(score_key)
    ax.set_ylabel("documents")
    ax.set_yscale("symlog")
    ax.legend(fontsize="small")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return series


def _table_scores(table: Path, key: str) -> list[float]:
    import pyarrow.parquet as pq

    return [v for v in pq.read_table(table, columns=[key]).column(key).to_pylist() if v is not None]
