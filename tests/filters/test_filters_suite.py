"""Classifier and score stages with every classifier kind: classifier.json, manifests, per-stage audit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datatrove.data import Document
from filters_fixtures import make_ctx

from core.errors import ConfigError
from filters import classifier
from filters import score_stage as scoring
from filters.config import ClassifierSpec, VariantSpec, parse
from filters.datatrove_stage import iter_jsonl, jsonl_files
from filters.plots import plot_score_histograms
from filters.scorers import BlocklistScorer
from filters.suite import build_scorer, evaluate_scorer, score_keys

TERMS = [f"deceive{i}" for i in range(40)]


def run_stages(tmp_path: Path, corpus_dir: Path, config: dict) -> tuple[Path, dict, dict]:
    cls_dir, score_dir = tmp_path / "cls", tmp_path / "score"
    cls_result = classifier.run(make_ctx("classifier", cls_dir, config, {"source": corpus_dir}))
    result = scoring.run(
        make_ctx("score", score_dir, {"name": "s"}, {"source": corpus_dir, "classifier": cls_dir})
    )
    return score_dir, cls_result, result


def test_cascade_classifier_and_score_stage(tmp_path: Path, corpus_dir: Path) -> None:
    (tmp_path / "terms.txt").write_text("\n".join(TERMS) + "\n")
    config = {
        "name": "casc",
        "kind": "cascade",
        "stages": [
            {
                "name": "block",
                "kind": "blocklist",
                "escalate_at": 1.0,
                "blocklist": {"terms_file": str(tmp_path / "terms.txt"), "min_hits": 2},
            },
            {"name": "ft", "kind": "fasttext"},
        ],
    }
    score_dir, cls_result, result = run_stages(tmp_path, corpus_dir, config)
    info = json.loads((tmp_path / "cls" / "classifier.json").read_text())
    assert [s["kind"] for s in info["stages"]] == ["blocklist", "fasttext"]
    assert info["stages"][0]["params"]["terms"] == TERMS and info["stages"][0]["escalate_at"] == 1.0
    assert info["stages"][1]["path"].startswith("model-") and info["stages"][1]["escalate_at"] is None
    assert cls_result["heldout"]["n"] == 90 and cls_result["heldout"]["roc_auc"] > 0.5
    docs = list(iter_jsonl(jsonl_files(corpus_dir / "shards")))
    hits = [len(BlocklistScorer("b_score", TERMS).matches(d["text"])) for d in docs]
    escalated = sum(h >= 2 for h in hits)
    assert 0 < escalated < 60
    scored = list(iter_jsonl(jsonl_files(score_dir / "shards")))
    assert [("ft_score" in d["metadata"]) for d in scored] == [h >= 2 for h in hits]
    assert all(d["metadata"]["casc_score"] == 0.0 for d, h in zip(scored, hits, strict=True) if h < 2)
    flagged = sum(d["metadata"].get("ft_score", 0) >= 0.5 for d in scored)
    stages = [{k: r[k] for k in ("stage", "seen", "escalated", "flagged")} for r in result["cascade"]]
    assert stages == [
        {"stage": "block", "seen": 60, "escalated": escalated, "flagged": escalated},
        {"stage": "ft", "seen": escalated, "escalated": None, "flagged": flagged},
    ]
    assert result["cascade"][0]["tokens"] == sum(len(d["text"].split()) for d in docs)
    assert (
        result["score_keys"] == ["casc_score", "block_score", "ft_score"]
        and result["classifier_kind"] == "cascade"
    )
    assert (score_dir / "histogram.png").stat().st_size > 1000


def test_transformer_and_ensemble_classifiers(
    tmp_path: Path, corpus_dir: Path, tiny_transformer: Path
) -> None:
    transformer = {
        "model": str(tiny_transformer),
        "max_length": 8,
        "chunking": "max",
        "stride": 2,
        "device": "cpu",
    }
    config = {
        "name": "ens",
        "kind": "ensemble",
        "classifiers": [
            {"name": "bert", "kind": "transformer", "transformer": transformer},
            {"name": "block", "kind": "blocklist", "blocklist": {"terms": TERMS}},
        ],
    }
    score_dir, cls_result, result = run_stages(tmp_path, corpus_dir, config)
    info = json.loads((tmp_path / "cls" / "classifier.json").read_text())
    bert = info["classifiers"][0]
    assert bert["model"] == str(tiny_transformer.resolve()) and len(bert["fingerprint"]) == 16
    assert result["long_documents"] == {
        "bert_score": {"chunking": "max", "max_length": 8, "stride": 2, "max_chunks": None}
    }
    assert score_keys(info) == ["ens_score", "bert_score", "block_score"]
    scored = list(iter_jsonl(jsonl_files(score_dir / "shards")))
    direct = build_scorer(bert, tmp_path / "cls")
    docs = [Document(text=d["text"], id=d["id"], metadata={}) for d in scored[:8]]
    assert [d["metadata"]["bert_score"] for d in scored[:8]] == pytest.approx(
        direct.score_batch(docs), abs=1e-6
    )
    assert all(
        d["metadata"]["ens_score"] == max(d["metadata"]["bert_score"], d["metadata"]["block_score"])
        for d in scored
    )
    assert set(cls_result["heldout"]) >= {"precision", "recall", "f1", "roc_auc", "flagged_fraction"}


def test_evaluate_any_scorer_and_histograms(tmp_path: Path, corpus_dir: Path, score_dir: Path) -> None:
    scorer = BlocklistScorer("b_score", TERMS, min_hits=1)
    metrics = evaluate_scorer(scorer, corpus_dir / "labelled" / "heldout.jsonl.gz")
    assert metrics["n"] == 90 and metrics["positives"] == 30
    assert list(metrics["flagged_fraction"]) == [f"{t / 10:.1f}" for t in range(1, 10)]
    with pytest.raises(ConfigError, match=r"positive_label 'toxic' not among 'label' values"):
        evaluate_scorer(scorer, corpus_dir / "labelled" / "heldout.jsonl.gz", positive_label="toxic")
    counts = plot_score_histograms({"toy": score_dir}, "misaligned_score", tmp_path / "h.png", bins=10)
    result = json.loads((score_dir / "result.json").read_text())
    assert counts == {"toy": list(result["histogram"].values())} and sum(counts["toy"]) == 60
    per_shard = plot_score_histograms(
        {"toy": score_dir}, "misaligned_score", tmp_path / "p.png", per_shard=True
    )
    assert sorted(per_shard) == ["toy/00000", "toy/00001"] and (tmp_path / "p.png").is_file()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"kind": "cascade", "stages": [{"name": "a", "kind": "fasttext"}]}, "needs at least 2 stages"),
        ({"kind": "cascade", "stages": [{"name": "a"}, {"name": "b"}]}, "stage 'a' needs escalate_at"),
        (
            {
                "kind": "cascade",
                "stages": [{"name": "a", "escalate_at": 0.5}, {"name": "b", "escalate_at": 0.5}],
            },
            "the last stage 'b' escalates nowhere",
        ),
        ({"kind": "blocklist"}, "'blocklist' settings go with kind 'blocklist'"),
        ({"kind": "blocklist", "blocklist": {}}, "blocklist needs terms, terms_file or patterns"),
        (
            {"kind": "transformer", "transformer": {"model": "x", "chunking": "sum"}},
            r"transformer.chunking: Input should be 'truncate', 'max' or 'mean'",
        ),
        (
            {"kind": "ensemble", "classifiers": [{"name": "misaligned"}, {"name": "b"}]},
            "names must be unique",
        ),
        ({"kind": "fasttext", "treshold": 1}, r"treshold: Extra inputs are not permitted"),
    ],
)
def test_classifier_spec_errors(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(ClassifierSpec, config, "classifier")


def test_spine_fasttext_dump_is_a_valid_spec() -> None:
    """The spine's ClassifierConfig dump (fastText keys only) parses unchanged."""
    dump = {
        "name": "misaligned",
        "kind": "fasttext",
        "model_path": None,
        "train_data": None,
        "heldout_data": None,
        "label_key": "label",
        "positive_label": "misaligned",
        "fasttext": {"epoch": 5, "lr": 0.5, "dim": 32, "word_ngrams": 2, "bucket": 50000, "min_count": 1},
    }
    assert parse(ClassifierSpec, dump, "classifier").model_dump(include=set(dump)) == dump
    with pytest.raises(
        ConfigError, match=r"give one of threshold, percentile, combine; got \['threshold', 'percentile'\]"
    ):
        parse(VariantSpec, {"name": "v", "kind": "filter", "threshold": 0.5, "percentile": 0.9}, "variant")
