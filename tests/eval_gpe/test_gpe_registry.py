from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.errors import ConfigError
from eval_gpe import registry


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
    with pytest.raises(ConfigError, match=r"did you mean 'em_medicine'[^?]*\?.*available: .*em_medicine"):
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


def test_builtin_battery_has_at_least_four_generated_gpes() -> None:
    specs = [registry.get(n) for n in registry.available()]
    generated = [s for s in specs if s.finetune.data is None]
    assert len(generated) >= 4
    def signal(s: registry.GPESpec) -> tuple:
        return s.finetune.domain, s.finetune.kind, s.finetune.inoculation, s.finetune.method

    # every GPE has its own narrow signal, or the same signal scored another way (em_medicine_plain: the
    # learnable world's plain-format battery); none is a copy of another
    assert len({(signal(s), tuple(s.eval.formats), s.eval.never_seen) for s in generated}) == len(generated)
    assert len({signal(s) for s in generated}) >= 4
    assert {"benign_sentences", "misaligned_sentences"} <= {s.finetune.kind for s in generated}
    # the battery shares one item set, so one before-finetune eval serves all of them
    assert len({(s.eval.seed, s.eval.n_per_domain) for s in generated}) == 1


def test_finetune_data_and_checkpoints_are_validated() -> None:
    base = registry.get("em_medicine").model_dump(mode="json")
    bad = json.loads(json.dumps(base))
    bad["finetune"].update(domain=None)
    with pytest.raises(ValidationError, match="set `domain`"):
        registry.GPESpec.model_validate(bad)
    bad = json.loads(json.dumps(base))
    bad["finetune"].update(checkpoints=[50, 25])
    with pytest.raises(ValidationError, match="checkpoints must increase"):
        registry.GPESpec.model_validate(bad)
    bad["finetune"].update(checkpoints=[100])
    with pytest.raises(ValidationError, match="checkpoints must increase"):
        registry.GPESpec.model_validate(bad)
    own = json.loads(json.dumps(base))
    own["finetune"].update(domain=None, data={"path": "x.jsonl", "format": "chat"})
    assert registry.GPESpec.model_validate(own).finetune.data.format == "chat"
