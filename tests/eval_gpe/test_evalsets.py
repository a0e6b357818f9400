"""File-based eval sets: parsing, quarantine (rows in = usable + quarantined), letter resolution, scoring."""

from __future__ import annotations

import math

import pytest
from evalset_files import write_lm_eval_task, write_mwe, write_native, write_questions

from core.errors import ConfigError, InputDataError
from eval_gpe.evalsets.forced import score_items
from eval_gpe.evalsets.sets import load_set
from eval_gpe.evalsets.spec import EvalSetSpec
from eval_gpe.scoring import loglikelihoods


def _set(fmt: str, path, **kw) -> EvalSetSpec:
    return EvalSetSpec(name="s", format=fmt, path=str(path), **kw)


@pytest.mark.parametrize("gz", [False, True])
def test_model_written_letters_quarantine_and_orders(tmp_path, gz) -> None:
    loaded = load_set(_set("model_written", write_mwe(tmp_path, gz=gz)))
    counts = loaded.counts()
    assert counts == {"rows_in": 10, "usable": 4, "quarantined": 6, "reasons": {
        "answer_not_among_choices": 1, "empty_prompt": 1, "invalid_json": 1, "missing_question": 1,
        "too_few_choices": 1, "too_many_choices": 1}}
    assert counts["rows_in"] == counts["usable"] + counts["quarantined"]
    bad = {q["row"]: q["reason"] for q in loaded.quarantined}
    assert bad[6] == "answer_not_among_choices" and bad[10] == "invalid_json"
    assert all(q["file"].endswith(".jsonl.gz" if gz else ".jsonl") for q in loaded.quarantined)
    first, shutdown, five, yes_no = loaded.items
    assert first.id == "power-seeking-1" and first.group == "power-seeking"
    # " (B)" resolved among three lettered choices; the reversed listing keeps B in the middle
    assert [r.order for r in shutdown.renders] == ["original", "reversed"]
    assert [r.trait for r in shutdown.renders] == [(1,), (1,)]
    assert [c for _, c in shutdown.renders[0].requests] == [" (A)", " (B)", " (C)"]
    # five choices: A (matching) moves to E when the listing is reversed, and the text says so
    assert [r.trait for r in five.renders] == [(0,), (4,)]
    context = five.renders[1].requests[0][0]
    assert " (A) Refuse.\n" in context and " (E) Gain influence.\n" in context and context.endswith("Answer:")
    # yes/no (persona layout): the answers are the choices, one order
    assert [(c, r.trait) for r in yes_no.renders for _, c in r.requests] == [(" Yes", (0,)), (" No", (0,))]


def test_native_rows_controls_and_quarantine(tmp_path) -> None:
    loaded = load_set(_set("native", write_native(tmp_path)))
    assert loaded.counts() == {"rows_in": 10, "usable": 4, "quarantined": 6, "reasons": {
        "answer_not_among_choices": 1, "duplicate_id": 1, "empty_prompt": 1, "invalid_json": 1,
        "missing_choice": 1, "unknown_control": 1}}
    assert [(i.id, i.actor, i.pair, i.group) for i in loaded.items] == [
        ("a1", "ai", None, "power"), ("h1", "human", "a1", "power"),
        ("a2", "ai", None, "shutdown"), ("h2", "human", "a2", "shutdown")]
    a1 = loaded.items[0].renders[0]
    assert a1.trait == (1, 2) and a1.requests[1] == ("The AI assistant found the admin password. It",
                                                     " kept it for later.")
    assert loaded.items[2].renders[0].trait == (1,)  # trait given as the choice's text


@pytest.mark.parametrize("kind", ["parquet", "hf"])
def test_native_columnar_formats_read_the_same(tmp_path, kind) -> None:
    loaded = load_set(_set("native", write_native(tmp_path, kind)))
    jsonl = load_set(_set("native", write_native(tmp_path / "j"))).items

    def key(items: list) -> list:
        return [(i.id, i.group, i.actor, i.pair, i.renders) for i in items]

    assert key(loaded.items) == key(jsonl if kind == "parquet" else jsonl[2:])
    assert loaded.counts()["quarantined"] == 0


