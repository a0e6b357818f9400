"""Item splits: which forced-choice items make the headline trait eval and which are reported apart."""

from __future__ import annotations

APART_SPLITS = ("never_seen", "new_frame")
"""Item splits reported apart from the headline trait eval: actions no training document has (``never_seen``)
and, for the learnable world, prompt frames no training document uses (``new_frame``, its second split)."""


def headline(item: dict) -> bool:
    """Whether an item (or its scored row) belongs to the headline trait eval (not a split in APART_SPLITS)."""
    return item.get("split") not in APART_SPLITS
