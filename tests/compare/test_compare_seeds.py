"""Several training seeds: the report's and ``compare``'s intervals resample seeds as well as items.

Experiment ``tiny_seeds`` is ``tiny`` with seeds [0, 1], run in a copy of the shared store (so the seed-0
chain is reused and the shared store's users stay as other tests expect). The
fake eval adds ``SEED_SHIFT`` to every AI item of seed 1 in every variant, so a within-experiment difference
cancels it (seeds paired by rank) and a difference against the one-seed ``tiny`` baseline spans it.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import yaml
from compare_fakes import OFFSETS, SEED_SHIFT, fake_eval, write_config

from propensity.compare import compare


@pytest.fixture(scope="module")
def seeded(two_experiments, tmp_path_factory) -> tuple[Path, Path]:
    """(the two-seed report, the one-seed ``tiny`` report), both in a copy of the shared store."""
    import eval_gpe.stage
    from propensity.config import load_config
    from propensity.runner import run_local

    root = tmp_path_factory.mktemp("seeds")
    store = shutil.copytree(two_experiments.store, root / "store", symlinks=True)
    path = write_config(root / "seeds.yaml", store, "tiny_seeds", [
        {"name": "baseline", "kind": "baseline"}, {"name": "tagged", "kind": "tag", "threshold": 0.5}])
    data = yaml.safe_load(path.read_text())
    data["train"]["seeds"] = [0, 1]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(eval_gpe.stage, "run", fake_eval)
        report = run_local(load_config(path), show_progress=False, stream=io.StringIO())
    return report, store / two_experiments.report_a.relative_to(two_experiments.store)


def _rows(out: Path) -> dict[tuple[str, str], dict]:
    data = json.loads((out / "compare.json").read_text())
    return {(r["experiment"], r["variant"]): r for r in data["rows"]}


def test_report_intervals_cover_both_seeds(seeded):
    report, report_one = seeded
    one = json.loads((report_one / "results.json").read_text())["variants"]["baseline"]
    two = json.loads((report / "results.json").read_text())["variants"]["baseline"]
    assert two["seeds"] == [0, 1] and two["propensity_before"]["n"] == [2, 24]
    mean_one = one["propensity_before"]["mean"]
    assert two["propensity_before"]["mean"] == pytest.approx(mean_one + SEED_SHIFT / 2)
    assert two["change"]["n"] == [2, 24] and two["change"]["ci95"][0] == pytest.approx(two["change"]["mean"])
    width = two["propensity_before"]["ci95"][1] - two["propensity_before"]["ci95"][0]
    assert width > one["propensity_before"]["ci95"][1] - one["propensity_before"]["ci95"][0]
    assert len(two["gpes"]["em_medicine"]["tamper"]) == 2  # the several-seed summary keeps the tamper curve


def test_compare_pairs_seeds_by_rank_or_resamples_them_apart(seeded, tmp_path):
    out = compare(list(seeded), "baseline", tmp_path / "within", n_boot=400)
    rows = _rows(out)
    within = rows[("tiny_seeds", "tagged")]["diff_before"]  # seeds paired by rank: the seed shift cancels
    assert within["n"] == [2, 24] and within["seeds"] == [2, 2]
    assert within["ci95"] == pytest.approx([OFFSETS["tagged"]] * 2, abs=1e-9)
    out = compare(list(seeded), "tiny/baseline", tmp_path / "across", n_boot=400)
    rows = _rows(out)
    across = rows[("tiny_seeds", "tagged")]["diff_before"]  # 2 seeds vs 1: seeds resampled on each side
    assert across["n"] == [2, 1, 24] and across["seeds"] == [2, 1]
    assert across["mean"] == pytest.approx(OFFSETS["tagged"] + SEED_SHIFT / 2)
    assert across["ci95"] == pytest.approx([OFFSETS["tagged"], OFFSETS["tagged"] + SEED_SHIFT], abs=1e-9)
