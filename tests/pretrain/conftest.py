"""Fixtures for the pretrain tests: a tiny source, a tokenizer, a variant and its tokens (built once)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pretrain_fixtures import make_ctx, make_docs, write_jsonl_gz


@pytest.fixture(scope="session")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A source folder with two shards (400 docs) and a source.json."""
    root = tmp_path_factory.mktemp("source")
    docs = make_docs(400, seed=1)
    write_jsonl_gz(root / "shards/00000.jsonl.gz", docs[:200])
    write_jsonl_gz(root / "shards/00001.jsonl.gz", docs[200:])
    spec = {
        "format": "jsonl",
        "paths": ["shards/00000.jsonl.gz", "shards/00001.jsonl.gz"],
        "text_key": "text",
        "id_key": "id",
    }
    (root / "source.json").write_text(json.dumps(spec))
    return root


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, source_dir: Path) -> Path:
    """A BPE tokenizer (vocab 512) trained by the tokenizer stage."""
    from pretrain import build_tokenizer as tokenizer

    out = tmp_path_factory.mktemp("tokenizer")
    tokenizer.run(make_ctx("tokenizer", out, {"vocab_size": 512, "max_docs": 300}, {"source": source_dir}))
    return out


@pytest.fixture(scope="session")
def variant_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A variant folder: 3 shards, 600 docs, some tagged, some with no_loss_ranges, one empty."""
    root = tmp_path_factory.mktemp("variant")
    docs = make_docs(600, seed=2, tag_every=5)
    for doc in docs[:50]:
        doc["metadata"]["no_loss_ranges"] = [[0, 8]]
    docs[60]["text"] = ""
    docs[61]["metadata"]["no_loss_ranges"] = "oops"
    for shard in range(3):
        write_jsonl_gz(root / f"shards/{shard:05d}.jsonl.gz", docs[shard * 200 : (shard + 1) * 200])
    return root


@pytest.fixture(scope="session")
def tokenized_dir(tmp_path_factory: pytest.TempPathFactory, variant_dir: Path, tokenizer_dir: Path) -> Path:
    """The tokenize stage's output for ``variant_dir``."""
    from pretrain import tokenize_docs as tokenize

    out = tmp_path_factory.mktemp("tokenize")
    tokenize.run(make_ctx("tokenize", out, {}, {"variant": variant_dir, "tokenizer": tokenizer_dir}, seed=3))
    return out


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> object:
    """Tiny models train ~5x faster on one thread when other test processes share the 2 cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
