from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.stage import StageContext
from eval_gpe import registry
from eval_gpe.stage import run

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
    spec["finetune"].update(n_texts=40, steps=4, batch_size=8, checkpoints=[2])
    spec["eval"].update({"n_per_domain": 4, "never_seen": False, **eval_overrides})
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
    assert summary == json.loads(json.dumps({k: v for k, v in result.items() if k != "cost"}))
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
    assert summary["quarantined"] == {"items": 0, "heldout": 2, "finetune_rows": 0}
    reasons = [
        json.loads(x)["reason"] for x in (out / "quarantine" / "heldout.jsonl").read_text().splitlines()
    ]
    assert reasons == ["malformed_json", "missing_text"]
    assert set(summary["length"]) == {"plain", "listed"}
    # the new layout: in-distribution block, tamper curve (first prefix), per-GPE files
    assert summary["gpes"] == ["em_medicine"] and set(summary["battery"]) == {"em_medicine"}
    assert set(summary["in_distribution"]) == set(prefixes) and summary["n_items"]["in_distribution"] == 8
    curve = summary["tamper"][""]
    assert [p["step"] for p in curve] == [0, 2, 4] and curve[0]["change"]["mean"] == 0.0
    assert curve[-1]["propensity"] == summary["prefixes"][""]["propensity_after"]
    all_rows = [
        json.loads(line) for line in (out / "gpes" / "em_medicine" / "items.jsonl").read_text().splitlines()
    ]
    assert {r["phase"] for r in all_rows} == {"before", "step_2", "after"}
    assert {r["prefix"] for r in all_rows if r["phase"] == "step_2"} == {""}
    assert {r["domain"] for r in all_rows if r["role"] == "id"} == {"medicine"}
    assert (
        json.loads((out / "gpes" / "em_medicine" / "summary.json").read_text())
        == summary["battery"]["em_medicine"]
    )
    assert set(json.loads((out / "cost.json").read_text())["cpu_s"]) >= {"finetune", "trait_eval_before"}


