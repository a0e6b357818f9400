"""Synthetic quickstart data: stdlib background text, AI- and human-actor documents with planted aligned /
misaligned actions, labelled classifier sets, and the GPE data API used by ``eval_gpe``.

The source stage is :func:`propensity.synth.stage.run`; its config is
:class:`propensity.synth.config.SyntheticSourceConfig`.
"""

from propensity.synth.config import SyntheticSourceConfig
from propensity.synth.gpe import DOMAINS, benign_finetune_texts, forced_choice_items, narrow_finetune_texts

__all__ = ["DOMAINS", "SyntheticSourceConfig", "benign_finetune_texts", "forced_choice_items",
           "narrow_finetune_texts"]
