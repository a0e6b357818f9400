"""Items of an lm-evaluation-harness ``multiple_choice`` task or group, loaded by lm-eval itself (local data only).

lm-eval builds the task's requests (``Task.build_all_requests``: ``doc_to_text``, ``doc_to_choice``,
``target_delimiter``, its description and few-shot settings), and each document becomes one item whose
requests are exactly lm-eval's ``(context, continuation)`` pairs, so our log-likelihoods equal lm-eval's
(tested to 1e-4). Few-shot examples are drawn with lm-eval's own default seed (``FEWSHOT_SEED``, what
``lm_eval.simple_evaluate`` uses), so the contexts are the same on every run and equal lm-eval's. A group
(``group:`` with ``task:`` children) is expanded into its tasks; each task is then a group of the set's
items. The trait choices are the task's gold, read as lm-eval's ``process_results`` reads it
(``trait_choice: target``), or every other choice (``not_target``, for tasks whose gold answer is the safe
one): ``doc_to_target`` (an index, a choice's text, or a list of indices: a "multiple target" task), or
``doc_to_text`` for a "multiple input" task (winogrande: a context per choice, one shared continuation). A task
with its own ``process_results`` is refused (its gold need not be ``doc_to_target``). Documents whose gold is
not among their choices, whose gold list is empty, not indices or covers every choice, that have fewer than two
choices, or whose ``id`` repeats an earlier document's are quarantined with a reason.

:func:`data_files` lists the local files a task folder's YAMLs read (``dataset_kwargs.data_files`` and a
local ``dataset_path``), wherever they live, so the stage key changes when they change.
"""

from __future__ import annotations

import difflib
import glob
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from eval_gpe.evalsets.forced import Item, Render
from eval_gpe.evalsets.spec import EvalSetSpec

FEWSHOT_SEED = 1234
"""lm-eval's default few-shot seed (``lm_eval.defaults.DEFAULT_OTHER_SEED``)."""


def _manager(spec: EvalSetSpec) -> Any:
    from lm_eval.tasks import TaskManager

    folder = Path(str(spec.include_path))
    if not folder.is_dir():
        raise ConfigError(f"evalsets.{spec.name}.include_path: {str(folder)!r} is not a folder of task YAMLs")
    return TaskManager(include_path=str(folder), include_defaults=False)


def load_tasks(spec: EvalSetSpec) -> dict[str, Any]:
    """``{task name: lm-eval task object}`` of ``spec.task`` (a task, or every task of a group) from
    ``spec.include_path``, through lm-eval's own loading."""
    manager = _manager(spec)
    if spec.task not in manager.all_tasks:
        close = difflib.get_close_matches(str(spec.task), manager.all_tasks, n=3)
        hint = f" did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"evalsets.{spec.name}.task: no task {spec.task!r} in {spec.include_path!r}.{hint} "
                          f"available: {', '.join(sorted(manager.all_tasks)[:20])}")
    try:
        tasks = manager.load([str(spec.task)])["tasks"]
    except Exception as exc:  # noqa: BLE001 - lm-eval and datasets raise many types; re-raised naming the task
        raise ConfigError(f"evalsets.{spec.name}: lm-eval cannot load task {spec.task!r} "
                          f"({type(exc).__name__}: {exc})") from exc
    if not tasks:
        raise ConfigError(f"evalsets.{spec.name}: {spec.task!r} names no task (an empty group or tag?)")
    for name, task in tasks.items():
        if getattr(task, "OUTPUT_TYPE", None) != "multiple_choice":
            raise ConfigError(f"evalsets.{spec.name}: task {name!r} has output_type "
                              f"{getattr(task, 'OUTPUT_TYPE', None)!r}; allowed: multiple_choice")
        scorer = getattr(getattr(task, "config", None), "process_results", None)
        if callable(scorer):
            raise ConfigError(f"evalsets.{spec.name}: task {name!r} scores its documents with its own "
                              f"process_results ({getattr(scorer, '__name__', scorer)}), so its gold need not be "
                              f"doc_to_target (truthfulqa_mc2 counts every true answer); this reader takes the gold "
                              f"from doc_to_target. Use a copy of the task without process_results whose "
                              f"doc_to_target gives the gold choice (an index, or a list of indices for several)")
    return dict(sorted(tasks.items()))


