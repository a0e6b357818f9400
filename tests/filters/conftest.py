"""Fixtures for the filter stages: a source folder, a real fastText model and scored shards (per session)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from filters_fixtures import make_ctx, make_docs, write_jsonl

from filters.fasttext_model import train_fasttext


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A source artifact folder like the synthetic generator's: 2 shards, labelled train/heldout."""
    root = tmp_path_factory.mktemp("source")
    write_jsonl(root / "shards" / "00000.jsonl.gz", make_docs(30, 1, "a"))
    write_jsonl(root / "shards" / "00001.jsonl.gz", make_docs(30, 2, "b"))
    write_jsonl(root / "labelled" / "train.jsonl.gz", make_docs(600, 3, "train"))
    write_jsonl(root / "labelled" / "heldout.jsonl.gz", make_docs(90, 4, "heldout"))
    spec = {
        "format": "jsonl",
        "paths": ["shards/00000.jsonl.gz", "shards/00001.jsonl.gz"],
        "text_key": "text",
        "id_key": "id",
        "labelled": {"train": "labelled/train.jsonl.gz", "heldout": "labelled/heldout.jsonl.gz"},
    }
    (root / "source.json").write_text(json.dumps(spec))
    return root


@pytest.fixture(scope="session")
def model_path(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real fastText model trained on the labelled set."""
    return train_fasttext(
        corpus_dir / "labelled" / "train.jsonl.gz", tmp_path_factory.mktemp("model"), seed=0
    )


@pytest.fixture(scope="session")
def classifier_dir(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed classifier artifact trained from the source's labelled set."""
    from filters.classifier import run

    out = tmp_path_factory.mktemp("classifier")
    run(make_ctx("classifier", out, {"name": "misaligned", "kind": "fasttext"}, {"source": corpus_dir}))
    return out


@pytest.fixture(scope="session")
def score_dir(corpus_dir: Path, classifier_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed score artifact over the corpus."""
    from filters.score_stage import run

    out = tmp_path_factory.mktemp("score")
    result = run(make_ctx("score", out, {"name": "s"}, {"source": corpus_dir, "classifier": classifier_dir}))
    (out / "result.json").write_text(json.dumps(result))
    return out


@pytest.fixture(scope="session")
def tiny_transformer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT sequence classifier + tokenizer saved locally (no hub access)."""
    from filters_fixtures import build_tiny_transformer

    return build_tiny_transformer(tmp_path_factory.mktemp("tinybert"))
