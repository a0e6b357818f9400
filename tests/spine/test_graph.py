"""The stage graph: what a changed setting reruns, and what it reuses."""

from __future__ import annotations

from pathlib import Path

from propensity.config import load_config
from propensity.graph import STAGE_ORDER, build_graph, downstream_of

ROOT = Path(__file__).resolve().parents[2]


def keys(overrides: list[str]) -> dict[str, str]:
    cfg = load_config(ROOT / "configs" / "tiny.yaml", overrides)
    return {f"{s.stage}/{s.name}": s.key for s in build_graph(cfg)}


def test_graph_is_topological_and_complete() -> None:
    specs = build_graph(load_config(ROOT / "configs" / "tiny.yaml"))
    seen: set[str] = set()
    for s in specs:
        assert all(i.key in seen for i in s.inputs.values()), s.key
        seen.add(s.key)
    stages = [s.stage for s in specs]
    assert stages == sorted(stages, key=STAGE_ORDER.index)
    assert stages.count("train") == 3 and stages.count("eval") == 3 and stages[-1] == "report"


def test_changing_filter_threshold_reruns_only_its_downstream() -> None:
    before, after = keys([]), keys(["variants.1.threshold=0.7"])
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"variant/filtered", "tokenize/filtered", "train/filtered-s0",
                       "eval/filtered-s0", "report/tiny"}


def test_changing_training_setting_keeps_data_stages() -> None:
    before, after = keys([]), keys(["train.lr=0.001"])
    changed = {k.split("/")[0] for k in before if before[k] != after[k]}
    assert changed == {"train", "eval", "report"}


def test_downstream_of() -> None:
    specs = build_graph(load_config(ROOT / "configs" / "tiny.yaml"))
    score = next(s for s in specs if s.stage == "score")
    down = downstream_of(specs, {score.key})
    assert all(s.key in down for s in specs if s.stage in ("variant", "tokenize", "train", "eval", "report"))
    assert not any(s.key in down for s in specs if s.stage in ("source", "classifier", "tokenizer"))


def test_later_train_settings_hash_only_when_changed() -> None:
    assert keys(["train.schedule=cosine", "train.grad_accum=1", "train.document_mask=false"]) == keys([])
    assert keys(["train.document_mask=true"]) != keys([])
    changed = {k for k, v in keys(["train.schedule=wsd"]).items() if keys([])[k] != v}
    assert {k.split("/")[0] for k in changed} == {"train", "eval", "report"}


def test_sentence_tag_variants_are_evaluated_with_the_tag_before_the_last_sentence() -> None:
    cfg = load_config(ROOT / "configs" / "tag_placement.yaml", ["store=/tmp/unused-store"])
    evals = {s.name.split("-s")[0]: s.config for s in build_graph(cfg) if s.stage == "eval"}
    assert evals["sentence_tagged"]["prefix_placement"] == "last_sentence"
    assert "prefix_placement" not in evals["tagged"]  # document tags: the default, before the whole prompt
    assert evals["sentence_tagged"]["prefixes"] == ["", "<|good|>", "<|bad|>"]


def test_precision_auto_is_resolved_when_planned(monkeypatch) -> None:
    """``precision: auto`` on CPU: bf16 in the train key where the CPU computes bf16 natively, else the
    legacy key (auto = fp32 on CPU); explicit values are kept."""
    import pretrain.trainer

    def train_precision(has_bf16: bool, overrides: list[str]) -> str | None:
        monkeypatch.setattr(pretrain.trainer, "cpu_has_bf16", lambda: has_bf16)
        cfg = load_config(ROOT / "configs" / "tiny.yaml", ["train.device=cpu", *overrides])
        return next(s for s in build_graph(cfg) if s.stage == "train").config.get("precision")

    assert train_precision(True, ["train.precision=auto"]) == "bf16"
    assert train_precision(False, ["train.precision=auto"]) is None
    assert train_precision(True, ["train.precision=fp32"]) == "fp32"
    assert train_precision(True, ["train.precision=auto", "train.device=cuda"]) is None
