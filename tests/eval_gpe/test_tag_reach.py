"""scripts/tag_reach.py: KL by distance between two tags' predictions, on the tiny random model."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest


def _module():
    # scripts/ is a namespace package on the test path (pyproject pythonpath = ["."])
    from scripts import tag_reach

    return tag_reach


def test_reach_is_zero_for_identical_tags_and_positive_for_different_ones(
    train_dir: Path, tmp_path: Path
) -> None:
    docs = tmp_path / "docs.jsonl.gz"
    with gzip.open(docs, "wt") as f:
        for i in range(4):
            text = "<|bad|>" + "The cook checked the oven and the timer. " * (3 + i)
            f.write(json.dumps({"text": text}) + "\n")
    mod = _module()
    texts = mod.read_texts(docs, ["<|good|>", "<|bad|>"], 3)
    assert len(texts) == 3 and not any(t.startswith("<|") for t in texts)  # leading tags stripped
    same = mod.reach(train_dir / "model", texts, ["<|good|>", "<|good|>"], 64)
    assert {"1-4", "5-16", "17-48"} <= set(same)
    assert all(v == pytest.approx(0.0, abs=1e-7) for v in same.values())
    diff = mod.reach(train_dir / "model", texts, ["<|good|>", "<|bad|>"], 64)
    assert diff["1-4"] > 1e-6  # a random model still reads its first tokens
    with pytest.raises(SystemExit, match="not single tokens"):
        mod.reach(train_dir / "model", texts, ["<|good|>", "no tag"], 64)
