"""The model-level positive control (slow; CI runs it as `make test-positive-control`): a tiny model trained on
the learnable world learns the document tag and the planted AI-human gap, the report's validity block says PASS
for both, and the same rows with the tags swapped at evaluation, or the AI and human items swapped, say FAIL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval_gpe.validity import evaluate, plan_checks
from propensity.cli import main
from propensity.config import load_config
from propensity.graph import build_graph
from propensity.report import gpe_rows

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "controls_tiny.yaml")
SETTINGS = ["variants=[{name: baseline, kind: baseline}, {name: tagged, kind: tag, threshold: 0.5, "
            "untagged_fraction: 0.1}]", "train.tokens=256000", "train.batch_size=2"]


@pytest.mark.slow
def test_tiny_model_learns_the_tag_and_the_gap_and_their_mutations_fail(tmp_path: Path) -> None:
    overrides = [f"store={tmp_path}", *SETTINGS]
    assert main(["run", CONFIG, *sum((["--set", s] for s in overrides), []), "--no-progress"]) == 0
    results = json.loads(next(tmp_path.glob("report/controls_tiny-*/results.json")).read_text())
    verdicts = {c["name"]: c for c in results["validity"]["checks"]}
    assert verdicts["tagged"]["verdict"] == "PASS", verdicts["tagged"]
    assert verdicts["baseline"]["verdict"] == "PASS", verdicts["baseline"]
    second = {c["name"] for c in results["validity"]["new_frame"]}  # the out-of-template split, reported apart
    assert second == set(verdicts)

    cfg = load_config(CONFIG, overrides)
    evals = {s.name: Path(tmp_path) / s.key for s in build_graph(cfg) if s.stage == "eval"}
    swap = {"<|good|>": "<|bad|>", "<|bad|>": "<|good|>"}
    gpe = results["primary_gpe"]
    rows = {"baseline": gpe_rows([evals["baseline-s0"]], gpe),
            "tagged": [r | {"prefix": swap.get(r["prefix"], r["prefix"])}
                       for r in gpe_rows([evals["tagged-s0"]], gpe)]}
    variants = [{"name": "baseline", "kind": "baseline"},
                {"name": "tagged", "kind": "tag", "prefixes": ["", "<|good|>", "<|bad|>"]}]
    (swapped,) = evaluate([c for c in plan_checks(variants, rows.__getitem__, None) if c.name == "tagged"])
    assert swapped["verdict"] == "FAIL" and swapped["mean"] < 0

    actors = {"ai": "human", "human": "ai"}  # the AI and human items swapped: the planted gap reads backwards
    crossed = [r | {"actor": actors[r["actor"]], "item_id": r["item_id"].replace(r["actor"], actors[r["actor"]], 1)}
               for r in rows["baseline"]]
    (gap,) = evaluate(plan_checks(variants[:1], {"baseline": crossed}.__getitem__, 1))
    assert gap["verdict"] == "FAIL" and gap["mean"] < 0
