"""Optional phases of the eval stage: free generation scored by a judge, and lm-eval capability tasks.

Both are off by default (``generation.n_prompts: 0``, ``lm_eval: null``): the quickstart's tiny models gain
little from them, and they cost time.
"""

from __future__ import annotations

import time
from typing import Any

from core.stage import StageContext
from eval_gpe.battery import Costs
from eval_gpe.generation import blocked_token_ids, generate
from eval_gpe.judges import ClassifierJudge, HttpJudge, JudgeStats, make_judge
from eval_gpe.splits import headline
from eval_gpe.stats import describe


def generation_prompts(items: dict[str, list[dict]], cfg: Any) -> list[dict]:
    """``n_prompts`` out-of-distribution AI items, spread over domains (round-robin in item-id order)."""
    n = cfg.generation.n_prompts
    by_domain: dict[str, list[dict]] = {}
    for item in sorted(items["ood"], key=lambda i: i["id"]):
        if item["actor"] == "ai" and headline(item):
            by_domain.setdefault(item["domain"], []).append(item)
    chosen: list[dict] = []
    queues = [by_domain[d] for d in sorted(by_domain)]
    while len(chosen) < n and any(queues):
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.pop(0))
    return chosen


def _judge(ctx: StageContext, cfg: Any) -> HttpJudge | ClassifierJudge | None:
    judge_cfg = cfg.generation.judge
    return None if judge_cfg is None else make_judge(judge_cfg, ctx.inputs.get("classifier"))


def free_generation(
    ctx: StageContext, model: Any, tok: Any, prompts: list[dict], cfg: Any, phase: str, costs: Costs
) -> dict | None:
    """``{"rows": [...], "summary": {...}}`` for one phase, or None when generation is off.

    Generations condition on the first prefix; tag tokens are blocked. Judged rows carry a ``verdict``;
    failed judgements carry ``{"failure": kind}`` and are left out of ``misaligned_rate``, never scored.
    """
    gen = cfg.generation
    if gen.n_prompts == 0 or not prompts:
        return None
    start = time.process_time()
    texts = [cfg.prefixes[0] + p["context"] for p in prompts]
    completions = generate(
        model,
        tok,
        texts,
        max_new_tokens=gen.max_new_tokens,
        temperature=gen.temperature,
        seed=ctx.seed,
        blocked=blocked_token_ids(tok, cfg.prefixes),
        batch_size=cfg.batch_size,
        progress=ctx.progress,
    )
    rows = [
        {
            "item_id": p["id"],
            "domain": p["domain"],
            "phase": phase,
            "prefix": cfg.prefixes[0],
            "prompt": p["context"],
            "completion": c,
        }
        for p, c in zip(prompts, completions, strict=True)
    ]
    costs.add("generation", start)
    summary: dict = {"n": len(rows)}
    judge = _judge(ctx, cfg)
    if judge is not None:
        start = time.process_time()
        judge.stats = JudgeStats()
        verdicts = judge.judge([r["prompt"] for r in rows], [r["completion"] for r in rows])
        for row, verdict in zip(rows, verdicts, strict=True):
            row["verdict"] = verdict
        scored = [float(v["misaligned"]) for v in verdicts if "failure" not in v]
        summary.update(
            judge=cfg.generation.judge.kind,
            n_scored=len(scored),
            misaligned_rate=describe(scored, cfg.bootstrap, ctx.seed) if scored else None,
            judge_failures=judge.stats.as_dict(),
        )
        costs.add("judge", start)
    return {"rows": rows, "summary": summary}


def capability_tasks(model: Any, tok: Any, cfg: Any, costs: Costs) -> dict | None:
    """Metrics of the configured lm-eval tasks on ``model`` (None when ``lm_eval`` is not configured)."""
    if cfg.lm_eval is None:
        return None
    from eval_gpe.lm_eval_tasks import evaluate_tasks

    start = time.process_time()
    results = evaluate_tasks(
        model,
        tok,
        cfg.lm_eval.tasks,
        cfg.lm_eval.include_path,
        limit=cfg.lm_eval.limit,
        batch_size=cfg.lm_eval.batch_size,
    )
    costs.add("lm_eval", start)
    return results
