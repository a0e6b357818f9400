"""Negative-control variants: config rules and the coin-flip tagger / random decision themselves."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from conditional_tags.document_tag import CoinFlipTagger
from filters.random_control import RandomDecision, flagged_ids
from propensity.variants import parse_variant


def _tables(folder: Path, scores: list[float]) -> Path:
    (folder / "scores").mkdir(parents=True)
    ids = [f"doc-{k}" for k in range(len(scores))]
    pq.write_table(pa.table({"id": ids, "misaligned_score": scores}), folder / "scores" / "00000.parquet")
    return folder


def test_flagged_ids_pick_as_many_documents_as_the_threshold_flags(tmp_path: Path) -> None:
    scores = [0.9 if k % 4 == 0 else 0.1 for k in range(400)]
    ids, flagged = flagged_ids(_tables(tmp_path, scores), "misaligned_score", 0.5, seed=0)
    assert flagged == 100 and len(ids) == 100
    high = {f"doc-{k}" for k in range(0, 400, 4)}
    assert 10 < len(ids & high) < 45  # random, not by score (expected 25)
    again, _ = flagged_ids(tmp_path, "misaligned_score", 0.5, seed=0)
    other, _ = flagged_ids(tmp_path, "misaligned_score", 0.5, seed=1)
    assert again == ids and other != ids


def test_random_decision_and_coin_flip_tagger_ignore_the_score() -> None:
    decision = RandomDecision(frozenset({"a"}), "misaligned_score")
    assert decision.decide({"misaligned_score": 0.0}, "a") == "random_control"
    assert decision.decide({"misaligned_score": 1.0}, "b") is None
    tagger = CoinFlipTagger(frozenset({"a"}), "misaligned_score")
    assert tagger.tag_for("a", 0.0) == "<|bad|>" and tagger.tag_for("b", 1.0) == "<|good|>"


def test_randomize_is_only_for_filter_and_tag_variants() -> None:
    assert parse_variant({"name": "coin", "kind": "tag", "threshold": 0.5, "randomize": True}).flat()["randomize"]
    with pytest.raises(ValidationError, match="randomize"):
        parse_variant({"name": "b", "kind": "baseline", "randomize": True})
    with pytest.raises(ValidationError, match="randomize"):
        parse_variant({"name": "s", "kind": "sentence_tag", "bins": [0.5], "randomize": True})
