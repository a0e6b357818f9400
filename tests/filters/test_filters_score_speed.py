"""The score stage's faster paths give the results and bytes of the general ones."""

from __future__ import annotations

import random

from filters.scoring import GROUND_TRUTH_KEYS, summarize_columns, summarize_scores


def test_summarize_columns_equals_summarize_scores() -> None:
    rng = random.Random(0)
    n = 2000
    rows = {"m_score": [rng.random() for _ in range(n)],
            "label": [rng.choice(["aligned", "misaligned", None]) for _ in range(n)],
            "kind": [None] * n}
    records = [{k: rows[k][i] for k in rows} for i in range(n)]
    assert summarize_columns(rows, "m_score", 0.5) == summarize_scores(records, "m_score", 0.5)
    assert set(GROUND_TRUTH_KEYS) == {"label", "kind"}
    assert "flagged_by_kind" not in summarize_columns(rows, "m_score", 0.5)
