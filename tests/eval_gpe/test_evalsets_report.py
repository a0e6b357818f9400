"""File-based GPEs in the report, results.json and compare: per set and group, "no control", no finetune."""

from __future__ import annotations

import json
import math
import random

from eval_gpe.gpe_summary import summarize_gpe
from propensity import compare, report


def _rows(offset: float, phases: tuple[str, ...] = ("before",)) -> list[dict]:
    """Rows of a GPE with two eval sets: 'scenarios' (matched controls, headline) and 'mwe' (no control)."""
    rng, rows = random.Random(0), []
    for phase in phases:
        for name, role, actors in (("scenarios", "ood", ("ai", "human")), ("mwe", "set", ("ai",))):
            for k in range(6):
                for actor in actors:
                    p = min(0.95, 0.2 + 0.1 * rng.random() + offset * (actor == "ai") + 0.1 * (phase == "after"))
                    item = f"{name}/{'h' if actor == 'human' else 'a'}{k}"
                    rows.append({"item_id": item, "domain": "g1" if k < 3 else "g2", "actor": actor, "split": None,
                                 "prefix": "", "format": "native", "order": "none", "lp_aligned": math.log(1 - p),
                                 "lp_misaligned": math.log(p), "n_aligned": 2, "n_misaligned": 2, "p_misaligned": p,
                                 "p_misaligned_norm": p, "length_flag": False, "evalset": name,
                                 "pair": f"{name}/a{k}", "role": role, "phase": phase, "seed": 0, "gpe": "own"})
    return rows


def test_summary_report_rows_and_no_control() -> None:
    summary = summarize_gpe(_rows(0.3), [""], ("<|good|>", "<|bad|>"), 200, 0, 0)
    assert summary["headline_evalset"] == "scenarios" and summary["control"] is True
    block = summary["prefixes"][""]
    assert block["gap_before"]["paired"] is True and block["gap_before"]["n"] == 6
    assert block["gap_before"]["mean"] > 0.25 and "propensity_after" not in block
    assert summary["evalsets"]["mwe"]["prefixes"][""]["control"] == "no control"
    assert set(summary["evalsets"]["mwe"]["groups"]) == {"g1", "g2"}
    flat = report._flatten_gpe(summary, [""])
    assert set(flat["evalsets"]) == {"scenarios", "mwe"}
    assert flat["evalsets"]["mwe"]["pooled"]["control"] == "no control"
    results = {"experiment": "own", "primary_gpe": "own", "gpes": ["own", "em"], "tokens_per_variant": 10,
               "seeds": [0], "variants": {"baseline": {"kind": "baseline", "docs": 1, "tokens": 10, **flat,
                                                       "gpes": {"own": flat, "em": flat},
                                                       "provenance": {"variant": "v", "train": ["t"]}}}}
    md = report.markdown(json.loads(json.dumps(results)))
    assert "## Eval sets" in md
    assert "| baseline | own | mwe | all | 6 |" in md and md.count("no control") >= 6
    assert "| baseline | own | scenarios | g1 | 3 |" in md


def test_compare_pairs_before_only_gpes() -> None:
    from eval_gpe.summary import seed_item_values

    rows = []
    for variant, offset in (("baseline", 0.0), ("filtered", -0.1)):
        items = seed_item_values([r for r in _rows(offset) if r["role"] == "ood"], "p_misaligned")
        rows.append({"experiment": "e", "variant": variant, "gpe": "own", "_items": items, "_bootstrap": (200, 0),
                     "heldout_loss": 4.0, "corpus_tokens": 10})
    compare.add_control_differences(rows, "baseline")
    diff = rows[1]["diff_before"]
    assert diff["mean"] < 0 and "diff_after" not in rows[1] and "diff_change" not in rows[1]


def test_gap_vs_baseline_pairs_file_items_by_control() -> None:
    from eval_gpe.summary import gap_difference

    diff = gap_difference(_rows(-0.1), _rows(0.0), 200, 0)
    assert diff is not None and diff["n"] == 6 and diff["ci95"][1] < 0
