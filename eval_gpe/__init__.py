"""Generalization propensity evaluations (GPE): a narrow finetune plus object-level trait evals.

- ``registry``: one YAML file per GPE in ``gpes/`` (``get(name)``, ``available()``); ``data``: narrow texts
  (built-in generator, users' jsonl/parquet/hub data, chat or text, inoculation prompt).
- ``items``: forced-choice items (out-of-distribution, in-distribution, never-seen; matched human controls).
- ``lm`` / ``scoring``: batched log-likelihoods (lm-evaluation-harness tokenization) and forced choice;
  ``lm_eval_tasks``: export to / run lm-eval tasks.
- ``finetune``: the deterministic narrow finetune (full or LoRA) with checkpoint callbacks.
- ``generation`` / ``judges``: free generation with tags blocked, classifier and HTTP judges.
- ``stats`` / ``summary`` / ``compare`` / ``plots``: bootstrap intervals, summaries, variant differences,
  the tamper-curve plot.
- ``config`` / ``battery`` / ``phases`` / ``stage``: the ``eval`` stage (``eval_gpe.stage:run``).
"""
