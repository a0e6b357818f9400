"""lm-evaluation-harness interop: export our forced-choice items as lm-eval ``multiple_choice`` tasks (YAML +
jsonl), and run lm-eval tasks with local data on an in-memory model (capability evals).

An exported task holds one document per item for one format and order: ``prompt`` (the text before the
option), ``choices`` = [aligned continuation, misaligned continuation] and ``gold`` = 0 (the aligned one),
with ``target_delimiter: ""`` because our continuations carry their own leading space. lm-eval then requests
exactly the ``(prompt, continuation)`` pairs that ``eval_gpe.scoring.forced_choice`` scores, so the two
agree on every log-likelihood (tested to 1e-4).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from eval_gpe.scoring import FORMATS, ORDERS

TASK_TEMPLATE = {
    "dataset_path": "json",
    "test_split": "test",
    "output_type": "multiple_choice",
    "doc_to_text": "prompt",
    "doc_to_choice": "choices",
    "doc_to_target": "gold",
    "target_delimiter": "",
    "metric_list": [
        {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
        {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
    ],
    "metadata": {"version": 1.0},
}


def task_docs(items: Sequence[dict], fmt: str, order: str, prefix: str = "") -> list[dict]:
    """lm-eval documents of one format and order (``prefix`` is prepended to every prompt)."""
    if fmt not in FORMATS or order not in ORDERS[FORMATS[fmt].ordered]:
        raise ValueError(
            f"format {fmt!r} / order {order!r}: allowed formats {sorted(FORMATS)} with orders {ORDERS}"
        )
    build, docs = FORMATS[fmt].build, []
    for item in items:
        al, mis = item["aligned"], item["misaligned"]
        first, second = (mis, al) if order == "misaligned_first" else (al, mis)
        (prompt_al, cont_al), (prompt_mis, cont_mis) = (
            build(item["context"], first, second, t) for t in (al, mis)
        )
        if prompt_al != prompt_mis:
            raise ValueError(f"format {fmt!r}: the prompt depends on the option, not a multiple-choice task")
        docs.append(
            {"id": item["id"], "prompt": prefix + prompt_al, "choices": [cont_al, cont_mis], "gold": 0}
        )
    return docs


def export_tasks(
    items: Sequence[dict], formats: Sequence[str], out_dir: Path, name: str, prefix: str = ""
) -> list[str]:
    """Write ``<task>.yaml`` + ``<task>.jsonl`` per format and order into ``out_dir``; returns the task names.

    Task names are ``<name>_<format>`` or ``<name>_<format>_<order>``; data paths in the YAML are absolute.
    Load them with ``lm_eval.tasks.TaskManager(include_path=out_dir, include_defaults=False)``.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for fmt in formats:
        for order in ORDERS[FORMATS[fmt].ordered]:
            task = f"{name}_{fmt}" + ("" if order == "none" else f"_{order}")
            data = out_dir / f"{task}.jsonl"
            with open(data, "w") as f:
                f.writelines(json.dumps(d) + "\n" for d in task_docs(items, fmt, order, prefix))
            config = {"task": task, **TASK_TEMPLATE, "dataset_kwargs": {"data_files": {"test": str(data)}}}
            (out_dir / f"{task}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            names.append(task)
    return names


def _run(
    model: Any,
    tok: Any,
    tasks: Sequence[str],
    include_path: str | Path,
    *,
    limit: int | None,
    batch_size: int,
    log_samples: bool,
) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    device = str(next(model.parameters()).device)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device=device, max_length=None)
    manager = TaskManager(include_path=str(include_path), include_defaults=False)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise ValueError(
            f"lm_eval.tasks: unknown task(s) {unknown} in {include_path}; "
            f"available: {sorted(manager.all_tasks)[:20]}"
        )
    return simple_evaluate(
        model=lm,
        tasks=list(tasks),
        task_manager=manager,
        limit=limit,
        log_samples=log_samples,
        bootstrap_iters=0,
        verbosity="ERROR",
    )


def evaluate_tasks(
    model: Any,
    tok: Any,
    tasks: Sequence[str],
    include_path: str | Path,
    *,
    limit: int | None = None,
    batch_size: int = 16,
) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` of lm-eval tasks defined (with local data) under ``include_path``."""
    results = _run(model, tok, tasks, include_path, limit=limit, batch_size=batch_size, log_samples=False)
    return {
        task: {
            k: float(v)
            for k, v in sorted(metrics.items())
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        for task, metrics in sorted(results["results"].items())
    }


def lm_eval_loglikelihoods(
    model: Any, tok: Any, tasks: Sequence[str], include_path: str | Path, batch_size: int = 16
) -> dict[str, dict[str, list[float]]]:
    """``{task: {doc id: [log-likelihood of each choice]}}`` as lm-eval computes them for exported tasks."""
    results = _run(model, tok, tasks, include_path, limit=None, batch_size=batch_size, log_samples=True)
    return {
        task: {s["doc"]["id"]: [float(r[0][0]) for r in s["resps"]] for s in results["samples"][task]}
        for task in tasks
    }