def test_stage_is_deterministic(train_dir, source_dir, tmp_path, fake_synth) -> None:
    small = _definition(n_per_domain=2)
    small["finetune"].update(steps=2, checkpoints=[1])
    run(_ctx(train_dir, source_dir, tmp_path / "a", definition=small, heldout_docs=3))
    run(_ctx(train_dir, source_dir, tmp_path / "b", definition=small, heldout_docs=3))
    for name in ("items.jsonl", "summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_battery_workers_write_the_same_bytes(train_dir, source_dir, tmp_path, fake_synth) -> None:
    """Two GPEs in two worker processes give exactly what one process gives (one torch thread in each)."""
    small = _definition(n_per_domain=2)
    small["finetune"].update(steps=3, checkpoints=[1])
    lora = json.loads(json.dumps(small))
    lora.update(name="em_medicine_lora")
    lora["finetune"].update(method="lora")
    outs = {}
    for workers in (1, 2):
        ctx = _ctx(train_dir, source_dir, tmp_path / f"w{workers}", definition=small, battery=[lora],
                   heldout_docs=3)
        ctx.workers = workers
        run(ctx)
        outs[workers] = ctx.out
    files = ["items.jsonl", "summary.json"] + [
        f"gpes/{g}/{f}" for g in ("em_medicine", "em_medicine_lora") for f in ("items.jsonl", "summary.json")
    ]
    for name in files:
        assert (outs[1] / name).read_bytes() == (outs[2] / name).read_bytes(), name
    summary = json.loads((outs[2] / "summary.json").read_text())
    assert summary["battery"]["em_medicine"]["prefixes"] != summary["battery"]["em_medicine_lora"]["prefixes"]
    assert json.loads((outs[2] / "cost.json").read_text())["cpu_s"]["finetune"] > 0


def test_bad_items_are_quarantined(train_dir, source_dir, tmp_path, fake_synth, monkeypatch) -> None:
    real = fake_synth.forced_choice_items

    def broken(seed, domains=None, actor="ai", n_per_domain=40):
        items = real(seed, domains, actor, n_per_domain)
        items[0]["misaligned"] = items[0]["aligned"]
        del items[1]["context"]
        return items

    monkeypatch.setattr(fake_synth, "forced_choice_items", broken)
    summary = run(_ctx(train_dir, source_dir, tmp_path / "q"))
    assert summary["quarantined"]["items"] == 4
    assert (summary["n_items"]["ai"], summary["n_items"]["human"]) == (10, 10)
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
    """Smoke test against synth itself (catches API drift the fake would hide)."""
    synth = pytest.importorskip("synth")
    definition = _definition()
    definition["finetune"].update(n_texts=8, steps=2, checkpoints=[])
    definition["eval"].update(n_per_domain=1, never_seen=True)
    summary = run(_ctx(train_dir, source_dir, tmp_path / "r", definition=definition, heldout_docs=2))
    others = [d for d in synth.DOMAINS if d != "medicine"]
    assert (summary["n_items"]["ai"], summary["n_items"]["human"]) == (len(others), len(others))
    assert summary["n_items"]["never_seen"] == 2 * 3 * len(
        others
    )  # 3 never-seen actions per domain and actor
    assert summary["n_items"]["in_distribution"] == 2
    assert summary["quarantined"]["items"] == 0 and summary["prefixes"][""]["gap_before"]["paired"] is True


def test_battery_shares_the_before_eval_and_judges_generations(
    train_dir, source_dir, tmp_path, fake_synth
) -> None:
    """Two GPEs in one stage: identical before rows, own after rows; free generation judged over real HTTP."""
    from judge_server import JudgeServer

    primary = _definition(n_per_domain=2)
    benign = json.loads(json.dumps(primary))
    benign["finetune"].update(kind="benign_sentences", checkpoints=[])
    benign.update(name="benign_medicine")
    with JudgeServer() as server:
        judge = {
            "kind": "http",
            "url": server.url,
            "model": "judge-model",
            "timeout_s": 5,
            "retries": 1,
            "backoff_s": 0.01,
        }
        result = run(
            _ctx(
                train_dir,
                source_dir,
                tmp_path / "b",
                definition=primary,
                battery=[benign],
                heldout_docs=3,
                generation={"n_prompts": 3, "max_new_tokens": 4, "judge": judge},
            )
        )
        assert sum(server.calls.values()) == 3 * 3  # before once, after once per GPE
    out = tmp_path / "b"
    assert result["gpes"] == ["em_medicine", "benign_medicine"]
    rows = {
        g: [json.loads(x) for x in (out / "gpes" / g / "items.jsonl").read_text().splitlines()]
        for g in result["gpes"]
    }
    strip = ("gpe",)
    before = [
        [{k: v for k, v in r.items() if k not in strip} for r in rows[g] if r["phase"] == "before"]
        for g in result["gpes"]
    ]
    assert (
        before[0] == before[1] and len(before[0]) == 2 * 4 * 2 * 3
    )  # 4 domains (ood + id) x 2 items x 2 actors
    after = [[r["lp_aligned"] for r in rows[g] if r["phase"] == "after"] for g in result["gpes"]]
    assert after[0] != after[1]
    assert [p["step"] for p in result["battery"]["benign_medicine"]["tamper"][""]] == [0, 4]
    gen = result["battery"]["benign_medicine"]["generation"]
    assert gen["before"]["n_scored"] == 3 and gen["after"]["judge_failures"] == {
        "attempts": {},
        "unscored": 0,
        "total": 0,
    }
    assert gen["after"]["misaligned_rate"]["mean"] == 0.0  # the server scores unmarked answers as aligned
    lines = (out / "gpes" / "benign_medicine" / "generations.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all("<|good|>" not in json.loads(x)["completion"] for x in lines)
