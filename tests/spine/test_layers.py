"""The redesign keeps every store key, and each setting has one declared default.

``fixtures/pre_refactor_keys.json`` holds the keys ``build_graph`` gave the shipped configs at commit 222dd56,
before the packages were split into layers (made with that commit's code). A store holding exactly those
artifacts must be reused whole by today's ``propensity plan``.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from core.store import MANIFEST, MARKER, StageSpec, Store
from filters.config import FastTextParams
from filters.fasttext_model import DEFAULT_PARAMS, PARAM_ALIASES
from pretrain import train as train_stage
from pretrain.settings import TRAIN_DEFAULTS, TrainSettings
from pretrain.trainer import TrainConfig as LoopConfig
from propensity.config import ClassifierConfig, TrainConfig, load_config
from propensity.graph import REPORT_VERSION
from propensity.runner import format_plan, plan

ROOT = Path(__file__).resolve().parents[2]
PRE_REFACTOR = json.loads((Path(__file__).parent / "fixtures" / "pre_refactor_keys.json").read_text())


MOVED = {"configs/quickstart.yaml": "configs/hard_world.yaml"}
"""The world the quickstart ran before issue 18 is ``configs/hard_world.yaml`` now (same stages and keys; the
quickstart moved to the learnable world)."""


@pytest.mark.parametrize("case", sorted(PRE_REFACTOR))
def test_a_store_made_before_the_refactor_is_reused(case: str, tmp_path: Path) -> None:
    """Every stage is reused but the report, whose own version moved on (6: the validity block): a report
    with new content must be rebuilt, from the reused evals (seconds)."""
    config, *overrides = case.split(" ")
    store = Store(tmp_path / "store")
    for key in PRE_REFACTOR[case]:  # the old store: each artifact complete, as the old code left it
        folder = store.path(key)
        folder.mkdir(parents=True)
        (folder / MANIFEST).write_text(json.dumps({"key": key}))
        (folder / MARKER).write_text(f"{key}\n")
    cfg = load_config(ROOT / MOVED.get(config, config), [o for o in overrides if o])
    rows = plan(cfg, store)
    old = [k for k in PRE_REFACTOR[case] if not k.startswith("report/")]
    assert sorted(r.spec.key for r in rows if r.spec.stage != "report") == old
    assert {r.action for r in rows if r.spec.stage != "report"} == {"reuse"}, format_plan(rows, store)
    (report,) = [r for r in rows if r.spec.stage == "report"]
    assert report.action == "run" and report.spec.version == REPORT_VERSION == 7


def test_train_defaults_are_declared_once() -> None:
    experiment = TrainConfig.model_fields
    for name, field in TrainSettings.model_fields.items():
        if name == "tokens":  # required at the experiment level: a budget is always chosen
            assert experiment[name].is_required() and not field.is_required()
            continue
        assert experiment[name].default is field.default, name
        assert train_stage.DEFAULTS[name] is TRAIN_DEFAULTS[name], name
    loop = {f.name: f.default for f in fields(LoopConfig)}
    for name, default in loop.items():
        if name in TRAIN_DEFAULTS:
            assert default is TRAIN_DEFAULTS[name], name
    assert TRAIN_DEFAULTS["warmup_steps"] == TrainConfig(tokens=10_000).warmup_steps == LoopConfig(steps=1).warmup_steps


def test_fasttext_defaults_are_declared_once() -> None:
    declared = FastTextParams()
    assert ClassifierConfig().fasttext == declared
    for name in declared.model_dump():
        assert DEFAULT_PARAMS[PARAM_ALIASES.get(name, name)] is getattr(declared, name), name
    assert ClassifierConfig.model_fields["label_key"].default is ClassifierConfig.__mro__[1].model_fields[
        "label_key"].default


def test_a_new_gpe_is_data_only(tmp_path: Path) -> None:
    """docs/architecture.md: a new GPE is a YAML file and nothing else (no code, no registry edit)."""
    import yaml

    from propensity.graph import build_graph

    gpe = yaml.safe_load((ROOT / "eval_gpe" / "gpes" / "benign_medicine.yaml").read_text())
    gpe.update(name="benign_finance", description="The benign control, in the finance domain.")
    gpe["finetune"]["domain"] = "finance"
    (tmp_path / "gpes").mkdir()
    (tmp_path / "gpes" / "benign_finance.yaml").write_text(yaml.safe_dump(gpe))
    config = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    config["eval"] = {**config.get("eval", {}), "gpes": ["em_medicine", "gpes/benign_finance.yaml"]}
    config["store"] = str(tmp_path / "store")
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    specs = build_graph(load_config(tmp_path / "exp.yaml"))
    (report,) = [s for s in specs if s.stage == "report"]
    assert report.config["gpes"] == ["em_medicine", "benign_finance"]
    evals = [s for s in specs if s.stage == "eval"]
    assert evals and all("benign_finance" in json.dumps(s.config) for s in evals)


def test_tokenizer_defaults_are_declared_once() -> None:
    from pretrain import build_tokenizer as tokenizer_stage
    from pretrain.settings import TOKENIZER_DEFAULTS, TokenizerSettings
    from propensity.config import TokenizerConfig

    for name, field in TokenizerSettings.model_fields.items():
        assert TokenizerConfig.model_fields[name].default is field.default, name
        assert tokenizer_stage.DEFAULTS[name] is TOKENIZER_DEFAULTS[name], name
    assert TokenizerConfig().max_docs == tokenizer_stage.DEFAULTS["max_docs"] == 20_000


def test_eval_defaults_are_declared_once() -> None:
    from eval_gpe.config import EvalSettings, EvalStageConfig
    from propensity.config import EvalConfig

    for name, field in EvalSettings.model_fields.items():
        assert EvalConfig.model_fields[name].default is field.default, name
        assert EvalStageConfig.model_fields[name].default is field.default, name


def test_a_new_variant_kind_is_one_registration(tmp_path: Path) -> None:
    """docs/architecture.md: a new variant kind is one class (its settings and the stage it builds) plus its line
    in the kinds table; the config, the graph, the tokenizer's tags, evaluation and the report need nothing else."""
    from typing import Literal

    import yaml
    from pydantic import Field

    from core.errors import ConfigError
    from core.store import StageSpec
    from core.variants import VariantInputs, VariantSettings
    from propensity import variants
    from propensity.config import use_variant_kinds
    from propensity.graph import build_graph

    class ShuffleVariant(VariantSettings):
        """Every document with its sentences shuffled, tagged so the model knows (a kind made up here)."""

        kind: Literal["shuffle"] = Field(description="shuffle: sentence order shuffled.")
        swaps: int = Field(1, ge=1, description="Sentence swaps per document.")

        def stage_spec(self, inputs: VariantInputs) -> StageSpec:
            return StageSpec("variant", self.name, "tests.spine.shuffle_stage:run", {"swaps": self.swaps},
                             {"score": inputs.score}, seed=inputs.seed, resources="data")

        def tag_tokens(self) -> list[str]:
            return ["<|shuffled|>"]

        def eval_prefixes(self) -> list[str]:
            return ["", "<|shuffled|>"]

    config = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    config["variants"].append({"name": "shuffled", "kind": "shuffle", "swaps": 3})
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"'shuffle' is not a variant kind"):
        load_config(tmp_path / "exp.yaml")
    builtin = variants.VARIANT_KINDS
    use_variant_kinds((*builtin, ShuffleVariant))
    try:
        specs = build_graph(load_config(tmp_path / "exp.yaml"))
        with pytest.raises(ConfigError, match=r"variants\.\d+\.swap \(kind 'shuffle'\): unknown key\. did you mean "
                           r"'swaps'\? allowed: kind, name, swaps"):
            load_config(tmp_path / "exp.yaml", [f"variants.{len(config['variants']) - 1}.swap=2"])
    finally:
        use_variant_kinds(builtin)
    with pytest.raises(ConfigError, match=r"'shuffle' is not a variant kind"):
        load_config(tmp_path / "exp.yaml")
    by_key = {f"{s.stage}/{s.name}": s for s in specs}
    assert by_key["variant/shuffled"].impl == "tests.spine.shuffle_stage:run"
    assert by_key["variant/shuffled"].config == {"swaps": 3}
    assert by_key["tokenize/shuffled"].inputs["variant"] is by_key["variant/shuffled"]
    assert "<|shuffled|>" in by_key["tokenizer/bpe"].config["tags"]
    assert by_key["eval/shuffled-s0"].config["prefixes"] == ["", "<|shuffled|>"]
    (report,) = [s for s in specs if s.stage == "report"]
    assert {"name": "shuffled", "kind": "shuffle", "prefixes": ["", "<|shuffled|>"], "late": False}.items() <= \
        next(v for v in report.config["variants"] if v["name"] == "shuffled").items()
    unchanged = {s.key for s in build_graph(load_config(ROOT / "configs" / "tiny.yaml")) if s.stage == "variant"}
    assert unchanged <= {s.key for s in specs}  # the other variants keep their keys


def test_a_moved_implementation_keeps_its_key_and_loads_from_its_old_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Slurm graph file written before a move names the old path: same key, and it still runs."""
    from core import store
    from pretrain import build_tokenizer

    for new, old in store.KEYED_IMPL.items():
        assert StageSpec("s", "n", old, {"a": 1}).key == StageSpec("s", "n", new, {"a": 1}).key
        assert store.MOVED_IMPL[old] == new
    # the old module gone (this checkout's editable install may still find /work/main's copy): a made-up one
    monkeypatch.setitem(store.MOVED_IMPL, "pretrain.gone_tokenizer:run", "pretrain.build_tokenizer:run")
    assert StageSpec("tokenizer", "bpe", "pretrain.gone_tokenizer:run", {}).load_impl() is build_tokenizer.run
    with pytest.raises(ModuleNotFoundError):
        StageSpec("tokenizer", "bpe", "pretrain.never_was:run", {}).load_impl()
    still_there = StageSpec("variant", "filtered", "filters.variants:run", {})  # also the tag kind's old path
    assert still_there.load_impl().__module__ == "filters.variants"
