"""Reports and comparisons name artifacts by store key, so a moved store keeps byte-identical reports.

The whole store of the two experiments is copied elsewhere: rebuilding a report there gives the same
``results.json`` and ``report.md`` bytes, every provenance key resolves in the new store (and none can
leave it), and ``compare`` gives the same rows, only each row's ``store`` names the copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.errors import StoreError
from core.lineage import artifact_key, locate
from propensity.cli import main
from propensity.compare import compare, manifest_path
from propensity.report import artifact_path

REPORT_FILES = ("results.json", "report.md")


@pytest.fixture(scope="module")
def moved(two_experiments, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("moved") / "elsewhere" / "store"
    return Path(shutil.copytree(two_experiments.store, dest, symlinks=True)).resolve()


def _provenance_keys(results: dict) -> list[str]:
    keys = []
    for v in results["variants"].values():
        keys += [v["provenance"]["variant"], *v["provenance"]["train"]]
        keys += [k for g in v["gpes"].values() for k in g["provenance"]]
    return keys


def test_rebuilt_report_in_a_moved_store_has_the_same_bytes(two_experiments, moved, capsys):
    key = artifact_key(two_experiments.report_a)
    original = {name: (two_experiments.report_a / name).read_bytes() for name in REPORT_FILES}
    for name in REPORT_FILES:
        (moved / key / name).unlink()
    assert main(["report", str(moved / key)]) == 0
    assert "tagged" in capsys.readouterr().out
    assert {name: (moved / key / name).read_bytes() for name in REPORT_FILES} == original
    for root in (two_experiments.store, two_experiments.store.resolve(), moved):
        assert str(root).encode() not in original["results.json"] + original["report.md"]


def test_provenance_keys_resolve_in_the_moved_store(two_experiments, moved):
    report = moved / artifact_key(two_experiments.report_b)
    results = json.loads((report / "results.json").read_text())
    keys = _provenance_keys(results)
    assert len(keys) == 2 + 2 + 2 and {k.split("/")[0] for k in keys} == {"variant", "train", "eval"}
    for k in keys:
        folder = artifact_path(report, k)
        assert folder == moved / k and json.loads((folder / "manifest.json").read_text())["key"] == k
    with pytest.raises(StoreError, match="escapes the store root"):
        artifact_path(report, "../../outside-000000000000")
    with pytest.raises(StoreError, match="no complete artifact"):
        artifact_path(report, "train/missing-s0-000000000000")


def test_locate_refuses_folders_that_are_not_artifacts(moved, tmp_path):
    store, key = locate(next(moved.glob("score/*[0-9a-f]")))
    assert store.root == moved and key.startswith("score/")
    for folder in (moved, moved / "score", tmp_path / "score" / "misaligned", moved / "score" / "x.partial"):
        with pytest.raises(StoreError, match="is not an artifact folder"):
            locate(folder)


def test_compare_rows_do_not_depend_on_the_store_location(two_experiments, moved, tmp_path):
    reports = [two_experiments.report_a, two_experiments.report_b]
    here = compare(reports, "baseline", tmp_path / "here", n_boot=100)
    there = compare([moved / artifact_key(r) for r in reports], "baseline", tmp_path / "there", n_boot=100)
    rows = {name: json.loads((out / "compare.json").read_text())["rows"] for name, out in
            (("here", here), ("there", there))}
    assert {r["store"] for r in rows["here"]} == {str(two_experiments.store.resolve())}
    assert {r["store"] for r in rows["there"]} == {str(moved)}
    strip = lambda rs: [{k: v for k, v in r.items() if k != "store"} for r in rs]  # noqa: E731
    assert strip(rows["there"]) == strip(rows["here"])
    for r in rows["there"]:
        assert manifest_path(r["store"], r["provenance"]["report"]).is_file()
