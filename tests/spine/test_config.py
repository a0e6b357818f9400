"""Strict config loading: unknown keys, wrong types and impossible values fail naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.errors import ConfigError
from propensity.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def base() -> dict:
    return yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())


def test_shipped_configs_validate() -> None:
    for name in ("quickstart.yaml", "tiny.yaml"):
        cfg = load_config(ROOT / "configs" / name)
        assert cfg.variants[0].name == "baseline"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["train"].update(tokenz=5), r"train\.tokenz: unknown key\. did you mean 'tokens'"),
        (lambda d: d["train"].update(tokens="many"), r"train\.tokens"),
        (lambda d: d["variants"][1].update(threshold=None), r"needs a threshold"),
        (lambda d: d["variants"][1].update(threshold=1.5), r"variants\.1\.threshold"),
        (lambda d: d["variants"].append({"name": "baseline", "kind": "baseline"}), r"unique"),
        (lambda d: d["variants"][0].update(kind="drop"), r"variants\.0\.kind"),
        (lambda d: d["eval"].update(gpes=["em_medicin"]), r"did you mean"),
        (lambda d: d["eval"].update(gpes=["em_code", "em_code"]), r"eval\.gpes has duplicates"),
        (lambda d: d["train"].update(seeds=[0, 0]), r"train\.seeds has duplicates"),
        (lambda d: d["model"].update(preset="hugee"), r"model\.preset"),
        (lambda d: d.update(experiment="../escape"), r"experiment"),
        (lambda d: d["source"].update(kind="files"), r"source\.paths is empty"),
        (lambda d: d["classifier"].update(model_path="/nonexistent/model.bin"), r"classifier\.model_path"),
        (lambda d: (d["train"].update(backend="nanotron", packing="fixed"),
                    d["variants"].append({"name": "masked", "kind": "mask"})), r"variants\.masked: loss masks"),
        (lambda d: (d["train"].update(backend="nanotron", packing="fixed"),
                    d["variants"].append({"name": "late", "kind": "inject",
                                          "inject": {"share": 0.05, "window": [0.9, 1.0]}})),
         r"variants\.late: inject\.window \[0\.9, 1\.0\] needs the torch trainer"),
        (lambda d: d["train"].update(backend="nanotron", packing="fixed", document_mask=True),
         r"train\.document_mask: needs the torch trainer"),
    ],
)
def test_bad_configs_fail_naming_the_field(tmp_path: Path, mutate, message: str) -> None:
    data = base()
    mutate(data)
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, data))


def test_dotted_overrides_are_validated(tmp_path: Path) -> None:
    p = write(tmp_path, base())
    cfg = load_config(p, ["train.tokens=12345", "variants.1.threshold=0.7"])
    assert cfg.train.tokens == 12345 and cfg.variants[1].threshold == 0.7
    with pytest.raises(ConfigError, match="train.tokens"):
        load_config(p, ["train.tokens=-1"])


def test_a_kind_switched_on_the_command_line_can_drop_the_files_settings(tmp_path: Path) -> None:
    """--set tokenizer.kind=pretrained under a file that sets vocab_size: the error says how to remove it from
    the command line (no `(got a mapping)` tail), and `~tokenizer.vocab_size` does."""
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{}")
    p = write(tmp_path, base() | {"tokenizer": {"kind": "bpe", "vocab_size": 512}})
    switch = ["tokenizer.kind=pretrained", f"tokenizer.path={folder}"]
    with pytest.raises(ConfigError) as err:
        load_config(p, switch)
    assert str(err.value).splitlines()[-1].strip() == (
        "tokenizer: tokenizer.vocab_size has no effect with tokenizer.kind 'pretrained'; it is used by kind 'bpe' "
        "(remove it, on the command line with --set '~tokenizer.vocab_size', or change the kind)")
    cfg = load_config(p, [*switch, "~tokenizer.vocab_size"])
    assert cfg.tokenizer.kind == "pretrained" and cfg.tokenizer.path == str(folder)
    assert load_config(p, ["~variants.1"]).variants[1].name != base()["variants"][1]["name"]
    with pytest.raises(ConfigError, match="no 'vocab' there to remove"):
        load_config(p, ["~tokenizer.vocab"])
    with pytest.raises(ConfigError, match="takes no value"):
        load_config(p, ["~tokenizer.vocab_size=3"])


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
