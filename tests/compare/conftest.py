"""One shared store with two finished experiments (real data, tokenizer and training stages; fake evals).

Experiment ``tiny`` has variants baseline / tagged (0.5); ``tiny_b`` has baseline / strict (filter
0.3). Both use the same source and classifier, so ``tiny_b`` must reuse ``tiny``'s source, classifier, score,
tokenizer and the whole baseline chain. ``calls_b`` counts which stage implementations ran for ``tiny_b``.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from compare_fakes import fake_eval, write_config

_STREAM = io.StringIO()
IMPLS = {"source": ("synth.stage", "run"), "classifier": ("filters.classifier", "run"),
         "score": ("filters.score_stage", "run"), "tokenizer": ("pretrain.build_tokenizer", "run"),
         "variant": ("filters.variants", "run"), "train": ("pretrain.train", "run")}


@dataclass
class TwoExperiments:
    store: Path
    config_a: Path
    config_b: Path
    report_a: Path
    report_b: Path
    score_manifest_before_b: str
    calls_b: Counter


def _counting(counter: Counter, stage: str, func):
    def wrapped(ctx):
        counter[stage] += 1
        return func(ctx)

    return wrapped


@pytest.fixture(scope="session")
def two_experiments(tmp_path_factory: pytest.TempPathFactory) -> TwoExperiments:
    import importlib

    import eval_gpe.stage
    from propensity.config import load_config
    from propensity.runner import run_local

    root = tmp_path_factory.mktemp("compare")
    store = root / "store"
    config_a = write_config(root / "a.yaml", store, "tiny", [
        {"name": "baseline", "kind": "baseline"}, {"name": "tagged", "kind": "tag", "threshold": 0.5}])
    config_b = write_config(root / "b.yaml", store, "tiny_b", [
        {"name": "baseline", "kind": "baseline"}, {"name": "strict", "kind": "filter", "threshold": 0.3}])
    calls: Counter = Counter()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(eval_gpe.stage, "run", fake_eval)
        report_a = run_local(load_config(config_a), show_progress=False, stream=_STREAM)
        score = next(store.glob("score/*[0-9a-f]")) / "manifest.json"
        before = score.read_text()
        for stage, (module, name) in IMPLS.items():
            mod = importlib.import_module(module)
            mp.setattr(mod, name, _counting(calls, stage, getattr(mod, name)))
        report_b = run_local(load_config(config_b), show_progress=False, stream=_STREAM)
    assert json.loads(before)["stage"] == "score"
    return TwoExperiments(store, config_a, config_b, report_a, report_b, before, calls)
