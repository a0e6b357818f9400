"""Items of an lm-evaluation-harness ``multiple_choice`` task, loaded by lm-eval itself (local data only).

lm-eval builds the task's requests (``Task.build_all_requests``: ``doc_to_text``, ``doc_to_choice``,
``target_delimiter``, its description and few-shot settings), and each document becomes one item whose
requests are exactly lm-eval's ``(context, continuation)`` pairs, so our log-likelihoods equal lm-eval's
(tested to 1e-4). The trait choices are the task's target (``trait_choice: target``) or every other choice
(``not_target``, for tasks whose gold answer is the safe one). Documents whose target is not among their
choices, or that have fewer than two choices, are quarantined with a reason.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from eval_gpe.evalsets.forced import Item, Render
from eval_gpe.evalsets.spec import EvalSetSpec


def load_task(spec: EvalSetSpec) -> Any:
    """The lm-eval task object of ``spec.task`` from ``spec.include_path`` (lm-eval's own loading)."""
    from lm_eval.tasks import TaskManager

    folder = Path(str(spec.include_path))
    if not folder.is_dir():
        raise ConfigError(f"evalsets.{spec.name}.include_path: {str(folder)!r} is not a folder of task YAMLs")
    manager = TaskManager(include_path=str(folder), include_defaults=False)
    if spec.task not in manager.all_tasks:
        close = difflib.get_close_matches(str(spec.task), manager.all_tasks, n=3)
        hint = f" did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"evalsets.{spec.name}.task: no task {spec.task!r} in {str(folder)!r}.{hint} "
                          f"available: {', '.join(sorted(manager.all_tasks)[:20])}")
    try:
        task = manager.load([str(spec.task)])["tasks"][spec.task]
    except Exception as exc:  # noqa: BLE001 - lm-eval and datasets raise many types; re-raised naming the task
        raise ConfigError(f"evalsets.{spec.name}: lm-eval cannot load task {spec.task!r} ({exc})") from exc
    if getattr(task, "OUTPUT_TYPE", None) != "multiple_choice":
        raise ConfigError(f"evalsets.{spec.name}: task {spec.task!r} has output_type "
                          f"{getattr(task, 'OUTPUT_TYPE', None)!r}; allowed: multiple_choice")
    return task


def task_items(spec: EvalSetSpec) -> tuple[list[Item], list[dict], int]:
    """``(items, quarantined, documents read)`` of an lm-eval task; quarantined rows name doc and reason."""
    task = load_task(spec)
    task.build_all_requests(limit=spec.limit, rank=0, world_size=1)
    by_doc: dict[int, list[Any]] = {}
    for inst in task.instances:
        by_doc.setdefault(int(inst.doc_id), []).append(inst)
    items, bad = [], []
    for doc_id in sorted(by_doc):
        insts = sorted(by_doc[doc_id], key=lambda i: i.idx)
        doc = insts[0].doc
        choices = task.doc_to_choice(doc)
        item_or_reason = _item(spec, doc_id, doc, choices, task.doc_to_target(doc), insts)
        if isinstance(item_or_reason, str):
            bad.append({"file": f"{spec.include_path}:{spec.task}", "row": doc_id, "reason": item_or_reason,
                        "raw": str(doc)[:500]})
        else:
            items.append(item_or_reason)
    return items, bad, len(by_doc)


def _item(spec: EvalSetSpec, doc_id: int, doc: dict, choices: list, target: Any, insts: list) -> Item | str:
    n = len(choices)
    if n < 2:
        return "too_few_choices"
    if isinstance(target, str):
        if target not in choices:
            return "answer_not_among_choices"
        target = choices.index(target)
    if isinstance(target, list):
        return "multiple_targets"
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < n:
        return "answer_not_among_choices"
    requests = tuple((str(i.arguments[0]), str(i.arguments[1])) for i in insts[:n])
    trait = (target,) if spec.trait_choice == "target" else tuple(k for k in range(n) if k != target)
    lengths = tuple(len(str(c)) for c in choices)
    item_id = doc.get("id", doc_id) if isinstance(doc, dict) else doc_id
    group = doc.get(spec.group_key) if isinstance(doc, dict) else None
    return Item(str(item_id), str(group) if group not in (None, "") else str(spec.task),
                (Render("none", requests, trait, lengths),), doc_id, f"{spec.include_path}:{spec.task}")
