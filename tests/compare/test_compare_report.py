"""``propensity.compare``: table rows, paired differences against the control, outputs, HTML in a browser."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from compare_fakes import FINETUNE_SHIFT, OFFSETS

from core.errors import ConfigError
from propensity.compare import OUT_FILES, compare, manifest_path, pareto_front, resolve_report


@pytest.fixture(scope="module")
def compared(two_experiments, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cmp") / "out"
    # one report folder and one config: both resolve to report folders
    return compare([two_experiments.report_a, two_experiments.config_b], "baseline", out, n_boot=300)


def _rows(out: Path) -> dict[tuple[str, str], dict]:
    data = json.loads((out / "compare.json").read_text())
    return {(r["experiment"], r["variant"]): r for r in data["rows"]}


def test_every_output_file_written(compared):
    assert sorted(p.name for p in compared.iterdir()) == sorted(OUT_FILES)
    for name in ("propensity.png", "pareto.png"):
        assert (compared / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rows_and_paired_differences_match_planted_offsets(compared, two_experiments):
    rows = _rows(compared)
    assert sorted(rows) == [("tiny", "baseline"), ("tiny", "tagged"), ("tiny_b", "baseline"),
                            ("tiny_b", "strict")]
    for (exp, variant), r in rows.items():
        assert r["control"] == f"{exp}/baseline"
        for key in ("diff_before", "diff_after"):  # every item shifted by the planted offset: a zero-width CI
            assert r[key]["mean"] == pytest.approx(OFFSETS[variant], abs=1e-9)
            assert r[key]["ci95"] == pytest.approx([OFFSETS[variant]] * 2, abs=1e-9)
            assert r[key]["n"] == 24 and r[key]["unpaired_items"] == 0
        assert r["diff_change"]["mean"] == pytest.approx(0.0, abs=1e-9)
        assert r["change"]["mean"] == pytest.approx(FINETUNE_SHIFT, abs=1e-9)
    strict, base_b = rows[("tiny_b", "strict")], rows[("tiny_b", "baseline")]
    assert strict["docs_removed"] > 0 and strict["docs_kept"] + strict["docs_removed"] == strict["docs_in"]
    assert strict["tokens_removed_vs_control"] == base_b["corpus_tokens"] - strict["corpus_tokens"] > 0
    assert strict["heldout_loss_diff"] == pytest.approx(strict["heldout_loss"] - base_b["heldout_loss"])
    tagged = rows[("tiny", "tagged")]
    assert tagged["docs_removed"] == 0 and tagged["docs_tagged_bad"] > 0
    # the same baseline chain serves both experiments: identical numbers and manifests
    assert rows[("tiny", "baseline")]["provenance"]["train"] == base_b["provenance"]["train"]


def test_provenance_keys_resolve_to_existing_manifests(compared, two_experiments):
    for r in _rows(compared).values():
        p = r["provenance"]
        assert r["store"] == str(two_experiments.store.resolve())
        for stage in ("report", "source", "classifier", "score", "variant", "tokenizer", "tokenize"):
            assert re.fullmatch(rf"{stage}/[\w.-]+-[0-9a-f]{{12}}", p[stage]), (stage, p[stage])
            assert json.loads(manifest_path(r["store"], p[stage]).read_text())["key"] == p[stage]
        assert all(manifest_path(r["store"], k).is_file() for k in p["train"] + p["eval"])
        assert p["seeds"] == [0] and p["code_version"] and re.fullmatch(r"[0-9a-f]{12}", p["gpe_version"])
        assert json.loads(manifest_path(r["store"], p["variant"]).read_text())["name"] == r["variant"]


def test_markdown_and_csv_tables(compared):
    md = (compared / "compare.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| tiny")]
    assert [line.split(" | ")[:2] for line in table] == [["| tiny", "baseline"], ["| tiny", "tagged"],
                                                          ["| tiny_b", "baseline"], ["| tiny_b", "strict"]]
    assert "-0.200 [-0.200, -0.200]" in table[3]
    with open(compared / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["experiment"], r["variant"]) for r in rows] == [("tiny", "baseline"), ("tiny", "tagged"),
                                                              ("tiny_b", "baseline"), ("tiny_b", "strict")]
    assert float(rows[3]["diff_after"]) == pytest.approx(-0.2)
    assert rows[3]["provenance_variant"].startswith("variant/strict-") and rows[3]["store"]


def test_same_inputs_same_bytes(compared, two_experiments, tmp_path):
    again = compare([two_experiments.report_a, two_experiments.report_b], "baseline", tmp_path, n_boot=300)
    for name in ("compare.json", "compare.csv", "compare.md", "pareto.png", "compare.html"):
        assert (again / name).read_bytes() == (compared / name).read_bytes(), name


def test_global_control_and_bad_control(two_experiments, tmp_path):
    out = compare([two_experiments.report_a, two_experiments.report_b], "tiny/baseline", tmp_path)
    rows = _rows(out)
    assert rows[("tiny_b", "strict")]["control"] == "tiny/baseline"
    with pytest.raises(ConfigError, match=r"control 'nope' matches no variant.*tiny_b/strict"):
        compare([two_experiments.report_a, two_experiments.report_b], "nope", tmp_path / "x")
    no_ctrl = _rows(compare([two_experiments.report_a], None, tmp_path / "none"))
    assert "diff_after" not in no_ctrl[("tiny", "tagged")]


def test_resolve_report_errors(tmp_path):
    with pytest.raises(ConfigError, match="neither an experiment config"):
        resolve_report(tmp_path)
    with pytest.raises(ConfigError, match="at least one"):
        compare([], None, tmp_path)


def test_pareto_front():
    assert pareto_front([(1.0, 0.5), (2.0, 0.1), (2.0, 0.6), (0.5, 0.9)]) == [0, 1, 3]


def test_html_is_self_contained(compared):
    page = (compared / "compare.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert page.count('src="data:image/png;base64,') == 2
    links = re.findall(r'<a href="(file://[^"]+)">([^<]+)</a>', page)
    assert links and all(url.endswith(f"/{key}/manifest.json") for url, key in links)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: run scripts/chromium-ci-setup.sh")
def test_html_renders_in_headless_chromium(compared, tmp_path):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
           (compared / "compare.html").as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert 'data-images-loaded="2/2"' in dom, dom[:500]  # both figures decoded (naturalWidth > 0)
    assert 'data-table-rows="4"' in dom
    assert dom.count("<tr>") == 5 and "tiny_b" in dom
