"""Fixtures for the conditional-tag tests: a source folder, a real fastText classifier and scored shards."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from ct_fixtures import BAD_SENTENCE, GOOD_SENTENCE, TAGS, labelled, make_ctx, make_docs, write_jsonl


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A source artifact: 2 shards of 30 documents (one starts with a fixed text), labelled sets."""
    root = tmp_path_factory.mktemp("source")
    fixed = {"id": "fixed", "text": f"{GOOD_SENTENCE} {BAD_SENTENCE} {GOOD_SENTENCE}", "metadata": {}}
    write_jsonl(root / "shards" / "00000.jsonl.gz", [fixed, *make_docs(29, 1, "a")])
    write_jsonl(root / "shards" / "00001.jsonl.gz", make_docs(30, 2, "b"))
    write_jsonl(root / "labelled" / "train.jsonl.gz", labelled(600, 3))
    write_jsonl(root / "labelled" / "heldout.jsonl.gz", labelled(90, 4))
    spec = {
        "format": "jsonl",
        "paths": ["shards/00000.jsonl.gz", "shards/00001.jsonl.gz"],
        "labelled": {"train": "labelled/train.jsonl.gz", "heldout": "labelled/heldout.jsonl.gz"},
    }
    (root / "source.json").write_text(json.dumps(spec))
    return root


@pytest.fixture(scope="session")
def classifier_dir(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier artifact (fastText) trained on the labelled sentences."""
    from filters.classifier import run

    out = tmp_path_factory.mktemp("classifier")
    config = {"name": "misaligned", "kind": "fasttext", "fasttext": {"epoch": 10}}
    run(make_ctx(out, config, {"source": corpus_dir}, "classifier"))
    return out


@pytest.fixture(scope="session")
def score_dir(corpus_dir: Path, classifier_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A score artifact over the corpus, plus one document whose score is broken (to be quarantined)."""
    from filters.score_stage import run

    out = tmp_path_factory.mktemp("score")
    run(make_ctx(out, {"name": "s"}, {"source": corpus_dir, "classifier": classifier_dir}, "score"))
    shard = out / "shards" / "00001.jsonl.gz"
    lines = gzip.decompress(shard.read_bytes()).splitlines()
    lines.append(
        json.dumps({"id": "broken", "text": "No score here.", "metadata": {"misaligned_score": "x"}}).encode()
    )
    write_jsonl(shard, lines)
    return out


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small byte-level BPE tokenizer folder (pretrain.build_tokenizer helpers), tags as special tokens."""
    from pretrain.build_tokenizer import EOS_TOKEN, PAD_TOKEN, train_bpe, write_hf_folder

    texts = [d["text"] for d in make_docs(300, 9, "tok")] + [GOOD_SENTENCE, BAD_SENTENCE]
    out = tmp_path_factory.mktemp("tokenizer")
    write_hf_folder(train_bpe(texts, 600, [EOS_TOKEN, PAD_TOKEN, *TAGS]), out, EOS_TOKEN, PAD_TOKEN, TAGS)
    return out
