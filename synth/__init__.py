"""Synthetic quickstart data: stdlib background text, AI- and human-actor documents with planted aligned /
misaligned actions, labelled classifier sets, and the GPE data API used by ``eval_gpe``.

The source stage is :func:`synth.stage.run`; its config is
:class:`synth.config.SyntheticSourceConfig`.
"""

from synth.config import SyntheticSourceConfig
from synth.gpe import DOMAINS, benign_finetune_texts, forced_choice_items, narrow_finetune_texts

__all__ = ["DOMAINS", "SyntheticSourceConfig", "benign_finetune_texts", "forced_choice_items",
           "narrow_finetune_texts"]