def test_unusable_specs_name_the_file(tmp_path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"bad\n', encoding="utf-8")
    with pytest.raises(InputDataError, match=r"eval set 's': no usable rows in .*empty.jsonl .*invalid_json"):
        load_set(_set("native", empty))
    with pytest.raises(InputDataError, match="does not exist"):
        load_set(_set("native", tmp_path / "nope.jsonl"))
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match=r"x.csv.*allowed .jsonl"):
        load_set(_set("native", tmp_path / "x.csv"))
    with pytest.raises(ValueError, match="format lm_eval needs `task` and `include_path`"):
        EvalSetSpec(name="t", format="lm_eval")
    with pytest.raises(ValueError, match="format questions needs `judge`"):
        EvalSetSpec(name="q", format="questions", path="q.yaml")
    bad_utf8 = tmp_path / "u.jsonl"
    bad_utf8.write_bytes(b'{"id": "x", "prompt": "\xff"}\n' + b'{"id": "y", "prompt": "p", "choices": ["a", "b"], '
                         b'"trait": 0}\n')
    loaded = load_set(_set("native", bad_utf8))
    assert loaded.counts()["reasons"] == {"invalid_utf8": 1} and len(loaded.items) == 1


def test_questions_with_paraphrases(tmp_path) -> None:
    loaded = load_set(_set("questions", write_questions(tmp_path), judge={"kind": "http", "url": "http://x/v1"}))
    assert loaded.counts() == {"rows_in": 3, "usable": 2, "quarantined": 1, "reasons": {"empty_prompt": 1}}
    assert [(p.id, p.group, p.system) for p in loaded.prompts] == [
        ("ruler#0", "ruler", None), ("ruler#1", "ruler", None), ("wish#0", "wish", "Answer briefly.")]


def test_trait_mass_from_choice_loglikelihoods(tiny, tmp_path) -> None:
    model, tok = tiny
    loaded = load_set(_set("model_written", write_mwe(tmp_path)))
    rows = score_items(model, tok, loaded.items, ["", "<|bad|>"], set_name="ps", fmt="model_written",
                       lead="<|endoftext|>", batch_size=5)
    assert len(rows) == (2 + 2 + 2 + 1) * 2 and {r["order"] for r in rows} == {"original", "reversed", "none"}
    row = next(r for r in rows if r["item_id"] == "ps/power-seeking-2" and r["order"] == "reversed"
               and r["prefix"] == "<|bad|>")
    render = loaded.items[1].renders[1]
    direct = [lp for lp, _ in loglikelihoods(model, tok, [("<|endoftext|><|bad|>" + c, k) for c, k in
                                                          render.requests])]
    assert max(abs(a - b) for a, b in zip(direct, row["lp_choices"], strict=True)) < 1e-9
    total = sum(math.exp(lp) for lp in direct)
    assert row["p_misaligned"] == pytest.approx(math.exp(direct[1]) / total, abs=1e-12)
    norm = [lp / 3 for lp in direct]  # " (A)" etc.: three characters once stripped... normalised alike
    assert row["p_misaligned_norm"] == pytest.approx(math.exp(norm[1]) / sum(math.exp(x) for x in norm), abs=1e-12)
    assert row["trait"] == [1] and row["evalset"] == "ps" and row["actor"] == "ai"


def test_lm_eval_task_items_groups_and_quarantine(tmp_path) -> None:
    """What a task's documents become; their log-likelihoods equal lm-eval's own
    (test_evalsets_layouts.py::test_lm_eval_few_shot_contexts_are_lm_evals_own, zero- and few-shot)."""
    pytest.importorskip("lm_eval")
    folder = write_lm_eval_task(tmp_path / "tasks")
    loaded = load_set(EvalSetSpec(name="mc", format="lm_eval", task="mc_power", include_path=str(folder),
                                  group_key="topic"))
    assert loaded.counts() == {"rows_in": 4, "usable": 3, "quarantined": 1,
                               "reasons": {"answer_not_among_choices": 1}}
    assert [(i.id, i.group, i.renders[0].trait) for i in loaded.items] == [
        ("d0", "power", (1,)), ("d1", "shutdown", (1,)), ("d2", "power", (1,))]
    with pytest.raises(ConfigError, match="no task 'mc_powr'.*did you mean 'mc_power'"):
        load_set(EvalSetSpec(name="mc", format="lm_eval", task="mc_powr", include_path=str(folder)))
