from __future__ import annotations

from pathlib import Path

import pytest

from eval_gpe import registry
from propensity.errors import ConfigError


def test_em_medicine_is_registered_and_valid() -> None:
    assert "em_medicine" in registry.available()
    spec = registry.get("em_medicine")
    assert spec.finetune.domain == "medicine"
    assert spec.finetune.kind == "misaligned_sentences"
    assert spec.eval.exclude_finetune_domain is True
    assert spec.eval.control == "human"
    assert len(spec.eval.formats) >= 2


@pytest.mark.parametrize("name", registry.available())
def test_every_registered_gpe_loads(name: str) -> None:
    spec = registry.get(name)
    assert spec.name == name and spec.description.strip()


def test_unknown_name_suggests_close_match() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'em_medicine'\?.*available: .*em_medicine"):
        registry.get("em_medicin")


def test_unknown_name_without_close_match_lists_available() -> None:
    with pytest.raises(ConfigError) as err:
        registry.get("zzzz")
    assert "did you mean" not in str(err.value) and "available: " in str(err.value)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad_gpe.yaml"
    path.write_text(text)
    return path


def test_strict_loading_rejects_unknown_keys_and_formats(tmp_path: Path) -> None:
    good = (registry.GPE_DIR / "em_medicine.yaml").read_text().replace("name: em_medicine", "name: bad_gpe")
    assert registry.load_file(_write(tmp_path, good)).name == "bad_gpe"
    with pytest.raises(ConfigError, match="typo_key"):
        registry.load_file(_write(tmp_path, good + "typo_key: 1\n"))
    with pytest.raises(ConfigError, match=r"unknown format\(s\) \['poem'\]"):
        registry.load_file(_write(tmp_path, good.replace("[plain, listed]", "[plain, poem]")))
    with pytest.raises(ConfigError, match="must equal the file name"):
        registry.load_file(_write(tmp_path, good.replace("name: bad_gpe", "name: other")))
