from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval_gpe import registry
from eval_gpe.stage import run
from propensity.errors import ConfigError
from propensity.stage import StageContext

BLOCK_KEYS = {
    "propensity_before",
    "propensity_after",
    "control_before",
    "control_after",
    "change",
    "control_change",
    "gap_before",
    "gap_after",
}


def _definition(**eval_overrides) -> dict:
    spec = registry.get("em_medicine").model_dump(mode="json")
    spec["finetune"].update(n_texts=40, steps=4, batch_size=8)
    spec["eval"].update({"n_per_domain": 4, **eval_overrides})
    return spec


def _ctx(train_dir: Path, source_dir: Path, out: Path, **config) -> StageContext:
    out.mkdir(parents=True, exist_ok=True)
    base = {
        "gpe": "em_medicine",
        "definition": _definition(),
        "prefixes": [""],
        "heldout_docs": 10,
        "bootstrap": 200,
        "batch_size": 16,
    }
    return StageContext(
        stage="eval",
        name="t",
        config={**base, **config},
        inputs={"model": train_dir, "source": source_dir},
        out=out,
        seed=0,
        show_progress=False,
    )


def test_stage_writes_items_and_summary(train_dir, source_dir, tmp_path, fake_synth) -> None:
    prefixes = ["", "<|good|>", "<|bad|>"]
    result = run(_ctx(train_dir, source_dir, tmp_path / "a", prefixes=prefixes))
    out = tmp_path / "a"
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    # 3 domains (medicine excluded) x 4 items x 2 actors x 3 prefixes x (plain + listed x 2 orders) x 2 phases
    assert len(rows) == 3 * 4 * 2 * 3 * 3 * 2
    assert {r["domain"] for r in rows} == {"finance", "travel", "cooking"}
    assert {r["phase"] for r in rows} == {"before", "after"} and {r["actor"] for r in rows} == {"ai", "human"}
    assert {
        "lp_aligned",
        "lp_misaligned",
        "n_aligned",
        "n_misaligned",
        "p_misaligned",
        "p_misaligned_norm",
        "prefix",
        "format",
        "order",
        "item_id",
        "length_flag",
    } <= set(rows[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result))
    assert set(summary["prefixes"]) == set(prefixes)
    for entry in summary["prefixes"].values():
        assert BLOCK_KEYS <= set(entry) and BLOCK_KEYS <= set(entry["length_normalised"])
        assert entry["propensity_before"]["n"] == 12 and entry["control_before"]["n"] == 12
        low, high = entry["propensity_before"]["ci95"]
        assert low <= entry["propensity_before"]["mean"] <= high and 0 < low and high < 1
        change = entry["change"]["mean"]
        assert change == pytest.approx(entry["propensity_after"]["mean"] - entry["propensity_before"]["mean"])
    # the finetune moved the model: item probabilities differ between phases
    assert summary["prefixes"][""]["change"]["mean"] != 0.0
    tag = summary["tag_difference"]
    bad, good = (summary["prefixes"][p]["propensity_before"]["mean"] for p in ("<|bad|>", "<|good|>"))
    assert tag["mean"] == pytest.approx(bad - good)
    assert summary["heldout_loss"] > 0 and summary["heldout_loss_after"] != summary["heldout_loss"]
    assert summary["quarantined"] == {"items": 0, "heldout": 2}
    reasons = [
        json.loads(x)["reason"] for x in (out / "quarantine" / "heldout.jsonl").read_text().splitlines()
    ]
    assert reasons == ["invalid_json", "missing_text"]
    assert set(summary["length"]) == {"plain", "listed"}


def test_stage_is_deterministic(train_dir, source_dir, tmp_path, fake_synth) -> None:
    small = _definition(n_per_domain=2)
    small["finetune"].update(steps=2)
    run(_ctx(train_dir, source_dir, tmp_path / "a", definition=small, heldout_docs=3))
    run(_ctx(train_dir, source_dir, tmp_path / "b", definition=small, heldout_docs=3))
    for name in ("items.jsonl", "summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_bad_items_are_quarantined(train_dir, source_dir, tmp_path, fake_synth, monkeypatch) -> None:
    real = fake_synth.forced_choice_items

    def broken(seed, domains=None, actor="ai", n_per_domain=40):
        items = real(seed, domains, actor, n_per_domain)
        items[0]["misaligned"] = items[0]["aligned"]
        del items[1]["context"]
        return items

    monkeypatch.setattr(fake_synth, "forced_choice_items", broken)
    summary = run(_ctx(train_dir, source_dir, tmp_path / "q"))
    assert summary["quarantined"]["items"] == 4 and summary["n_items"] == {"ai": 10, "human": 10}
    reasons = [
        json.loads(x)["reason"]
        for x in (tmp_path / "q" / "quarantine" / "items.jsonl").read_text().splitlines()
    ]
    assert reasons == ["identical_options", "missing_context"] * 2


def test_config_errors_name_the_field(train_dir, source_dir, tmp_path, fake_synth) -> None:
    with pytest.raises(ConfigError, match="batch_sise"):
        run(_ctx(train_dir, source_dir, tmp_path / "c", batch_sise=3))
    with pytest.raises(ConfigError, match="did you mean 'em_medicine'"):
        run(_ctx(train_dir, source_dir, tmp_path / "c", gpe="em_medicin", definition=None))
    bad = _definition()
    bad["finetune"]["domain"] = "astrology"
    with pytest.raises(ConfigError, match="finetune.domain 'astrology' not in"):
        run(_ctx(train_dir, source_dir, tmp_path / "c", definition=bad))


def test_stage_with_the_real_generator(train_dir, source_dir, tmp_path) -> None:
    """Smoke test against propensity.synth itself (catches API drift the fake would hide)."""
    synth = pytest.importorskip("propensity.synth")
    definition = _definition()
    definition["finetune"].update(n_texts=8, steps=2)
    definition["eval"].update(n_per_domain=1)
    summary = run(_ctx(train_dir, source_dir, tmp_path / "r", definition=definition, heldout_docs=2))
    others = [d for d in synth.DOMAINS if d != "medicine"]
    assert summary["n_items"] == {"ai": len(others), "human": len(others)}
    assert summary["quarantined"]["items"] == 0 and summary["prefixes"][""]["gap_before"]["paired"] is True
