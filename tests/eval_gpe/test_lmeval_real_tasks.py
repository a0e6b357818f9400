"""lm-eval tasks as lm-eval's own YAMLs write them: "multiple input" tasks (winogrande: a context per choice
and one shared continuation, the gold index from ``doc_to_text``), "multiple target" tasks (a list of gold
indices), and copies of the YAMLs shipped with lm-eval on local rows; each checked against lm-eval's own
log-likelihoods and its own ``acc`` / ``acc_norm`` on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from evalset_files import (
    lm_eval_task_dir,
    write_lm_eval_multiple_input,
    write_lm_eval_multiple_target,
    write_real_lm_eval_tasks,
)

from core.errors import ConfigError
from eval_gpe.evalsets.forced import score_items
from eval_gpe.evalsets.sets import load_set
from eval_gpe.evalsets.spec import EvalSetSpec

pytest.importorskip("lm_eval")


def lm_eval_samples(model: Any, tok: Any, task: str, folder: Path, num_fewshot: int | None = None
                    ) -> dict[str, dict[int, dict]]:
    """lm-eval's logged samples (``resps``, ``acc``, ...) ``{task: {doc_id: sample}}``, run by lm-eval itself
    (its default few-shot seed, as ours; ``num_fewshot`` as its --num_fewshot)."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=4, device="cpu", max_length=None)
    out = simple_evaluate(model=lm, tasks=[task], task_manager=TaskManager(include_path=str(folder),
                          include_defaults=False), log_samples=True, bootstrap_iters=0, verbosity="ERROR",
                          num_fewshot=num_fewshot)
    return {name: {s["doc_id"]: s for s in samples} for name, samples in out["samples"].items()}


def check_against_lm_eval(tiny: Any, spec: EvalSetSpec, folder: Path) -> tuple[Any, float]:
    """Score ``spec``'s items and compare with lm-eval on every usable document: the log-likelihood of every
    choice (returns the largest difference), and lm-eval's ``acc`` / ``acc_norm`` equal "the (normalised)
    argmax is a trait choice" (``trait_choice: target``: the trait choices are lm-eval's gold)."""
    model, tok = tiny
    loaded = load_set(spec)
    rows = score_items(model, tok, loaded.items, [""], set_name="s", fmt="lm_eval", batch_size=3)
    theirs = lm_eval_samples(model, tok, str(spec.task), folder, spec.num_fewshot)
    one_task = len(theirs) == 1
    deltas = []
    for item, row in zip(loaded.items, rows, strict=True):
        task = next(iter(theirs)) if one_task else item.id.split("/")[0]
        sample = theirs[task][item.row]
        render = item.renders[0]
        lls = [float(r[0][0]) for r in sample["resps"]][: len(render.requests)]
        deltas += [abs(a - b) for a, b in zip(row["lp_choices"], lls, strict=True)]
        if spec.trait_choice == "target":
            assert sample["acc"] == float(int(np.argmax(lls)) in render.trait), item.id
            if "acc_norm" in sample:
                normed = np.array(lls) / np.array(render.lengths)
                assert sample["acc_norm"] == float(int(np.argmax(normed)) in render.trait), item.id
    return loaded, max(deltas)


def test_multiple_input_task_gold_is_doc_to_text(tiny, tmp_path) -> None:
    """winogrande: requests (each option's context, the shared rest); gold = doc_to_text, not the target
    (every document was quarantined as answer_not_among_choices before)."""
    folder = write_lm_eval_multiple_input(tmp_path / "tasks", num_fewshot=1)
    spec = EvalSetSpec(name="w", format="lm_eval", task="wino_own", include_path=str(folder))
    loaded, delta = check_against_lm_eval(tiny, spec, folder)
    assert loaded.counts() == {"rows_in": 4, "usable": 3, "quarantined": 1,
                               "reasons": {"answer_not_among_choices": 1}}
    assert [i.renders[0].trait for i in loaded.items] == [(1,), (1,), (0,)]
    first = loaded.items[0].renders[0]
    assert [c.rsplit("\n\n", 1)[-1] for c, _ in first.requests] == [
        "The AI moved the logs to its own server because the server",
        "The AI moved the logs to its own server because the AI"]
    assert {cont for _, cont in first.requests} == {" was safer."}
    assert first.lengths == (58, 54)  # acc_norm divides by the choices (the contexts), as lm-eval
    assert delta <= 1e-4
    other = load_set(spec.model_copy(update={"trait_choice": "not_target"}))
    assert [i.renders[0].trait for i in other.items] == [(0,), (0,), (1,)]


def test_multiple_target_task_reads_every_gold_index(tiny, tmp_path) -> None:
    """doc_to_target a list of indices: all are the target (lm-eval: right when the prediction is any of them);
    an empty list, one covering every choice, or an index past the choices is quarantined, each named."""
    folder = write_lm_eval_multiple_target(tmp_path / "tasks")
    spec = EvalSetSpec(name="m", format="lm_eval", task="multi_own", include_path=str(folder))
    loaded, delta = check_against_lm_eval(tiny, spec, folder)
    assert loaded.counts() == {"rows_in": 5, "usable": 2, "quarantined": 3, "reasons": {
        "empty_targets": 1, "targets_cover_all_choices": 1, "answer_not_among_choices": 1}}
    assert [(i.id, i.renders[0].trait) for i in loaded.items] == [("m0", (0, 2)), ("m1", (1,))]
    assert delta <= 1e-4
    other = load_set(spec.model_copy(update={"trait_choice": "not_target"}))
    assert [i.renders[0].trait for i in other.items] == [(1, 3), (0, 2)]


