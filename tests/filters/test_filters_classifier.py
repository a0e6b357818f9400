"""fastText classifier: reproducible training, exact decisions, metrics, and model validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from filters_fixtures import BAD_TEXT, GOOD_TEXT, make_ctx

from core.errors import ConfigError, InputDataError
from filters import classifier, fasttext_model
from filters.metrics import binary_metrics, roc_auc, score_histogram


def test_training_is_reproducible_and_content_hashed(
    corpus_dir: Path, model_path: Path, tmp_path: Path
) -> None:
    again = fasttext_model.train_fasttext(corpus_dir / "labelled" / "train.jsonl.gz", tmp_path, seed=0)
    assert again.name == model_path.name
    assert again.read_bytes() == model_path.read_bytes()
    assert model_path.name.startswith("model-") and len(model_path.stem) == len("model-") + 16
    assert model_path.stat().st_size < 20_000_000  # bucket 50k, dim 32: small


def test_exact_decisions_on_fixed_documents(model_path: Path) -> None:
    model = fasttext_model.load_fasttext(model_path)
    bad, good, bad_multiline = fasttext_model.positive_probabilities(
        model, [BAD_TEXT, GOOD_TEXT, BAD_TEXT.replace(" ", "\n")], "misaligned"
    )
    assert bad > 0.9 and good < 0.1
    assert bad_multiline == pytest.approx(bad)  # newlines are spaces to fastText
    assert fasttext_model.positive_probabilities(model, [BAD_TEXT], "aligned")[0] == pytest.approx(
        1 - bad, abs=1e-4
    )


def test_evaluate_on_heldout(corpus_dir: Path, model_path: Path) -> None:
    metrics = fasttext_model.evaluate(model_path, corpus_dir / "labelled" / "heldout.jsonl.gz")
    assert (metrics["n"], metrics["positives"]) == (90, 30)
    assert metrics["precision"] == metrics["recall"] == metrics["f1"] == metrics["roc_auc"] == 1.0
    assert metrics["flagged_fraction"]["0.5"] == pytest.approx(30 / 90)
    assert list(metrics["flagged_fraction"]) == [
        "0.1",
        "0.2",
        "0.3",
        "0.4",
        "0.5",
        "0.6",
        "0.7",
        "0.8",
        "0.9",
    ]


def test_metrics_by_hand() -> None:
    scores, positives = [0.9, 0.6, 0.4, 0.2], [True, False, True, False]
    m = binary_metrics(scores, positives)
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)
    assert m["roc_auc"] == 0.75
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5
    assert roc_auc([0.1, 0.2], [True, True]) is None
    assert score_histogram([0.0, 0.05, 0.95, 1.0, 0.5]) == {
        "0.0-0.1": 2,
        "0.1-0.2": 0,
        "0.2-0.3": 0,
        "0.3-0.4": 0,
        "0.4-0.5": 0,
        "0.5-0.6": 1,
        "0.6-0.7": 0,
        "0.7-0.8": 0,
        "0.8-0.9": 0,
        "0.9-1.0": 2,
    }


def test_stage_trains_from_source_labelled_set(classifier_dir: Path) -> None:
    info = json.loads((classifier_dir / "classifier.json").read_text())
    assert info == {
        "kind": "fasttext",
        "path": info["path"],
        "labels": ["aligned", "misaligned"],
        "positive_label": "misaligned",
        "score_key": "misaligned_score",
    }
    assert (classifier_dir / info["path"]).is_file()
    assert json.loads((classifier_dir / "metrics.json").read_text())["roc_auc"] == 1.0


def test_stage_adopts_a_given_model(model_path: Path, tmp_path: Path) -> None:
    result = classifier.run(
        make_ctx("classifier", tmp_path / "c", {"name": "tox", "model_path": str(model_path)})
    )
    assert result["path"] == model_path.name and result["score_key"] == "tox_score"
    assert (tmp_path / "c" / model_path.name).read_bytes() == model_path.read_bytes()


def test_non_model_file_is_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "model.bin"
    fake.write_text("I am not a fastText model\n")
    with pytest.raises(InputDataError, match=r"model\.bin' is not a fastText model"):
        classifier.run(make_ctx("classifier", tmp_path / "c", {"name": "x", "model_path": str(fake)}))
    with pytest.raises(InputDataError, match="does not exist"):
        fasttext_model.load_fasttext(tmp_path / "missing.bin")


def test_config_errors(corpus_dir: Path, model_path: Path, tmp_path: Path) -> None:
    train = str(corpus_dir / "labelled" / "train.jsonl.gz")
    with pytest.raises(
        ConfigError, match=r"positive_label 'toxic' not among 'label' values \['aligned', 'misaligned'\]"
    ):
        fasttext_model.train_fasttext(Path(train), tmp_path, positive_label="toxic")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['dims'\]"):
        fasttext_model.train_fasttext(Path(train), tmp_path, params={"dims": 3})
    with pytest.raises(
        ConfigError, match=r"classifier.kind: Input should be .fasttext., .transformer.*got .bert."
    ):
        classifier.run(make_ctx("classifier", tmp_path / "c", {"name": "x", "kind": "bert"}))
    with pytest.raises(ConfigError, match="give model_path or train_data"):
        classifier.run(make_ctx("classifier", tmp_path / "c", {"name": "x"}))


def test_stage_accepts_the_config_dump_with_snake_case_params(corpus_dir: Path, tmp_path: Path) -> None:
    config = {
        "name": "misaligned",
        "kind": "fasttext",
        "model_path": None,
        "train_data": None,
        "heldout_data": None,
        "label_key": "label",
        "positive_label": "misaligned",
        "fasttext": {"epoch": 5, "lr": 0.5, "dim": 16, "word_ngrams": 2, "bucket": 10_000, "min_count": 1},
    }
    result = classifier.run(make_ctx("classifier", tmp_path / "c", config, {"source": corpus_dir}))
    assert result["heldout"]["roc_auc"] == 1.0
    assert result["model_bytes"] < 2_000_000  # dim 16, 10k buckets took effect
