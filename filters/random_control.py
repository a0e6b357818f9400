"""Negative controls: a filter or tagger that flags exactly as many documents as the classifier does, chosen
at random (a seeded hash of the document id) instead of by score.

A random filter drops the classifier filter's number of documents: whatever the model then shows beyond the
baseline is what dropping that many tokens does, not what dropping *misaligned AI* documents does, so its
AI-specific gap must read ~0. A coin-flip tagger gives ``<|bad|>`` to as many documents as the classifier
would: its tag difference must read ~0. The ids come from the score stage's tables, so the choice is made
once, before the pass over the text, and is the same on every run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.errors import InputDataError
from filters.decisions import SCORE_TABLES, usable


def random_draw_key(doc_id: str, seed: int) -> bytes:
    """The sort key that orders documents at random for the control (sha256 of seed and id)."""
    return hashlib.sha256(f"{seed}\x00random-control\x00{doc_id}".encode()).digest()


def flagged_ids(score_dir: Path, key: str, threshold: float, seed: int) -> tuple[frozenset[str], int]:
    """``(ids, n_flagged)``: as many ids as have ``key >= threshold`` in the score tables, drawn at random
    among every document with a usable score."""
    import pyarrow.parquet as pq

    tables = sorted((Path(score_dir) / SCORE_TABLES).glob("*.parquet"))
    if not tables:
        raise InputDataError(f"random control needs the score tables {Path(score_dir) / SCORE_TABLES}/*.parquet")
    ids: list[str] = []
    flagged = 0
    for path in tables:
        names = pq.read_schema(path).names
        if key not in names or "id" not in names:
            raise InputDataError(f"{path} needs columns 'id' and {key!r}; columns: {names}")
        table = pq.read_table(path, columns=["id", key]).to_pydict()
        for doc_id, score in zip(table["id"], table[key], strict=True):
            if usable(score):
                ids.append(str(doc_id))
                flagged += score >= threshold
    chosen = sorted(ids, key=lambda i: random_draw_key(i, seed))[:flagged]
    return frozenset(chosen), flagged


class RandomDecision:
    """Drops the documents whose id is in ``ids`` (reason ``random_control``), whatever their score."""

    by_id = True

    def __init__(self, ids: frozenset[str], score_key: str) -> None:
        self.ids = ids
        self.keys = [score_key]
        self.reason = "random_control"

    def decide(self, metadata: Mapping[str, Any], doc_id: str = "") -> str | None:
        """The drop reason for a chosen id, else None."""
        return self.reason if doc_id in self.ids else None
