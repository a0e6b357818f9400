"""Two experiments sharing a source and classifier share their stages: scored once, reused by key."""

from __future__ import annotations

import json

from propensity.config import load_config
from propensity.graph import build_graph


def _keys(config) -> dict[str, str]:
    return {f"{s.stage}/{s.name}": s.key for s in build_graph(load_config(config))}


def test_second_experiment_reuses_source_classifier_score_and_baseline(two_experiments):
    a, b = _keys(two_experiments.config_a), _keys(two_experiments.config_b)
    shared = {k for k in a if k in b and a[k] == b[k]}
    assert {"source/synthetic", "classifier/misaligned", "score/misaligned", "tokenizer/bpe",
            "variant/baseline", "tokenize/baseline", "train/baseline-s0",
            "eval/baseline-s0"} <= shared
    assert a["report/tiny"] != b["report/tiny_b"]
    # tiny_b ran only its own stages: the strict variant chain (and its report); nothing upstream was redone
    assert two_experiments.calls_b == {"variant": 1, "train": 1}


def test_score_manifest_untouched_by_second_experiment(two_experiments):
    store = two_experiments.store
    scores = [p for p in store.glob("score/*") if p.is_dir()]
    assert len(scores) == 1 and not list(store.glob("score/*.partial"))
    assert (scores[0] / "manifest.json").read_text() == two_experiments.score_manifest_before_b
    started = json.loads(two_experiments.score_manifest_before_b)["timings"]["started"]
    strict = json.loads(next(store.glob("variant/strict-*[0-9a-f]")).joinpath("manifest.json").read_text())
    assert strict["inputs"]["score"]["key"] == f"score/{scores[0].name}"
    assert strict["timings"]["started"] >= started
    assert len([p for p in store.glob("source/*") if p.is_dir()]) == 1
    assert len([p for p in store.glob("classifier/*") if p.is_dir()]) == 1