def test_lm_evals_own_task_yamls_on_local_rows(tiny, tmp_path) -> None:
    """The shipped YAMLs of winogrande (multiple input), arc_easy (Jinja choice list, letter answer), hellaswag
    (process_docs), copa (the target is a choice's text) and mmlu_anatomy (include:, description, first_n
    shots from dev) in a group: lm-eval's contexts, log-likelihoods and gold."""
    folder = write_real_lm_eval_tasks(tmp_path / "tasks", num_fewshot={"mmlu_anatomy": 2})
    spec = EvalSetSpec(name="r", format="lm_eval", task="real_mix", include_path=str(folder))
    loaded, delta = check_against_lm_eval(tiny, spec, folder)
    assert loaded.counts() == {"rows_in": 10, "usable": 9, "quarantined": 1,
                               "reasons": {"answer_not_among_choices": 1}}
    assert loaded.quarantined[0]["file"].endswith(":hellaswag") and loaded.quarantined[0]["row"] == 2
    assert {i.id: i.renders[0].trait for i in loaded.items} == {
        "winogrande/0": (0,), "winogrande/1": (1,), "arc_easy/q1": (1,), "arc_easy/q2": (1,), "hellaswag/0": (0,),
        "copa/0": (0,), "copa/1": (1,), "mmlu_anatomy/0": (2,), "mmlu_anatomy/1": (3,)}
    mmlu = next(i for i in loaded.items if i.id == "mmlu_anatomy/0").renders[0].requests
    assert mmlu[0][0].startswith("The following are multiple choice questions (with answers) about anatomy.\n\n"
                                 "Shot 0?\nA. w\nB. x\nC. y\nD. z\nAnswer: A\n\nShot 1?")
    assert [c for _, c in mmlu] == [" A", " B", " C", " D"]
    assert delta <= 1e-4


def test_num_fewshot_overrides_the_yaml_as_lm_evals_own_flag(tiny, tmp_path) -> None:
    """The eval set's num_fewshot does what lm-eval's --num_fewshot does (the same examples, drawn with its
    seed); a YAML that fixes num_fewshot: 0 is one lm-eval will not override: an error, not ignored."""
    folder = write_lm_eval_multiple_input(tmp_path / "tasks", num_fewshot=1)
    spec = EvalSetSpec(name="w", format="lm_eval", task="wino_own", include_path=str(folder), num_fewshot=2)
    loaded, delta = check_against_lm_eval(tiny, spec, folder)
    assert all(c.count("\n\n") == 2 for i in loaded.items for c, _ in i.renders[0].requests) and delta <= 1e-4
    zero = write_lm_eval_multiple_input(tmp_path / "zero", num_fewshot=0)
    with pytest.raises(ConfigError, match="sets num_fewshot: 0 in its YAML"):
        load_set(EvalSetSpec(name="w", format="lm_eval", task="wino_own", include_path=str(zero), num_fewshot=3))
    with pytest.raises(ValueError, match="num_fewshot is for format lm_eval"):
        EvalSetSpec(name="n", format="native", path="x.jsonl", num_fewshot=1)


def test_a_task_with_its_own_process_results_is_refused(tmp_path) -> None:
    """truthfulqa_mc2 scores the mass of every true answer in utils.process_results_mc2 while its doc_to_target
    is 0: reading 0 as the gold would silently measure something else."""
    src = lm_eval_task_dir() / "truthfulqa"
    folder = tmp_path / "tasks"
    folder.mkdir()
    data = folder / "tqa.jsonl"
    data.write_text(json.dumps({"question": "Can a cat read?", "mc1_targets": {"choices": ["No.", "Yes."],
                    "labels": [1, 0]}, "mc2_targets": {"choices": ["No.", "Cats cannot.", "Yes."],
                    "labels": [1, 1, 0]}}) + "\n")
    for name in ("truthfulqa_mc1.yaml", "truthfulqa_mc2.yaml", "utils.py"):
        (folder / name).write_text((src / name).read_text())
    mc1 = (folder / "truthfulqa_mc1.yaml").read_text().replace("dataset_path: truthfulqa/truthful_qa\n", "")
    mc1 = mc1.replace("dataset_name: multiple_choice\n", "")
    (folder / "truthfulqa_mc1.yaml").write_text(
        mc1 + f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    validation: {json.dumps(str(data))}\n")
    spec = EvalSetSpec(name="t", format="lm_eval", task="truthfulqa_mc2", include_path=str(folder))
    with pytest.raises(ConfigError, match="truthfulqa_mc2.*own process_results \\(process_results_mc2\\)"):
        load_set(spec)
    assert len(load_set(spec.model_copy(update={"task": "truthfulqa_mc1"})).items) == 1


@pytest.mark.parametrize(("gold", "expected"), [
    (1, (1,)), ("c", (2,)), ([2, 0, 2], (0, 2)),  # an index, a choice's text (lm-eval's choices.index), a list
    (3, "answer_not_among_choices"), (-1, "answer_not_among_choices"), ("d", "answer_not_among_choices"),
    (True, (1,)), ([False, 2], (0, 2)),  # a yes/no column: lm-eval compares True with index 1
    ([0, 3], "answer_not_among_choices"), ([], "empty_targets"),
    ([0, 1, 2], "targets_cover_all_choices"), (["a", "b"], "targets_not_indices"),  # lm-eval fails on these
])
def test_gold_of_a_document(gold, expected) -> None:
    from eval_gpe.evalsets.lmeval import _targets

    assert _targets(gold, ["a", "b", "c"]) == expected
