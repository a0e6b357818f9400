"""Two runs of one experiment read apart in ``compare`` (issue 22, finding 12), and every token count is named
from one vocabulary (finding 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError, StoreError
from core.names import TOKEN_COUNTS
from propensity import compare, report

ROOT = Path(__file__).resolve().parents[2]


def _row(report_key: str, variant: str) -> dict:
    return {"experiment": "honesty", "variant": variant, "gpe": "em_medicine", "provenance": {"report": report_key}}


def test_two_runs_of_one_experiment_get_distinct_names_and_an_ambiguous_control_is_refused() -> None:
    rows = [_row(f"report/honesty-{h}", v) for h in ("aaaaaa111111", "bbbbbb222222") for v in ("baseline", "filtered")]
    compare.name_runs(rows)
    assert [r["run"] for r in rows] == ["honesty@aaaaaa"] * 2 + ["honesty@bbbbbb"] * 2
    assert len({(r["run"], r["variant"]) for r in rows}) == 4  # no two rows read alike
    # a bare variant name pairs each run with its own baseline
    assert compare._find_control(rows, rows[1], "baseline") is rows[0]
    assert compare._find_control(rows, rows[3], "baseline") is rows[2]
    expected = r"ambiguous.*honesty@aaaaaa, honesty@bbbbbb.*--control honesty@aaaaaa/baseline"
    with pytest.raises(ConfigError, match=expected):
        compare._find_control(rows, rows[3], "honesty/baseline")
    assert compare._find_control(rows, rows[3], "honesty@aaaaaa/baseline") is rows[0]


def test_one_run_keeps_the_plain_experiment_name() -> None:
    rows = [_row("report/honesty-aaaaaa111111", "baseline")]
    compare.name_runs(rows)
    assert rows[0]["run"] == "honesty"


def test_the_run_first_hint_keeps_the_users_overrides(tmp_path: Path) -> None:
    overrides = [f"store={tmp_path / 'store'}", "variants.1.threshold=0.7"]
    with pytest.raises(StoreError, match=r"run `propensity run \S+tiny.yaml --set store=\S+ --set "
                                         r"variants.1.threshold=0.7` first"):
        compare.resolve_report(ROOT / "configs" / "tiny.yaml", overrides)


def test_token_counts_are_labelled_from_one_vocabulary() -> None:
    assert {"token budget", "tokens trained"} <= set(report.HEADER)
    assert "corpus tokens" in compare.HEADER
    labels = [h for h in (*report.HEADER, *compare.HEADER) if "token" in h]
    assert all(h in TOKEN_COUNTS for h in labels), labels
