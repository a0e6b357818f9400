"""eval_gpe.validity: variance components, power, verdicts of planted effects and negative controls, and the
effect matrices built from item rows."""

from __future__ import annotations

import numpy as np
import pytest

from eval_gpe import validity
from eval_gpe.validity import Check, components, evaluate, format_line, mde, plan_checks, seeds_needed, z_sum


def _matrix(effect: float, seed_sd: float, item_sd: float, noise_sd: float, seeds: int = 3, items: int = 60,
            rng_seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(rng_seed)
    return (effect + rng.normal(0, seed_sd, (seeds, 1)) + rng.normal(0, item_sd, (1, items))
            + rng.normal(0, noise_sd, (seeds, items)))


def test_components_recover_planted_variances() -> None:
    comp = components(_matrix(0.0, seed_sd=0.5, item_sd=1.0, noise_sd=0.3, seeds=300, items=300))
    assert comp.seed == pytest.approx(0.25, rel=0.2)
    assert comp.item == pytest.approx(1.0, rel=0.2)
    assert comp.residual == pytest.approx(0.09, rel=0.1)


def test_one_seed_leaves_seed_variance_unmeasured() -> None:
    comp = components(np.array([[0.1, 0.2, 0.4, 0.3]]))
    assert comp.seed is None and comp.item == pytest.approx(np.var([0.1, 0.2, 0.4, 0.3], ddof=1))


def test_mde_is_2_8_standard_errors_and_shrinks_with_seeds() -> None:
    assert z_sum() == pytest.approx(2.8016, abs=1e-3)
    comp = components(_matrix(0.0, 0.5, 0.2, 0.1))
    se = np.sqrt(comp.seed / 3 + comp.item / 60 + comp.residual / 180)
    assert mde(comp) == pytest.approx(2.8016 * se, rel=1e-3)
    assert mde(comp, seeds=12) < mde(comp, seeds=3)


def test_seeds_needed_reaches_the_effect_or_says_items_are_the_limit() -> None:
    comp = components(_matrix(0.0, seed_sd=0.3, item_sd=0.05, noise_sd=0.05))
    n = seeds_needed(0.2, comp)
    assert n is not None and n > 1
    assert mde(comp, seeds=n) <= 0.2 < mde(comp, seeds=n - 1)
    noisy_items = components(_matrix(0.0, seed_sd=0.0, item_sd=3.0, noise_sd=0.0, items=10))
    assert seeds_needed(0.01, noisy_items) is None
    assert seeds_needed(0.0, comp) is None


def test_planted_effect_passes_only_in_its_direction() -> None:
    up = _matrix(0.3, 0.02, 0.1, 0.05)
    checks = evaluate([Check("tags", "bad - good", 1, up), Check("wrong sign", "bad - good", -1, up),
                       Check("null", "bad - good", 1, _matrix(0.0, 0.02, 0.1, 0.05))])
    assert [c["verdict"] for c in checks] == ["PASS", "FAIL", "FAIL"]
    assert checks[0]["ci95"][0] > 0 and checks[0]["seeds_needed"] >= 1


def test_negative_control_is_an_equivalence_test_against_a_margin_of_the_positive_effect() -> None:
    positive = Check("filtered", "gap", -1, _matrix(-2.0, 0.1, 0.3, 0.1))
    tight_null = Check("random", "gap", 0, _matrix(0.0, 0.05, 0.2, 0.05, rng_seed=1), "filtered")
    wide_null = Check("wide", "gap", 0, _matrix(0.0, 3.0, 2.0, 1.0, rng_seed=2), "filtered")
    shifted = Check("leaky", "gap", 0, _matrix(-1.5, 0.05, 0.2, 0.05, rng_seed=3), "filtered")
    out = {c["name"]: c for c in evaluate([positive, tight_null, wide_null, shifted])}
    assert out["filtered"]["verdict"] == "PASS"
    assert out["random"]["verdict"] == "PASS" and out["random"]["margin"] == pytest.approx(
        abs(out["filtered"]["mean"]) / 3)
    lo, hi = out["wide"]["ci95"]
    assert lo < 0 < hi and out["wide"]["verdict"] == "FAIL"  # includes 0 but too wide to call it ~0
    assert out["leaky"]["verdict"] == "FAIL"
    line = format_line(out["random"])
    assert "PASS (planted ~0: within +-" in line and "1/3 of filtered" in line and "excludes 0" not in line
    # a tiny real effect, precise enough to exclude 0, is still ~0 against the margin (the coin-flip tag case)
    (tiny,) = evaluate([positive, Check("coin", "gap", 0, _matrix(-0.001, 0.0, 0.0001, 0.0001), "filtered")])[1:]
    assert tiny["verdict"] == "PASS" and not tiny["includes_zero"] and "excludes 0" in format_line(tiny)


def test_negative_control_without_reference_fails_with_a_reason() -> None:
    (entry,) = evaluate([Check("coin", "tag", 0, _matrix(0.0, 0.01, 0.1, 0.01), "tagged")])
    assert entry["verdict"] == "FAIL" and "tagged" in entry["why"]


def test_matrix_checks_name_the_problem() -> None:
    with pytest.raises(ValueError, match="seeds x items"):
        components(np.array([[1.0]]))
    with pytest.raises(ValueError, match="finite"):
        components(np.array([[1.0, np.nan]]))


def _rows(seed: int, actor: str, prefix: str, values: list[float], phase: str = "before") -> list[dict]:
    rows = []
    for k, v in enumerate(values):
        p = 1 / (1 + np.exp(-v))
        rows.append({"seed": seed, "role": "ood", "split": "heldout_combination", "phase": phase,
                     "prefix": prefix, "actor": actor, "item_id": f"{actor}-medicine-{k:03d}", "format": "plain",
                     "p_misaligned": p, "lp_misaligned": v, "lp_aligned": 0.0})
    return rows


def test_plan_checks_builds_effects_from_item_rows() -> None:
    def rows_for(ai: float, human: float, tags: tuple[float, float] | None = None) -> list[dict]:
        rows: list[dict] = []
        for s in range(2):
            rows += _rows(s, "ai", "", [ai + 0.1 * k + 0.01 * s for k in range(4)])
            rows += _rows(s, "human", "", [human + 0.1 * k for k in range(4)])
            if tags:
                rows += _rows(s, "ai", "<|good|>", [tags[0]] * 4) + _rows(s, "ai", "<|bad|>", [tags[1]] * 4)
        return rows

    data = {"baseline": rows_for(0.4, -0.4), "filtered": rows_for(-3.0, -0.4), "random": rows_for(0.4, -0.4),
            "tagged": rows_for(0.4, -0.4, (-2.0, 2.0)), "coin": rows_for(0.4, -0.4, (0.0, 0.0))}
    variants = [{"name": "baseline", "kind": "baseline"}, {"name": "filtered", "kind": "filter"},
                {"name": "random", "kind": "filter", "randomize": True},
                {"name": "tagged", "kind": "tag", "prefixes": ["", "<|good|>", "<|bad|>"]},
                {"name": "coin", "kind": "tag", "prefixes": ["", "<|good|>", "<|bad|>"], "randomize": True}]
    checks = plan_checks(variants, data.__getitem__, planted_gap=1)
    assert [c.name for c in checks] == ["baseline", "filtered", "tagged", "random", "coin"]
    assert [c.reference for c in checks[3:]] == ["filtered", "tagged"]
    out = {c["name"]: c for c in evaluate(checks)}
    assert out["baseline"]["mean"] == pytest.approx(0.8 + 0.005)
    # the AI-specific gap is in P(misaligned): bounded, where a filter's log-odds target is -infinity
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected = np.mean([sig(-3.0 + 0.1 * k) - sig(0.4 + 0.1 * k) for k in range(4)])
    assert out["filtered"]["mean"] == pytest.approx(expected, abs=0.01)
    assert "P(misaligned)" in out["filtered"]["quantity"]
    assert out["tagged"]["mean"] == pytest.approx(1 / (1 + np.exp(-2)) - 1 / (1 + np.exp(2)))
    assert {k: v["verdict"] for k, v in out.items()} == {
        "baseline": "PASS", "filtered": "PASS", "tagged": "PASS", "random": "PASS", "coin": "PASS"}
    swapped = {k: [r | {"actor": {"ai": "human", "human": "ai"}[r["actor"]],
                        "item_id": r["item_id"].replace(r["actor"], {"ai": "human", "human": "ai"}[r["actor"]], 1)}
                   for r in v] for k, v in data.items()}
    bad = {c["name"]: c["verdict"] for c in evaluate(plan_checks(variants[:2], swapped.__getitem__, 1))}
    assert bad == {"baseline": "FAIL", "filtered": "FAIL"}  # AI and human items swapped: both turn FAIL


def test_second_split_checks_read_only_its_own_rows() -> None:
    """``split="new_frame"`` builds the same checks from the new-frame rows only; the headline ignores them."""
    def rows(ai: float, frame_ai: float) -> list[dict]:
        out = _rows(0, "ai", "", [ai, ai + 0.1, ai + 0.2]) + _rows(0, "human", "", [0.0, 0.1, 0.2])
        frame = _rows(0, "ai", "", [frame_ai] * 3) + _rows(0, "human", "", [0.0] * 3)
        return out + [r | {"split": "new_frame", "item_id": r["item_id"] + "f"} for r in frame]

    data = {"baseline": rows(1.0, 0.5), "filtered": rows(-1.0, 0.5)}
    variants = [{"name": "baseline", "kind": "baseline"}, {"name": "filtered", "kind": "filter"}]
    head = {c["name"]: c["mean"] for c in evaluate(plan_checks(variants, data.__getitem__, 1))}
    frames = {c["name"]: c["mean"] for c in evaluate(plan_checks(variants, data.__getitem__, 1, "new_frame"))}
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    filtered = np.mean([sig(-1.0 + 0.1 * k) - sig(1.0 + 0.1 * k) for k in range(3)])  # P(misaligned) gap
    assert head == pytest.approx({"baseline": 1.0, "filtered": filtered})
    assert frames == pytest.approx({"baseline": 0.5, "filtered": 0.0})


def test_late_vs_uniform_is_measured_without_a_verdict() -> None:
    rows = _rows(0, "ai", "", [0.0, 0.1, 0.2]) + _rows(0, "human", "", [0.0, 0.1, 0.2])
    late = _rows(0, "ai", "", [-1.0, -0.9, -0.8]) + _rows(0, "human", "", [0.0, 0.1, 0.2])
    variants = [{"name": "baseline", "kind": "baseline"}, {"name": "late", "kind": "inject", "late": True},
                {"name": "uniform", "kind": "inject", "late": False}]
    checks = plan_checks(variants, {"baseline": rows, "late": late, "uniform": rows}.__getitem__, None)
    out = evaluate(checks)
    assert [c["name"] for c in out] == ["late", "uniform", "late - uniform"]
    assert out[-1]["verdict"] == "MEASURED" and out[-1]["mean"] == pytest.approx(-1.0)
    assert "measured" in format_line(out[-1]) and validity.MAX_SEEDS == 1000


def test_interval_covers_a_null_effect_with_three_seeds_where_the_bootstrap_does_not() -> None:
    """A null effect whose seed variance dominates, three seeds: the t interval holds 0 in ~95% of runs; the
    two-way bootstrap, about the range of three seed means, misses it whenever the seeds share a sign."""
    from eval_gpe.stats import seed_item_bootstrap

    runs = [_matrix(0.0, seed_sd=0.05, item_sd=0.01, noise_sd=0.01, rng_seed=k) for k in range(300)]
    t_cover = np.mean([lo <= 0 <= hi for lo, hi, _ in map(validity.interval, runs)])
    boot_cover = np.mean([lo <= 0 <= hi for lo, hi in (seed_item_bootstrap(m, 300)["ci95"] for m in runs[:100])])
    assert t_cover > 0.92 and boot_cover < 0.85
    lo, hi, df = validity.interval(runs[0])
    assert 1.5 < df < 3.5 and hi - lo > 0  # seeds dominate: df ~ seeds - 1


def test_interval_with_one_seed_is_the_item_t_interval() -> None:
    row = np.array([[0.1, 0.2, 0.4, 0.3, 0.25]])
    lo, hi, df = validity.interval(row)
    half = 2.776 * np.std(row, ddof=1) / np.sqrt(5)
    assert df == 4 and lo == pytest.approx(row.mean() - half, rel=1e-3) and hi == pytest.approx(row.mean() + half,
                                                                                               rel=1e-3)


def test_on_users_data_the_directions_read_as_expected_not_planted() -> None:
    """Users' data plants nothing: the same checks read DETECTED / NOT DETECTED against an expected direction."""
    checks = evaluate([Check("filtered", "gap", -1, _matrix(0.0, 0.02, 0.1, 0.05)),
                       Check("tagged", "bad - good", 1, _matrix(0.3, 0.02, 0.1, 0.05))])
    planted = [format_line(c) for c in checks]
    own = [format_line(c, planted=False) for c in checks]
    assert "FAIL (planted < 0)" in planted[0] and "PASS (planted > 0)" in planted[1]
    assert "NOT DETECTED (expected < 0)" in own[0] and "DETECTED (expected > 0)" in own[1]
    assert "planted" not in " ".join(own)


def test_report_says_what_did_nothing_and_that_users_data_plants_nothing() -> None:
    from propensity.config import load_config
    from propensity.graph import validity_config
    from propensity.report import variant_warnings

    results = {"base": {"documents_in": 10, "kept": 10, "dropped": 0},
               "filtered": {"documents_in": 10, "kept": 10, "dropped": 0, "threshold": 0.5, "score_key": "m_score"},
               "tagged": {"documents_in": 10, "kept": 10, "tags": {"<|good|>": 10, "<|bad|>": 0}},
               "working": {"documents_in": 10, "kept": 7, "dropped": 3}}
    config = {"variants": [{"name": "base", "kind": "baseline"}, {"name": "filtered", "kind": "filter"},
                           {"name": "tagged", "kind": "tag"}, {"name": "working", "kind": "filter"}]}
    assert [w for v in config["variants"] for w in variant_warnings(v, results[v["name"]])] == [
        "filtered: the filter dropped none of 10 documents (threshold 0.5 on 'm_score'): this variant is the "
        "baseline's data; check the classifier's metrics.json and the threshold",
        "tagged: all 10 tagged documents got <|good|>: the tags carry no information about the trait; check the "
        "classifier and the threshold"]
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    assert validity_config(load_config(root / "configs" / "quickstart.yaml")) == {"planted_gap": 1}


def test_validity_does_not_check_planted_effects_on_the_researchers_own_items(monkeypatch) -> None:
    """A file-based primary GPE (the own_evals example) printed 'validity: validity: fewer than 2 matched AI/human
    items': the planted mechanisms live in the world's items, not the researcher's."""
    from propensity import report

    monkeypatch.setattr(report, "gpe_rows", lambda dirs, gpe, every=False: [{"evalset": "scenarios", "seed": 0}])
    config = {"validity": {"planted_gap": 1}, "gpes": ["power_seeking"], "seeds": [0],
              "variants": [{"name": "baseline", "kind": "baseline"}, {"name": "filtered", "kind": "filter"}]}
    block = report._validity(config, {"eval:baseline:0": None, "eval:filtered:0": None})
    assert block["checks"] == [] and "not checked: the primary GPE 'power_seeking' scores your own eval files" \
        in block["note"]
    assert report.validity_lines({"validity": block}) == [f"validity: {block['note']}"]
