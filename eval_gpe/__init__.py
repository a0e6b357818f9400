"""Generalization propensity evaluations (GPE): a narrow finetune plus an object-level trait eval.

- ``registry``: one YAML file per GPE in ``gpes/`` (``get(name)``, ``available()``).
- ``lm`` / ``scoring``: batched log-likelihoods (lm-evaluation-harness tokenization) and forced choice.
- ``finetune``: the deterministic narrow full finetune.
- ``stats`` / ``summary``: bootstrap intervals over items and the per-prefix summary.
- ``stage``: the ``eval`` stage (``eval_gpe.stage:run``).
"""
