"""``eval.gpes``: built-in names, GPE files (relative to the experiment config) and inline definitions; the
content of every file a GPE reads is in the eval stage's key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from evalset_files import write_mwe

from core.errors import ConfigError
from eval_gpe import registry
from eval_gpe.registry import definition
from eval_gpe.resolve import fingerprint, resolve, resolve_all
from propensity.config import load_config
from propensity.graph import build_graph

ROOT = Path(__file__).resolve().parents[2]


def _experiment(tmp_path: Path, gpes: list) -> Path:
    """configs/tiny.yaml copied into ``tmp_path/exp`` with ``eval.gpes`` replaced."""
    data = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    data["eval"]["gpes"] = gpes
    folder = tmp_path / "exp"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "exp.yaml").write_text(yaml.safe_dump(data))
    return folder / "exp.yaml"


def _gpe_file(folder: Path) -> Path:
    write_mwe(folder / "data")
    spec = {"name": "power", "trait": "power_seeking", "description": "model-written evals, no finetune",
            "finetune": "none", "evalsets": [{"name": "ps", "format": "model_written",
                                              "path": "data/power-seeking.jsonl"}]}
    (folder / "power.yaml").write_text(yaml.safe_dump(spec))
    return folder / "power.yaml"


def _eval_keys(config: Path) -> dict[str, str]:
    return {s.name: s.key for s in build_graph(load_config(config)) if s.stage in ("eval", "report")}


def test_builtin_definitions_hash_as_before() -> None:
    spec = registry.get("em_medicine")
    assert "evalsets" not in definition(spec) and definition(spec) == {
        k: v for k, v in spec.model_dump(mode="json").items() if k != "evalsets"}
    assert fingerprint([spec]) is None


def test_gpe_file_relative_to_the_config_and_edits_rerun(tmp_path) -> None:
    _gpe_file(tmp_path / "exp" / "gpes")
    config = _experiment(tmp_path, ["em_medicine", "gpes/power.yaml"])
    cfg = load_config(config)
    specs = resolve_all(cfg.eval.gpes)
    assert [s.name for s in specs] == ["em_medicine", "power"]
    assert specs[1].evalsets[0].path == [str(tmp_path / "exp" / "gpes" / "data" / "power-seeking.jsonl")]
    evals = [s for s in build_graph(cfg) if s.stage == "eval"]
    assert evals[0].config["battery"][0]["evalsets"][0]["format"] == "model_written"
    report = next(s for s in build_graph(cfg) if s.stage == "report")
    assert report.config["gpes"] == ["em_medicine", "power"]
    before = _eval_keys(config)
    data = tmp_path / "exp" / "gpes" / "data" / "power-seeking.jsonl"
    data.write_text(data.read_text() + json.dumps({"question": "Q?", "answer_matching_behavior": " Yes",
                                                   "answer_not_matching_behavior": " No"}) + "\n")
    after = _eval_keys(config)
    assert all(before[k] != after[k] for k in before)  # every eval and the report rerun


def test_inline_definition_and_errors(tmp_path) -> None:
    write_mwe(tmp_path / "exp" / "data")
    inline = {"name": "ps_inline", "trait": "power_seeking", "description": "inline", "finetune": "none",
              "evalsets": [{"name": "ps", "format": "model_written", "path": "data/power-seeking.jsonl"}]}
    cfg = load_config(_experiment(tmp_path, [inline]))
    assert resolve_all(cfg.eval.gpes)[0].evalsets[0].path[0].startswith(str(tmp_path / "exp"))
    with pytest.raises(ConfigError, match=r"eval.gpes\[0\]: unknown GPE 'em_medicin'.*did you mean 'em_medicine'"):
        load_config(_experiment(tmp_path, ["em_medicin"]))
    with pytest.raises(ConfigError, match=r"eval.gpes\[0\]: GPE file '.*missing.yaml' does not exist \(a GPE "
                                          r"file named in a config is found relative to the config's folder\)$"):
        load_config(_experiment(tmp_path, ["missing.yaml"]))  # and no note that says the opposite
    bad = {**inline, "evalsets": [{"name": "ps", "format": "lm_eval"}]}
    with pytest.raises(ConfigError, match=r"inline GPE 'ps_inline' is invalid:\n  evalsets.0: .*needs `task`"):
        load_config(_experiment(tmp_path, [bad]))
    with pytest.raises(ConfigError, match="give `eval` .* or `evalsets`"):
        resolve({"name": "x", "trait": "t", "description": "d", "finetune": "none"})
    with pytest.raises(ConfigError, match="GPE names must be distinct"):
        load_config(_experiment(tmp_path, [inline, inline]))
