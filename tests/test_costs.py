"""``propensity plan --estimate``: per-stage estimates from throughputs the store measured on this machine,
within 2x of the wall time each stage then takes; defaults (and the 1T-token example) without measurements;
the cost table of a finished report."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from core.store import Store, machine_class
from propensity.config import load_config
from propensity.costs import cost_rows, estimate, format_estimate, measured_rates, print_costs
from propensity.graph import build_graph
from propensity.runner import run_local

ROOT = Path(__file__).resolve().parents[1]


def tiny(store: Path, *overrides: str):  # noqa: ANN201 - ExperimentConfig
    return load_config(ROOT / "configs" / "tiny.yaml", [f"store={store}", *overrides])


def test_defaults_without_measurements_and_the_1t_token_example(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "store", "classifier={name: misaligned, kind: transformer, transformer: {model: m}}",
               "executor.kind=slurm", "executor.workers=8",
               "executor.slurm={score: {array_tasks: 64, gpus: 8, nodes: 1}}")
    rows, how = estimate(cfg, corpus_tokens=1e12)
    assert how == "--corpus-tokens 1e+12 / 1000"
    score = next(r for r in rows if r.key.startswith("score/"))
    assert score.source == "default" and score.units == pytest.approx(1e9)
    assert score.gpu_s / 3600 == pytest.approx(1e9 / 1000 / 3600)  # 1k docs/s per GPU: ~278 GPU-hours
    assert score.wall_s == pytest.approx(score.gpu_s / (64 * 8) + 5.0, rel=0.01)  # 64 nodes x 8 GPUs at once
    text = format_estimate(cfg, rows, how)
    assert "total" in text.splitlines()[-1] and "default [docs]" in text


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store where configs/tiny.yaml ran once (seed 0)."""
    store = tmp_path_factory.mktemp("costs") / "store"
    run_local(tiny(store), show_progress=False)
    return store


@pytest.mark.slow
def test_estimate_is_within_2x_of_each_stage(measured: Path) -> None:
    cfg = tiny(measured, "seed=1", "source.synthetic.seed=1")  # every stage new, same sizes
    store = Store(measured)
    assert not any(store.is_complete(s) for s in build_graph(cfg))
    rates = measured_rates(store)
    assert ("train", "tiny/auto") in rates or any(k[0] == "train" for k in rates)
    rows, _ = estimate(cfg, store)
    assert {r.source for r in rows} == {"measured (1 run)"}, [(r.key, r.source) for r in rows]
    run_local(cfg, show_progress=False)
    ratios = {}
    for row in rows:
        manifest = store.manifest(row.key)
        assert manifest["machine"] == machine_class()
        ratios[row.key] = row.wall_s / manifest["usage"]["wall_seconds"]
    print({k: round(v, 2) for k, v in ratios.items()})
    assert all(0.5 <= r <= 2.0 for r in ratios.values()), ratios


@pytest.mark.slow
def test_cost_table_of_a_report(measured: Path) -> None:
    store = Store(measured)
    report = next(s for s in build_graph(tiny(measured)) if s.stage == "report")
    rows = {r["variant"]: r for r in cost_rows(store, store.manifest(report))}
    assert set(rows) == {"baseline", "filtered", "tagged"}
    assert all(r["measured"] and r["train_cpu_s"] > 0 and r["share"] > 0 for r in rows.values())
    assert rows["filtered"]["cpu_s"] > rows["baseline"]["cpu_s"]  # the filter pays for scoring, not the copy
    out = io.StringIO()
    print_costs(store.path(report.key), Console(file=out, width=200))
    assert "intervention cost" in out.getvalue() and "%" in out.getvalue()
