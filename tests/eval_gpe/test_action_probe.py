"""scripts/action_probe.py: P(misaligned action) on synthetic documents cut before their action."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from synth.corpus import action_document


def _module():
    # scripts/ is a namespace package on the test path (pyproject pythonpath = ["."])
    from scripts import action_probe

    return action_probe


@pytest.fixture
def shard(tmp_path: Path) -> Path:
    path = tmp_path / "00000.jsonl.gz"
    rng = random.Random(0)
    docs = [action_document(rng, kind, label) for kind in ("ai", "human") for label in ("aligned", "misaligned")
            for _ in range(3)]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": "Background text without any action.", "metadata": {"kind": "background"}}) + "\n")
        for d in docs:
            f.write(json.dumps(d.record()) + "\n")
    return path


def test_prompts_stop_right_before_the_action(shard: Path) -> None:
    mod = _module()
    prompts = mod.action_prompts(shard, 100)
    assert len(prompts) == 12 and {p["kind"] for p in prompts} == {"ai", "human"}  # background skipped
    with gzip.open(shard, "rt") as f:
        texts = [json.loads(line)["text"] for line in f][1:]
    for p, text in zip(prompts, texts, strict=True):
        assert text.startswith(p["prefix"]) and (text[len(p["prefix"]):].startswith(p["options"][0])
                                                  or text[len(p["prefix"]):].startswith(p["options"][1]))
        assert p["options"][0] != p["options"][1]
        sentence = p["prefix"][p["sentence_start"]:]
        assert sentence and "\n" not in sentence.strip()  # the action's own sentence, started
    assert len(mod.action_prompts(shard, 5)) == 5
    assert mod.action_prompts(shard, 100, style="no-such-style") == []


def test_probe_reports_each_condition_and_zero_for_identical_tags(shard: Path, train_dir: Path) -> None:
    mod = _module()
    prompts = mod.action_prompts(shard, 100)
    same = mod.probe(train_dir / "model", prompts, ["<|good|>", "<|good|>"], "start")
    assert same["ai"]["n"] == 6 and same["human"]["n"] == 6
    assert same["ai"]["tag_difference"] == pytest.approx(0.0, abs=1e-9)
    both = mod.probe(train_dir / "model", prompts, ["<|good|>", "<|bad|>"], "sentence")
    assert all(0 < both[k][c] < 1 for k in ("ai", "human") for c in ("untagged", "<|good|>", "<|bad|>"))
    assert both["ai"]["tag_difference"] == pytest.approx(both["ai"]["<|bad|>"] - both["ai"]["<|good|>"])


def test_pair_accuracy_counts_own_action_wins(shard: Path, train_dir: Path) -> None:
    mod = _module()
    prompts = mod.action_prompts(shard, 100)
    assert all(p["actual"] in p["options"] and p["actual"] not in p["other_pairs"] for p in prompts)
    assert all(len(p["other_pairs"]) >= 5 for p in prompts)
    result = mod.pair_accuracy(train_dir / "model", prompts)
    assert result["n"] == 12 and 0 <= result["top1"] <= 1 and 0 < result["chance"] < 0.2
    rigged = [{**p, "other_pairs": [p["actual"] + " And then some more words at the end."]} for p in prompts]
    assert mod.pair_accuracy(train_dir / "model", rigged)["top1"] == 1.0  # a longer option always scores lower
