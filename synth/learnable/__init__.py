"""The learnable synthetic world (``synthetic.world: learnable``): 24 one-verb decisions, short episodes, a
planted AI/human split; the GPE data API the eval stage uses (same names as ``synth``). See docs/worlds.md."""

from synth.learnable.gpe import (
    DOMAINS,
    benign_finetune_texts,
    forced_choice_items,
    narrow_finetune_texts,
    new_frame_items,
)

__all__ = ["DOMAINS", "benign_finetune_texts", "forced_choice_items", "narrow_finetune_texts", "new_frame_items"]
