"""Wrong configs fail before any work starts, with a message naming the field.

Each case edits configs/tiny.yaml (or writes raw YAML), runs ``propensity run`` in-process with every stage
execution trapped, and checks the exit code, the message and that the store folder was never created.
The impossible token budget is the exception by design: it can only be known after tokenization, so it must
fail after the data stages and before the first training, naming the short variants.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from reliability_helpers import TINY, RunOutcome

from core.errors import BudgetError
from core.store import Store
from propensity.cli import main
from propensity.config import load_config
from propensity.runner import run_local

Edit = Callable[[dict[str, Any]], None]


def _set(section: str, **values: Any) -> Edit:
    return lambda d: d[section].update(values)


def _variant(index: int, **values: Any) -> Edit:
    return lambda d: d["variants"][index].update(values)


def _top(**values: Any) -> Edit:
    return lambda d: d.update(values)


# (case id, edit of tiny.yaml, extra --set overrides, substrings the message must contain)
CASES: list[tuple[str, Edit | str, list[str], list[str]]] = [
    ("unknown_top_key", _top(trian={"tokens": 5000}), [], ["trian: unknown key", "did you mean 'train'"]),
    (
        "unknown_nested_key",
        _set("train", tokenz=5000),
        [],
        ["train.tokenz: unknown key", "did you mean 'tokens'"],
    ),
    ("unknown_key_by_override", lambda d: None, ["eval.gpe=em_medicine"], ["eval.gpe: unknown key"]),
    ("wrong_type_tokens", _set("train", tokens="lots"), [], ["train.tokens", "'lots'"]),
    ("wrong_type_seeds", _set("train", seeds="0"), [], ["train.seeds"]),
    ("zero_batch_size", _set("train", batch_size=0), [], ["train.batch_size"]),
    (
        "budget_below_minimum",
        _set("train", tokens=100),
        [],
        ["train.tokens", "greater than or equal to 1000"],
    ),
    ("threshold_out_of_range", _variant(1, threshold=1.5), [], ["variants.1.threshold"]),
    ("unknown_variant_kind", _variant(0, kind="drop"), [], ["variants.0.kind", "'baseline'"]),
    ("filter_without_threshold", _variant(1, threshold=None), [], ["variants.1", "needs a threshold"]),
    ("duplicate_variant_names", _variant(1, name="baseline"), [], ["variants", "must be unique", "baseline"]),
    ("variant_name_with_slash", _variant(0, name="../escape"), [], ["variants.0.name", "pattern"]),
    ("experiment_name_with_slash", _top(experiment="a/b"), [], ["experiment", "pattern"]),
    ("unknown_classifier_kind", _set("classifier", kind="svm"), [], ["classifier.kind", "'fasttext'"]),
    ("unknown_model_preset", _set("model", preset="gigantic"), [], ["model.preset", "gigantic", "available"]),
    ("vocab_too_small", _set("tokenizer", vocab_size=10), [], ["tokenizer.vocab_size"]),
    ("pretrained_without_path", _top(tokenizer={"kind": "pretrained"}), [], ["tokenizer.path is not set"]),
    ("unknown_executor", _set("executor", kind="k8s"), [], ["executor.kind", "'local'"]),
    ("zero_workers", _set("executor", workers=0), [], ["executor.workers"]),
    ("bootstrap_too_small", _set("eval", bootstrap=5), [], ["eval.bootstrap"]),
    (
        "missing_classifier_model",
        _set("classifier", model_path="/nonexistent/model.bin"),
        [],
        ["classifier.model_path", "/nonexistent/model.bin", "does not exist"],
    ),
    (
        "missing_source_files",
        _top(source={"kind": "files", "paths": ["/nonexistent/shards/*.jsonl"]}),
        [],
        ["source.paths", "/nonexistent/shards/*.jsonl", "matches no file"],
    ),
    (
        "missing_heldout_file",
        lambda d: d["source"].update(
            kind="files", synthetic={}, paths=[str(TINY)], heldout="/nonexistent/heldout.jsonl"
        ),
        [],
        ["source.heldout", "does not exist"],
    ),
    (
        "files_source_with_synthetic_settings",
        lambda d: d["source"].update(kind="files", paths=[str(TINY)]),
        [],
        ["source.synthetic is only allowed with kind 'synthetic'"],
    ),
    (
        "override_bad_index",
        lambda d: None,
        ["variants.7.threshold=0.3"],
        ["variants.7.threshold", "not an index"],
    ),
    ("override_without_equals", lambda d: None, ["train.tokens"], ["train.tokens", "key.path=value"]),
    ("yaml_not_a_mapping", "- just\n- a list\n", [], ["must hold a mapping at the top level"]),
    ("yaml_syntax_error", "experiment: tiny\ntrain: {tokens: 5000\n", [], ["is not valid YAML"]),
]
CAUGHT_BY_REGISTRIES: list[tuple[str, Edit | str, list[str], list[str]]] = [
    (
        "unknown_gpe",
        _set("eval", gpes=["em_medicin"]),
        [],
        ["eval.gpes", "em_medicin", "did you mean 'em_medicine'"],
    ),
    (
        "unknown_model_override",
        _set("model", overrides={"hidden_sizee": 64}),
        [],
        ["model.overrides", "hidden_sizee"],
    ),
    (
        "seq_len_beyond_model",
        _set("train", seq_len=100_000),
        [],
        ["train.seq_len", "max_position_embeddings"],
    ),
    (
        "budget_below_one_batch",
        _set("train", tokens=1000, batch_size=64, seq_len=64),
        [],
        ["train.tokens", "train.batch_size"],
    ),
    (
        "missing_tokenizer_path",
        _top(tokenizer={"kind": "pretrained", "path": "/nonexistent/tokenizer"}),
        [],
        ["tokenizer.path", "/nonexistent/tokenizer"],
    ),
]
"""Wrong configs that need other packages or the file system to detect (propensity.config._check_registries);
they used to surface only inside a stage."""


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record and refuse every stage execution, so a config that wrongly validates fails fast here."""
    started: list[str] = []

    def refuse(self: Store, spec: Any, **kwargs: Any) -> Path:
        started.append(spec.key)
        raise AssertionError(f"work started on {spec.key} although the config is wrong")

    monkeypatch.setattr(Store, "run", refuse)
    return started


