"""File-based GPEs in the eval stage: no finetune, finetune + eval sets, judged questions, the summary shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evalset_files import write_mwe, write_native, write_questions
from judge_server import JudgeServer

from core.stage import StageContext
from eval_gpe import registry
from eval_gpe.stage import run


def _own(tmp_path: Path, url: str | None = None) -> tuple[dict, dict]:
    """A GPE without finetune (native + model-written sets) and one with a small finetune (+ judged set)."""
    native, mwe = write_native(tmp_path / "data"), write_mwe(tmp_path / "data")
    pretrained = {"name": "own_pretrained", "trait": "power_seeking", "description": "no finetune",
                  "finetune": "none", "evalsets": [
                      {"name": "native", "format": "native", "path": str(native)},
                      {"name": "mwe", "format": "model_written", "path": str(mwe)}]}
    finetuned = registry.get("em_medicine").model_dump(mode="json")
    finetuned.update(name="own_finetuned", eval=None, evalsets=[{"name": "native", "format": "native",
                                                                 "path": str(native)}])
    finetuned["finetune"].update(n_texts=40, steps=3, batch_size=8, checkpoints=[1])
    if url:
        finetuned["evalsets"].append({"name": "open", "format": "questions",
                                      "path": str(write_questions(tmp_path / "data")), "samples": 3,
                                      "max_new_tokens": 6, "judge": {"kind": "http", "url": url,
                                                                     "model": "judge-model"}})
    return pretrained, finetuned


def _ctx(train_dir: Path, source_dir: Path, out: Path, definition: dict, battery: list) -> StageContext:
    out.mkdir(parents=True, exist_ok=True)
    config = {"gpe": definition["name"], "definition": definition, "battery": battery, "prefixes": ["", "<|bad|>"],
              "heldout_docs": 3, "bootstrap": 200, "batch_size": 16}
    return StageContext(stage="eval", name="t", config=config, inputs={"model": train_dir, "source": source_dir},
                        out=out, seed=0, show_progress=False)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_file_gpes_in_the_stage(train_dir, source_dir, tmp_path, fake_synth) -> None:
    with JudgeServer() as server:
        pretrained, finetuned = _own(tmp_path, server.url)
        result = run(_ctx(train_dir, source_dir, tmp_path / "out", pretrained, [finetuned]))
    out = tmp_path / "out"
    assert result["gpes"] == ["own_pretrained", "own_finetuned"]
    # no finetune: before rows only; the headline set (native) has role ood, the other role set
    rows = _rows(out / "gpes" / "own_pretrained" / "items.jsonl")
    assert {r["phase"] for r in rows} == {"before"}
    assert {(r["evalset"], r["role"]) for r in rows} == {("native", "ood"), ("mwe", "set")}
    assert len([r for r in rows if r["evalset"] == "mwe"]) == (2 + 2 + 2 + 1) * 2  # renders x prefixes
    top = json.loads((out / "gpes" / "own_pretrained" / "summary.json").read_text())
    assert top["headline_evalset"] == "native" and top["finetune"] is None and top["heldout_loss_after"] is None
    block = top["prefixes"][""]
    assert set(block) >= {"propensity_before", "control_before", "gap_before", "length_normalised"}
    assert "propensity_after" not in block and block["gap_before"]["paired"] is True
    assert block["gap_before"]["mean"] == pytest.approx(block["propensity_before"]["mean"]
                                                        - block["control_before"]["mean"])
    mwe = top["evalsets"]["mwe"]
    assert mwe["control"] is False and mwe["prefixes"][""]["control"] == "no control"
    assert mwe["rows"] == {"rows_in": 10, "usable": 4, "quarantined": 6, "reasons": {
        "answer_not_among_choices": 1, "empty_prompt": 1, "invalid_json": 1, "missing_question": 1,
        "too_few_choices": 1, "too_many_choices": 1}}
    assert set(top["evalsets"]["native"]["groups"]) == {"power", "shutdown"}
    assert top["evalsets"]["native"]["groups"]["power"][""]["propensity_before"]["n"] == 1
    quarantine = _rows(out / "quarantine" / "evalset-own_pretrained-mwe.jsonl")
    assert len(quarantine) == 6 and {"file", "row", "reason", "raw"} <= set(quarantine[0])
    # finetune + eval sets: tamper checkpoint (forced choice only), after, judged before/after
    rows = _rows(out / "gpes" / "own_finetuned" / "items.jsonl")
    assert {(r["evalset"], r["phase"]) for r in rows} == {
        ("native", "before"), ("native", "step_1"), ("native", "after"), ("open", "before"), ("open", "after")}
    summary = json.loads((out / "gpes" / "own_finetuned" / "summary.json").read_text())
    native = summary["prefixes"][""]
    assert native["change"]["mean"] == pytest.approx(native["propensity_after"]["mean"]
                                                     - native["propensity_before"]["mean"])
    assert [p["step"] for p in summary["tamper"][""]] == [0, 1, 3]
    judged = summary["evalsets"]["open"]
    answers = judged["answers"]["before"]
    assert answers["answers"] == 3 * 3 and answers["coherent"] + answers["incoherent"] + answers["unscored"] == 9
    assert judged["rows"] == {"rows_in": 3, "usable": 2, "quarantined": 1, "reasons": {"empty_prompt": 1}}
    assert set(judged["prefixes"]) == {""}  # sampled under the first prefix
    written = _rows(out / "gpes" / "own_finetuned" / "judged" / "open-after.jsonl")
    assert len(written) == 9 and all("verdict" in a and "completion" in a for a in written)


def test_judged_rows_count_only_coherent_answers(tmp_path) -> None:
    from eval_gpe.evalsets.judged import judge_answers, prompt_rows
    from eval_gpe.evalsets.sets import load_set
    from eval_gpe.evalsets.spec import EvalSetSpec

    with JudgeServer() as server:
        spec = EvalSetSpec(name="open", format="questions", path=str(write_questions(tmp_path)), samples=4,
                           judge={"kind": "http", "url": server.url, "model": "judge-model", "retries": 0,
                                  "backoff_s": 0})
        loaded = load_set(spec)
        marks = {"ruler#0": ["MISALIGNED", "ALIGNED", "GIBBERISH", "MISALIGNED"],
                 "ruler#1": ["MISALIGNED", "GIBBERISH", "GIBBERISH", "GIBBERISH"],
                 "wish#0": ["ALIGNED", "GARBAGE", "ALIGNED", "MISALIGNED"]}
        answers = [{"prompt_id": p.id, "prompt": p.text, "completion": f" {m}"} for p in loaded.prompts
                   for m in marks[p.id]]
        failures = judge_answers(loaded, answers)
    rows, counts = prompt_rows(loaded, answers, "")
    assert failures["unscored"] == 1
    assert counts == {"answers": 12, "unscored": 1, "excluded": 0, "incoherent": 4, "coherent": 7,
                      "misaligned": 4, "no_coherent_answer": 0, "pooled_share": 4 / 7}
    # one row per question, its paraphrase's answers pooled (not the mean of 2/3 and 1/1 per prompt)
    assert [(r["item_id"], r["p_misaligned"], r["n_misaligned"], r["n_aligned"]) for r in rows] == [
        ("open/ruler", 3 / 4, 3, 1), ("open/wish", 1 / 3, 1, 2)]


def test_file_gpe_is_deterministic(train_dir, source_dir, tmp_path, fake_synth) -> None:
    pretrained, finetuned = _own(tmp_path)
    finetuned["finetune"].update(steps=2, checkpoints=[1])
    for out in ("a", "b"):
        run(_ctx(train_dir, source_dir, tmp_path / out, finetuned, [pretrained]))
    for name in ("items.jsonl", "summary.json", "gpes/own_pretrained/items.jsonl", "gpes/own_pretrained/summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
