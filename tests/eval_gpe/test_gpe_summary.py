from __future__ import annotations

import numpy as np
import pytest

from eval_gpe.summary import gap, gap_difference, item_values, length_report, summarize


def _row(item_id: str, actor: str, phase: str, prefix: str, fmt: str, order: str, p: float, **kw) -> dict:
    lp_al, lp_mis = 0.0, float(np.log(p / (1 - p)))
    return {
        "item_id": item_id,
        "actor": actor,
        "phase": phase,
        "prefix": prefix,
        "format": fmt,
        "order": order,
        "p_misaligned": p,
        "p_misaligned_norm": kw.get("norm", p),
        "lp_aligned": lp_al,
        "lp_misaligned": lp_mis,
        "n_aligned": kw.get("n_al", 5),
        "n_misaligned": kw.get("n_mis", 5),
        "length_flag": abs(kw.get("n_mis", 5) - kw.get("n_al", 5)) > 1,
    }


def test_item_value_averages_orders_then_formats() -> None:
    rows = [
        _row("ai-0", "ai", "before", "", "plain", "none", 0.2),
        _row("ai-0", "ai", "before", "", "listed", "aligned_first", 0.6),
        _row("ai-0", "ai", "before", "", "listed", "misaligned_first", 0.8),
    ]
    # plain 0.2, listed mean(0.6, 0.8) = 0.7 -> item mean 0.45 (not the row mean 0.533)
    assert item_values(rows, "p_misaligned")[("before", "", "ai")]["ai-0"] == pytest.approx(0.45)


def _planted_rows(n: int = 60) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for k in range(n):
        base = rng.uniform(0.2, 0.6)
        for prefix, shift in (("", 0.0), ("<|good|>", -0.05), ("<|bad|>", 0.05)):
            for phase, ft in (("before", 0.0), ("after", 0.1)):
                rows.append(_row(f"ai-{k}", "ai", phase, prefix, "plain", "none", base + shift + ft))
                rows.append(_row(f"human-{k}", "human", phase, prefix, "plain", "none", base + 0.1 + shift))
    return rows


