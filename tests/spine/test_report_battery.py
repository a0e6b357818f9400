"""The report's GPE battery table: every variant x GPE, in report.md and in the printed table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from propensity import report


def _block(mean: float) -> dict:
    return {"mean": mean, "ci95": [mean - 0.01, mean + 0.01], "n": 140}


def _gpe(before: float) -> dict:
    return {"propensity_before": _block(before), "propensity_after": _block(before + 0.1), "change": _block(0.1),
            "control_before": _block(0.3), "control_change": _block(0.02), "heldout_loss": 4.5}


def _results(gpes: list[str]) -> dict:
    variants = {}
    for name, before in (("baseline", 0.35), ("filtered", 0.05)):
        blocks = {g: _gpe(before + 0.01 * i) for i, g in enumerate(gpes)}
        if name == "filtered":
            for g in gpes:
                blocks[g]["gap_vs_baseline_logodds"] = {**_block(-0.25), "baseline": "baseline"}
        variants[name] = {"kind": name, "docs": 100, "tokens": 2000, "gpes": blocks,
                          "provenance": {"variant": f"variant/{name}-x", "train": [f"train/{name}-s0-x"]},
                          **{k: v for k, v in blocks[gpes[0]].items()}}
    return {"experiment": "demo", "primary_gpe": gpes[0], "gpes": gpes, "tokens_per_variant": 2000,
            "seeds": [0], "variants": variants}


def test_battery_table_lists_every_variant_and_gpe(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = _results(["em_medicine", "em_code", "benign_medicine"])
    rows = report.battery_rows(results)
    assert [(r[0], r[1]) for r in rows] == [(v, g) for v in ("baseline", "filtered")
                                            for g in ("em_medicine", "em_code", "benign_medicine")]
    assert rows[4] == ["filtered", "em_code", "0.060", "0.160", "+0.100 [+0.090, +0.110]", "0.300",
                       "+0.020 [+0.010, +0.030]", "-0.250 [-0.260, -0.240]"]
    assert rows[0][-1] == "-"  # the baseline has no gap against itself
    md = report.markdown(results)
    assert "## GPE battery" in md and "| filtered | em_code | 0.060 | 0.160 |" in md
    (tmp_path / "results.json").write_text(json.dumps(results))
    report.print_table(tmp_path)
    out = capsys.readouterr().out
    assert "GPE battery" in out and "benign_medicine" in out


def test_single_gpe_report_has_no_battery_section() -> None:
    results = _results(["em_medicine"])
    assert report.battery_rows(results) == []
    assert "GPE battery" not in report.markdown(results)
