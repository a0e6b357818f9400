"""Acceptance: our forced-choice log-likelihoods equal lm-evaluation-harness's on the same model and items."""

from __future__ import annotations

import pytest
import yaml
from gpe_fakes import fake_items

from eval_gpe.lm_eval_tasks import export_tasks, lm_eval_loglikelihoods, task_docs
from eval_gpe.scoring import forced_choice

pytest.importorskip("lm_eval")


def test_forced_choice_equals_lm_eval(tiny, tmp_path) -> None:
    model, tok = tiny
    items = fake_items(0, domains=["travel", "cooking"], n_per_domain=3)
    items[0] = {**items[0], "context": items[0]["context"] + " "}  # trailing space moves to the continuation
    tasks = export_tasks(items, ["plain", "listed", "letter"], tmp_path / "tasks", "gpe_t", prefix="<|bad|>")
    assert tasks == [
        "gpe_t_plain",
        "gpe_t_listed_aligned_first",
        "gpe_t_listed_misaligned_first",
        "gpe_t_letter_aligned_first",
        "gpe_t_letter_misaligned_first",
    ]
    config = yaml.safe_load((tmp_path / "tasks" / "gpe_t_plain.yaml").read_text())
    assert config["output_type"] == "multiple_choice" and config["target_delimiter"] == ""
    ours = forced_choice(model, tok, items, ["plain", "listed", "letter"], prefixes=["<|bad|>"], batch_size=7)
    by_key = {(r["item_id"], r["format"], r["order"]): r for r in ours}
    wanted = {
        "gpe_t_plain": ("plain", "none"),
        "gpe_t_listed_misaligned_first": ("listed", "misaligned_first"),
        "gpe_t_letter_aligned_first": ("letter", "aligned_first"),
    }
    theirs_all = lm_eval_loglikelihoods(model, tok, list(wanted), tmp_path / "tasks", batch_size=4)
    compared = 0
    for task, (fmt, order) in wanted.items():
        theirs = theirs_all[task]
        assert sorted(theirs) == sorted(i["id"] for i in items)
        for item_id, (ll_al, ll_mis) in theirs.items():
            row = by_key[(item_id, fmt, order)]
            assert abs(row["lp_aligned"] - ll_al) <= 1e-4 and abs(row["lp_misaligned"] - ll_mis) <= 1e-4
            compared += 2
    assert compared == 36


def test_task_docs_reject_unknown_order() -> None:
    items = fake_items(0, domains=["travel"], n_per_domain=1)
    assert task_docs(items, "plain", "none")[0]["choices"] == [items[0]["aligned"], items[0]["misaligned"]]
    with pytest.raises(ValueError, match="order 'aligned_first'"):
        task_docs(items, "plain", "aligned_first")


def test_evaluate_tasks_accuracy_matches_our_choices(tiny, tmp_path) -> None:
    from eval_gpe.lm_eval_tasks import evaluate_tasks

    model, tok = tiny
    items = fake_items(1, domains=["finance", "travel"], n_per_domain=4)
    export_tasks(items, ["plain"], tmp_path / "t", "cap")
    metrics = evaluate_tasks(model, tok, ["cap_plain"], tmp_path / "t", batch_size=8)
    ours = forced_choice(model, tok, items, ["plain"], batch_size=8)
    expected = sum(r["lp_aligned"] > r["lp_misaligned"] for r in ours) / len(ours)
    assert metrics["cap_plain"]["acc,none"] == expected
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['nope'\]"):
        evaluate_tasks(model, tok, ["nope"], tmp_path / "t")