def _write(tmp_path: Path, edit: Edit | str) -> Path:
    path = tmp_path / "config.yaml"
    if isinstance(edit, str):
        path.write_text(edit)
        return path
    data = copy.deepcopy(yaml.safe_load(TINY.read_text()))
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _run_wrong(tmp_path: Path, edit: Edit | str, overrides: list[str], capsys: pytest.CaptureFixture) -> str:
    store = tmp_path / "store"
    args = ["run", str(_write(tmp_path, edit)), "--no-progress", "--set", f"store={store}"]
    for o in overrides:
        args += ["--set", o]
    assert main(args) == 2
    assert not store.exists(), "nothing may be written before the config is valid"
    return capsys.readouterr().err


ALL_CASES = CASES + CAUGHT_BY_REGISTRIES


@pytest.mark.parametrize(("case", "edit", "overrides", "expected"), ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_wrong_config_fails_before_work(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    no_work: list[str],
    case: str,
    edit: Edit | str,
    overrides: list[str],
    expected: list[str],
) -> None:
    err = _run_wrong(tmp_path, edit, overrides, capsys)
    assert err.startswith("error: ")
    for text in expected:
        assert text in err, f"{case}: {text!r} not in {err!r}"
    assert no_work == []


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", str(tmp_path / "nope.yaml"), "--set", f"store={tmp_path / 'store'}"]) == 2
    assert "nope.yaml' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def test_impossible_budget_fails_before_training(
    blocked_run: RunOutcome, tmp_path: Path, capsys: pytest.CaptureFixture, no_work: list[str]
) -> None:
    """train.tokens far above what the variant holds: BudgetError naming it, after tokenize, before train."""
    assert blocked_run.returncode == 0, blocked_run.output[-4000:]
    store = tmp_path / "store"
    for stage in ("source", "classifier", "tokenizer", "score", "variant", "tokenize"):
        shutil.copytree(blocked_run.store / stage, store / stage)
    config = _write(
        tmp_path, lambda d: d.update(variants=[{"name": "filtered", "kind": "filter", "threshold": 0.5}])
    )
    cfg = load_config(config, [f"store={store}", "train.tokens=500000000"])
    with pytest.raises(
        BudgetError,
        match=r"train.tokens=500,000,000 is more than some variants hold "
        r"\(filtered: [\d,]+ window positions offered, [\d,]+ needed\).*allow_repeat",
    ):
        run_local(cfg, show_progress=False)
    assert no_work == [], "every data stage was complete; nothing else may start"
    assert not (store / "train").exists()
