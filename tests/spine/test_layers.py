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

from core.store import MANIFEST, MARKER, Store
from filters.classifier import DEFAULT_PARAMS, PARAM_ALIASES
from filters.config import FastTextParams
from pretrain import train as train_stage
from pretrain.settings import TRAIN_DEFAULTS, TrainSettings
from pretrain.trainer import TrainConfig as LoopConfig
from propensity.config import ClassifierConfig, TrainConfig, load_config
from propensity.runner import format_plan, plan

ROOT = Path(__file__).resolve().parents[2]
PRE_REFACTOR = json.loads((Path(__file__).parent / "fixtures" / "pre_refactor_keys.json").read_text())


@pytest.mark.parametrize("case", sorted(PRE_REFACTOR))
def test_a_store_made_before_the_refactor_is_reused_whole(case: str, tmp_path: Path) -> None:
    config, *overrides = case.split(" ")
    store = Store(tmp_path / "store")
    for key in PRE_REFACTOR[case]:  # the old store: each artifact complete, as the old code left it
        folder = store.path(key)
        folder.mkdir(parents=True)
        (folder / MANIFEST).write_text(json.dumps({"key": key}))
        (folder / MARKER).write_text(f"{key}\n")
    cfg = load_config(ROOT / config, [o for o in overrides if o])
    rows = plan(cfg, store)
    assert sorted(r.spec.key for r in rows) == PRE_REFACTOR[case]
    assert {r.action for r in rows} == {"reuse"}, format_plan(rows, store)


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