def test_summarize_recovers_planted_effects() -> None:
    s = summarize(_planted_rows(), ["", "<|good|>", "<|bad|>"], ("<|good|>", "<|bad|>"), n_boot=500, seed=0)
    untagged = s["prefixes"][""]
    assert untagged["change"]["mean"] == pytest.approx(0.1)
    assert untagged["change"]["ci95"][0] == pytest.approx(0.1) and untagged["control_change"]["mean"] == 0
    assert untagged["gap_before"]["paired"] is True
    assert untagged["gap_before"]["mean"] == pytest.approx(-0.1) and untagged["gap_before"]["ci95"][1] < 0
    assert untagged["gap_after"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert untagged["logodds_change"]["mean"] > 0
    assert s["tag_difference"]["mean"] == pytest.approx(0.1) and s["tag_difference"]["ci95"][0] > 0.09
    blocks = {"length_normalised", "logodds", "logodds_change"}
    assert set(untagged["length_normalised"]) == set(untagged["logodds"]) == set(untagged) - blocks
    assert untagged["logodds"]["gap_before"]["ci95"][1] < 0  # the human items' +0.1, on the log-odds scale
    assert untagged["logodds"]["change"]["ci95"][0] > 0
    assert "tag_difference" not in summarize(_planted_rows(), [""], ("<|good|>", "<|bad|>"), 100, 0)


def test_gap_is_unpaired_without_matched_controls() -> None:
    g = gap({"ai-a": 0.5, "ai-b": 0.7}, {"human-x": 0.1, "human-y": 0.3, "human-z": 0.2}, 200, 0)
    assert g["paired"] is False and g["mean"] == pytest.approx(0.6 - 0.2) and g["n"] == [2, 3]


def test_length_report_flags_items() -> None:
    rows = [
        _row("ai-0", "ai", "before", "", "plain", "none", 0.5, n_al=4, n_mis=6),
        _row("ai-1", "ai", "before", "", "plain", "none", 0.5, n_al=4, n_mis=5),
        _row("ai-0", "ai", "after", "", "plain", "none", 0.5, n_al=4, n_mis=9),
    ]  # other phase: ignored
    report = length_report(rows)["plain"]
    assert (
        report["mean_token_diff"] == 1.5 and report["n_flagged"] == 1 and report["flagged_items"] == ["ai-0"]
    )


def test_gap_difference_isolates_an_ai_specific_shift() -> None:
    """Two models on the same matched items: the second lowers AI items only (on the log-odds scale)."""
    rng = np.random.default_rng(1)
    ref, rows = [], []
    for k in range(30):
        base = rng.uniform(0.2, 0.6)
        for model, ai_p in ((ref, base), (rows, base / 4)):  # /4 in probability, AI items only
            model.append(_row(f"ai-{k}", "ai", "before", "", "plain", "none", ai_p))
            model.append(_row(f"human-{k}", "human", "before", "", "plain", "none", base))
    diff = gap_difference(rows, ref, 500, 0)
    expected = np.mean([np.log(b / 4 / (1 - b / 4)) - np.log(b / (1 - b)) for b in
                        [r["p_misaligned"] for r in ref if r["actor"] == "human"]])
    assert diff["mean"] == pytest.approx(expected) and diff["ci95"][1] < 0
    same = gap_difference(ref, ref, 200, 0)
    assert same["mean"] == 0 and same["ci95"] == [0, 0]
    assert gap_difference(rows[:-2], ref, 200, 0) is None  # item 29 has no human control: not matched


def test_gap_difference_over_seeds_covers_run_to_run_variance() -> None:
    """Two seeds per model: a run-to-run spread that the item bootstrap of pooled items cannot see widens the
    interval (seeds x items bootstrap); a shift every seed agrees on keeps it narrow."""
    rng = np.random.default_rng(2)
    bases = rng.uniform(0.2, 0.6, 30)

    def model(divisors: list[float]) -> list[dict]:
        rows = []
        for s, d in enumerate(divisors):
            for k, base in enumerate(bases):
                rows.append({**_row(f"ai-{k}", "ai", "before", "", "plain", "none", base / d), "seed": s})
                rows.append({**_row(f"human-{k}", "human", "before", "", "plain", "none", base), "seed": s})
        return rows

    ref = model([1.0, 1.0])
    steady = gap_difference(model([2.0, 2.0]), ref, 500, 0)
    spread = gap_difference(model([1.2, 4.0]), ref, 500, 0)
    assert steady["n"] == [2, 30] and spread["n"] == [2, 30]
    assert steady["ci95"][1] - steady["ci95"][0] < 0.1  # every seed agrees: only the item spread is left
    assert spread["ci95"][1] - spread["ci95"][0] > 0.5  # the seeds disagree: the interval says so
    as_one = [{**r, "seed": 0} for r in model([1.2, 4.0])], [{**r, "seed": 0} for r in ref]
    pooled = gap_difference(*as_one, 500, 0)
    assert pooled["n"] == 30 and pooled["ci95"][1] - pooled["ci95"][0] < spread["ci95"][1] - spread["ci95"][0]
    assert gap_difference(model([2.0, 2.0]), ref[: len(ref) // 2], 500, 0)["n"] == 30  # unequal seeds: pooled


def test_summary_of_several_seeds_resamples_seeds() -> None:
    """Seed 1 shifts every AI item by +0.2: the means are over seeds, the propensity interval spans the two
    seeds' means, and the within-seed change (after - before) stays exact."""
    from eval_gpe.summary import seed_item_values

    one = _planted_rows()
    two = [{**r, "seed": 0} for r in one] + [
        {**r, "seed": 1, "p_misaligned": r["p_misaligned"] + 0.2 * (r["actor"] == "ai")} for r in one
    ]
    s1 = summarize(one, [""], ("<|good|>", "<|bad|>"), n_boot=500, seed=0)["prefixes"][""]
    s2 = summarize(two, [""], ("<|good|>", "<|bad|>"), n_boot=500, seed=0)["prefixes"][""]
    assert s1["propensity_before"]["n"] == 60 and s2["propensity_before"]["n"] == [2, 60]
    assert s2["propensity_before"]["mean"] == pytest.approx(s1["propensity_before"]["mean"] + 0.1)
    low, high = s2["propensity_before"]["ci95"]
    assert low < s1["propensity_before"]["mean"] + 0.01 and high > s1["propensity_before"]["mean"] + 0.19
    assert s2["change"]["n"] == [2, 60] and s2["change"]["ci95"] == pytest.approx([0.1, 0.1])
    assert s2["gap_before"]["mean"] == pytest.approx(0.0, abs=1e-9)
    values = seed_item_values(two, "p_misaligned")[("before", "", "ai")]
    assert values["ai-0"] == pytest.approx((one[0]["p_misaligned"], one[0]["p_misaligned"] + 0.2))
    with pytest.raises(ValueError, match="different items"):
        seed_item_values(two[:-2], "p_misaligned")  # seed 1 lost its last item's rows
