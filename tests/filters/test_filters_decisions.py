"""Decisions over stored scores: combinations, percentiles, keep-above, and the one-pass materializer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from filters_fixtures import make_ctx, write_jsonl

from core.errors import ConfigError, InputDataError
from filters import variants
from filters.datatrove_stage import iter_jsonl, jsonl_files
from filters.decisions import CombinedDecision, DecisionFilter, ThresholdDecision, read_scores, score_quantile
from filters.materialize import VariantPlan, materialize
from filters.writers import ReproducibleJsonlWriter


def test_threshold_and_combined_decisions_exact_reasons() -> None:
    meta = {"a_score": 0.6, "b_score": 0.2, "c_score": 0.9}
    assert ThresholdDecision("a_score", 0.5).decide(meta) == "a_score>=0.5"
    assert ThresholdDecision("b_score", 0.5).decide(meta) is None
    assert ThresholdDecision("b_score", 0.5, keep="above").decide(meta) == "b_score<0.5"
    assert ThresholdDecision("a_score", 0.5, keep="above").decide(meta) is None
    assert ThresholdDecision("z_score", 0.5).decide(meta) == "missing_z_score"
    any_ = CombinedDecision({"mode": "any", "thresholds": {"a_score": 0.5, "b_score": 0.1, "c_score": 0.95}})
    assert any_.decide(meta) == "any:a_score>=0.5+b_score>=0.1"
    assert any_.decide({"a_score": 0.1, "b_score": 0.0, "c_score": 0.0}) is None
    all_ = CombinedDecision({"mode": "all", "thresholds": {"a_score": 0.5, "c_score": 0.5}})
    assert all_.decide(meta) == "all:a_score>=0.5+c_score>=0.5"
    assert all_.decide(meta | {"c_score": 0.4}) is None
    weighted = CombinedDecision(
        {"mode": "weighted", "weights": {"a_score": 1, "b_score": 3}, "threshold": 0.3}
    )
    assert weighted.decide(meta) == "weighted>=0.3"  # (0.6 + 3 * 0.2) / 4 = 0.3
    assert weighted.decide(meta | {"b_score": 0.19}) is None
    assert weighted.decide({"a_score": 0.9}) == "missing_b_score"
    # a missing score (a cascade's later stage never saw the document) decides only where it must
    assert all_.decide({"a_score": 0.2}) is None  # a score it has is below: kept whatever c would say
    assert all_.decide({"a_score": 0.7}) == "missing_c_score"  # a fired, c unknown: undecided
    assert any_.decide({"c_score": 0.99}) == "any:c_score>=0.95"  # one that fires is enough
    assert any_.decide({"a_score": 0.1, "c_score": 0.0}) == "missing_b_score"
    with pytest.raises(ValueError, match="mode 'weighted' needs weights and threshold"):
        CombinedDecision({"mode": "weighted", "thresholds": {"a_score": 0.5}})


def test_percentile_variant_uses_the_whole_corpus_quantile(score_dir: Path, tmp_path: Path) -> None:
    scores = read_scores(score_dir, "misaligned_score")
    assert len(scores) == 60
    expected = float(np.quantile(scores, 0.75))
    config = {"name": "p75", "kind": "filter", "percentile": 0.75}
    result = variants.run(make_ctx("variant", tmp_path / "v", config, {"score": score_dir}))
    assert result["threshold"] == expected and result["percentile"] == 0.75
    assert result["at_or_above"] == sum(s >= expected for s in scores) == result["dropped"] == 15
    assert result["kept"] == 45 and result["method"] == "numpy.quantile(linear)"
    keep_top = {"name": "top", "kind": "filter", "percentile": 0.75, "keep": "above"}
    top = variants.run(make_ctx("variant", tmp_path / "top", keep_top, {"score": score_dir}))
    kept = list(iter_jsonl(jsonl_files(tmp_path / "top" / "shards")))
    assert top["kept"] == 15 and all(d["metadata"]["misaligned_score"] >= expected for d in kept)
    excluded = list(iter_jsonl(jsonl_files(tmp_path / "top" / "excluded")))
    assert {d["metadata"]["filter_reason"] for d in excluded} == {f"misaligned_score<{expected}"}


def test_percentile_needs_score_tables(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "score" / "shards" / "00000.jsonl.gz", [{"id": "a", "text": "t", "metadata": {"m": 0.1}}]
    )
    (tmp_path / "score" / "score.json").write_text(json.dumps({"score_key": "m"}))
    config = {"name": "p", "kind": "filter", "percentile": 0.5}
    with pytest.raises(InputDataError, match="variant.percentile needs the score tables"):
        variants.run(make_ctx("variant", tmp_path / "v", config, {"score": tmp_path / "score"}))
    with pytest.raises(ConfigError, match="combine and keep='above' are for kind 'filter' only"):
        variants.run(
            make_ctx(
                "variant",
                tmp_path / "v",
                {"name": "t", "kind": "tag", "keep": "above"},
                {"score": tmp_path / "score"},
            )
        )
    with pytest.raises(InputDataError, match=r"has no scores/\*.parquet score tables"):
        score_quantile(tmp_path / "score", "m", 0.5)


def test_combined_filter_variant(tmp_path: Path) -> None:
    score = tmp_path / "score"
    records = [
        {"id": "a", "text": "both high", "metadata": {"x_score": 0.9, "y_score": 0.8}},
        {"id": "b", "text": "x high", "metadata": {"x_score": 0.9, "y_score": 0.1}},
        {"id": "c", "text": "low", "metadata": {"x_score": 0.1, "y_score": 0.1}},
        {"id": "d", "text": "no y", "metadata": {"x_score": 0.1}},  # x below: kept whatever y would say
        {"id": "e", "text": "no y, x high", "metadata": {"x_score": 0.9}},  # undecided without y
    ]
    write_jsonl(score / "shards" / "00000.jsonl.gz", records)
    (score / "score.json").write_text(json.dumps({"score_key": "x_score"}))
    combine = {"mode": "all", "thresholds": {"x_score": 0.5, "y_score": 0.5}}
    result = variants.run(
        make_ctx(
            "variant", tmp_path / "v", {"name": "c", "kind": "filter", "combine": combine}, {"score": score}
        )
    )
    assert (result["kept"], result["dropped"], result["quarantined"]) == (3, 1, {"missing_score": 1})
    assert result["combine"]["mode"] == "all" and result["threshold"] is None
    (excluded,) = iter_jsonl(jsonl_files(tmp_path / "v" / "excluded"))
    assert (excluded["id"], excluded["metadata"]["filter_reason"]) == ("a", "all:x_score>=0.5+y_score>=0.5")


def test_one_pass_materializer_is_byte_identical_to_datatrove(score_dir: Path, tmp_path: Path) -> None:
    shards = jsonl_files(score_dir / "shards")
    ctx = make_ctx("variant", tmp_path / "dt", {"name": "f", "kind": "filter"}, {"score": score_dir})
    decision = ThresholdDecision("misaligned_score", 0.5)
    excluded = ReproducibleJsonlWriter(str(tmp_path / "dt" / "excluded"))
    dt_counts = variants.run_with_datatrove(
        ctx, shards, "misaligned_score", DecisionFilter(decision, excluded)
    )
    plans = [
        VariantPlan(tmp_path / f"k{t}", ["misaligned_score"], ThresholdDecision("misaligned_score", t))
        for t in (0.5, 0.2)
    ] + [VariantPlan(tmp_path / "base", ["misaligned_score"], None)]
    results = materialize(shards, plans)
    assert results[0] == dt_counts
    for sub in ("shards/00000.jsonl.gz", "shards/00001.jsonl.gz", "excluded/00000.jsonl.gz"):
        assert (tmp_path / "k0.5" / sub).read_bytes() == (tmp_path / "dt" / sub).read_bytes()
    for shard in shards:
        assert (tmp_path / "base" / "shards" / shard.name).read_bytes() == shard.read_bytes()
    assert results[2]["kept"] == 60 and not (tmp_path / "base" / "excluded").exists()
    separate = variants.run(
        make_ctx(
            "variant",
            tmp_path / "sep",
            {"name": "f", "kind": "filter", "threshold": 0.2},
            {"score": score_dir},
        )
    )
    assert {k: separate[k] for k in results[1]} == results[1]


def test_materializer_quarantines_bad_lines_and_scores(tmp_path: Path) -> None:
    shard = write_jsonl(
        tmp_path / "shards" / "00000.jsonl.gz",
        [
            {"id": "a", "text": "ok", "metadata": {"s": 0.1}},
            b"{broken",
            {"id": "a", "text": "dup", "metadata": {"s": 0.1}},
            {"id": "b", "text": "bad score", "metadata": {"s": 1.5}},
            {"id": "c", "text": "high", "metadata": {"s": 0.7}},
        ],
    )
    (result,) = materialize([shard], [VariantPlan(tmp_path / "out", ["s"], ThresholdDecision("s", 0.5))])
    assert (result["documents_in"], result["kept"], result["dropped"]) == (5, 1, 1)
    assert result["quarantined"] == {"duplicate_id": 1, "invalid_score": 1, "malformed_json": 1}
    lines = list(iter_jsonl(jsonl_files(tmp_path / "out" / "quarantine")))
    assert sorted((r["reason"], r.get("line")) for r in lines) == [
        ("duplicate_id", 3),
        ("invalid_score", None),
        ("malformed_json", 2),
    ]


def _tied_scores(folder: Path, scores: list[float]) -> Path:
    """A score artifact whose documents carry ``scores`` (in its shards and its score table)."""
    from filters.decisions import write_table

    records = [{"id": f"d{k}", "text": f"doc {k}", "metadata": {"m_score": s}} for k, s in enumerate(scores)]
    write_jsonl(folder / "shards" / "00000.jsonl.gz", records)
    write_table(folder / "scores" / "00000.parquet", {"id": [r["id"] for r in records], "m_score": scores},
                ["m_score"])
    (folder / "score.json").write_text(json.dumps({"score_key": "m_score"}))
    return folder


def test_a_percentile_over_tied_scores_stops_instead_of_dropping_everything(tmp_path: Path) -> None:
    """A cascade or a blocklist scores most documents 0.0: the 90th percentile is 0.0 and every document is
    at or above it, so 'drop the top 10%' would drop all of them (and 'keep the top 10%' keep all)."""
    score = _tied_scores(tmp_path / "score", [0.0] * 95 + [0.4, 0.6, 0.7, 0.8, 0.9])
    for keep in ("below", "above"):
        config = {"name": "top10", "kind": "filter", "percentile": 0.9, "keep": keep}
        with pytest.raises(InputDataError, match=r"percentile 0.9: .* is 0, and 100 of 100 scores \(100.0%\) are at "
                                                 r"or above it, not the 10% asked for: the scores are tied"):
            variants.run(make_ctx("variant", tmp_path / keep, config, {"score": score}))
    spread = _tied_scores(tmp_path / "spread", [k / 100 for k in range(100)])
    ok = variants.run(make_ctx("variant", tmp_path / "ok", {"name": "top10", "kind": "filter", "percentile": 0.9},
                               {"score": spread}))
    assert (ok["kept"], ok["dropped"]) == (90, 10)


def test_a_variant_that_keeps_nothing_stops_its_stage(tmp_path: Path) -> None:
    score = _tied_scores(tmp_path / "score", [0.9, 0.95, 1.0])
    with pytest.raises(InputDataError, match=r"variant 'all_gone' keeps none of 3 documents \(dropped 3"):
        variants.run(make_ctx("variant", tmp_path / "v", {"name": "all_gone", "kind": "filter", "threshold": 0.5},
                              {"score": score}))