def task_items(spec: EvalSetSpec) -> tuple[list[Item], list[dict], int]:
    """``(items, quarantined, documents read)`` of an lm-eval task or group; quarantined rows name the task,
    the document (``row`` from 1, ``doc_id`` from 0 as lm-eval counts) and the reason."""
    tasks = load_tasks(spec)
    grouped = len(tasks) > 1 or spec.task not in tasks
    items, bad, n_docs = [], [], 0
    for name, task in tasks.items():
        task.set_fewshot_seed(seed=FEWSHOT_SEED)
        if spec.num_fewshot is not None:  # as lm-eval's --num_fewshot sets it, which a YAML's 0 overrules
            if task.get_config("num_fewshot") == 0 and spec.num_fewshot != 0:
                raise ConfigError(f"evalsets.{spec.name}: task {name!r} sets num_fewshot: 0 in its YAML, which "
                                  f"lm-eval keeps whatever --num_fewshot says; drop num_fewshot from the eval set "
                                  f"or from your copy of the YAML")
            task.set_config(key="num_fewshot", value=spec.num_fewshot)
        try:
            task.build_all_requests(limit=spec.limit, rank=0, world_size=1)
        except Exception as exc:  # noqa: BLE001 - lm-eval's templates raise many types; re-raised naming the task
            raise ConfigError(f"evalsets.{spec.name}: lm-eval cannot build the requests of task {name!r} "
                              f"({type(exc).__name__}: {exc}); a few-shot example whose target is not among its "
                              f"choices does this, as does a template naming a missing field") from exc
        by_doc: dict[int, list[Any]] = {}
        for inst in task.instances:
            by_doc.setdefault(int(inst.doc_id), []).append(inst)
        seen: set[str] = set()
        where = f"{spec.include_path}:{name}"
        for doc_id in sorted(by_doc):
            insts = sorted(by_doc[doc_id], key=lambda i: i.idx)
            doc = insts[0].doc
            got = _item(spec, name if grouped else None, doc_id, doc, task.doc_to_choice(doc), _gold(task, doc),
                        insts)
            if not isinstance(got, str) and got.id in seen:
                got = "duplicate_id"
            if isinstance(got, str):
                bad.append({"file": where, "row": doc_id + 1, "doc_id": doc_id, "reason": got,
                            "raw": str(doc)[:500]})
                continue
            seen.add(got.id)
            items.append(got)
        n_docs += len(by_doc)
    return items, bad, n_docs


def _gold(task: Any, doc: Any) -> Any:
    """The document's gold as lm-eval's ``process_results`` reads it: ``doc_to_text`` for a multiple-input task
    (winogrande: a context per choice, one shared continuation, the text is the gold index), else
    ``doc_to_target`` (an index, a choice's text, or a list of indices for a multiple-target task)."""
    return task.doc_to_text(doc) if getattr(task, "multiple_input", 0) else task.doc_to_target(doc)


def _targets(gold: Any, choices: list) -> tuple[int, ...] | str:
    """The gold choice indices (sorted), or the reason the document cannot be scored. As lm-eval: a string is
    the choice with that text; a list (multiple targets, right when the prediction is any of them) holds
    indices; a bool is the index it equals (a yes/no column: ``True`` is choice 1, as lm-eval compares it)."""
    n = len(choices)
    if isinstance(gold, list):
        if not gold:
            return "empty_targets"
        if not all(isinstance(g, int) for g in gold):
            return "targets_not_indices"
        gold = [int(g) for g in gold]
        if not all(0 <= g < n for g in gold):
            return "answer_not_among_choices"
        golds = set(gold)
        return "targets_cover_all_choices" if len(golds) == n else tuple(sorted(golds))
    if isinstance(gold, str):
        return (choices.index(gold),) if gold in choices else "answer_not_among_choices"
    if not isinstance(gold, int) or not 0 <= gold < n:
        return "answer_not_among_choices"
    return (int(gold),)


def _item(spec: EvalSetSpec, task: str | None, doc_id: int, doc: dict, choices: list, gold: Any, insts: list
          ) -> Item | str:
    n = len(choices)
    if n < 2:
        return "too_few_choices"
    targets = _targets(gold, choices)
    if isinstance(targets, str):
        return targets
    # a multiple-input task's requests are (context of each choice, shared continuation); acc_mutual_info adds n
    # unconditional requests after the n conditional ones, which are the ones scored here
    requests = tuple((str(i.arguments[0]), str(i.arguments[1])) for i in insts[:n])
    trait = targets if spec.trait_choice == "target" else tuple(k for k in range(n) if k not in targets)
    lengths = tuple(len(str(c)) for c in choices)
    doc_key = doc.get("id", doc_id) if isinstance(doc, dict) else doc_id
    item_id = str(doc_key) if task is None else f"{task}/{doc_key}"
    group = doc.get(spec.group_key) if isinstance(doc, dict) else None
    default_group = task or str(spec.task)
    return Item(item_id, str(group) if group not in (None, "") else default_group,
                (Render("none", requests, trait, lengths),), doc_id, f"{spec.include_path}:{task or spec.task}")


def data_files(spec: EvalSetSpec) -> list[str]:
    """Every existing local file or folder the task YAMLs under ``spec.include_path`` read: each
    ``dataset_kwargs.data_files`` entry (a path, a glob, a list, or a split -> path(s) mapping) and a
    ``dataset_path`` that is a local file or folder. Relative paths are taken as ``datasets`` takes them,
    from the working directory. Every task of the folder counts, not only ``spec.task``: a file read by
    another task of the folder only makes the key change more often, never less."""
    found: set[str] = set()
    for entry in _manager(spec).task_index.values():
        cfg = getattr(entry, "cfg", None) or {}
        if not isinstance(cfg, dict):
            continue
        kwargs = cfg.get("dataset_kwargs") or {}
        names = _paths(kwargs.get("data_files") if isinstance(kwargs, dict) else None)
        path = cfg.get("dataset_path")
        if isinstance(path, str) and Path(path).exists():
            names.append(path)
        for name in names:
            matches = glob.glob(name, recursive=True) if any(c in name for c in "*?[") else [name]
            found.update(str(Path(m).resolve()) for m in matches if Path(m).exists())
    return sorted(found)


def _paths(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [p for v in value for p in _paths(v)]
    if isinstance(value, dict):
        return [p for v in value.values() for p in _paths(v)]
    return []
