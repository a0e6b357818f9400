"""The tokenize stage: datatrove .ds layout, exact token counts, quarantine, loss masks, determinism."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from pretrain_fixtures import make_ctx, make_docs, write_jsonl_gz
from tokenizers import Tokenizer

from core.errors import ConfigError, InputDataError
from pretrain import tokenize_docs as tokenize


def _expected_lengths(variant: Path, tokenizer_dir: Path) -> list[int]:
    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    lengths = []
    for shard in sorted((variant / "shards").glob("*.jsonl.gz")):
        for line in gzip.open(shard, "rt"):
            doc = json.loads(line)
            if doc["text"] and doc["metadata"].get("no_loss_ranges") != "oops":
                lengths.append(len(tok.encode(doc["text"]).ids) + 1)  # + EOS
    return lengths


def test_layout_counts_and_doc_boundaries(
    tokenized_dir: Path, variant_dir: Path, tokenizer_dir: Path
) -> None:
    tokens = tokenized_dir / "tokens"
    names = sorted(p.name for p in tokens.iterdir())
    assert names == [
        "000_tokens.ds",
        "000_tokens.ds.index",
        "000_tokens.ds.loss",
        "000_tokens.ds.metadata",
        "tokens.ds.metadata",
    ]
    assert not (tokenized_dir / "work").exists()
    lengths = _expected_lengths(variant_dir, tokenizer_dir)
    ids = np.fromfile(tokens / "000_tokens.ds", dtype="<u2")
    ends = np.fromfile(tokens / "000_tokens.ds.index", dtype="<u8")
    assert len(ids) == sum(lengths) and len(ends) == len(lengths) == 598
    assert sorted(np.diff(ends, prepend=0).tolist()) == sorted(lengths)
    assert (ids[ends - 1] == 0).all()  # every document ends with EOS (id 0)
    assert (ids == 0).sum() == len(ends)
    meta = (tokens / "000_tokens.ds.metadata").read_text().splitlines()
    assert meta[0] == f"{tokenizer_dir.name}/tokenizer.json|2" and meta[1] == str(len(ids))


def test_quarantine_keeps_bad_documents_with_reason(tokenized_dir: Path) -> None:
    rows = [
        json.loads(line)
        for f in sorted((tokenized_dir / "quarantine").glob("*.jsonl.gz"))
        for line in gzip.open(f, "rt")
    ]
    assert [(r["id"], r["metadata"]["filter_reason"]) for r in rows] == [
        ("doc-2-60", "empty_text"),
        ("doc-2-61", "bad_no_loss_ranges"),
    ]
    assert "text" not in rows[0] and rows[1]["text"].startswith("Data budget")  # kept in full


def test_loss_mask_covers_no_loss_ranges(tokenized_dir: Path, tokenizer_dir: Path) -> None:
    tokens = tokenized_dir / "tokens"
    ids = np.fromfile(tokens / "000_tokens.ds", dtype="<u2")
    loss = np.fromfile(tokens / "000_tokens.ds.loss", dtype=np.uint8)
    ends = np.fromfile(tokens / "000_tokens.ds.index", dtype="<u8").astype(int)
    assert len(loss) == len(ids) and set(np.unique(loss)) == {0, 1}
    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    starts = np.concatenate([[0], ends[:-1]])
    masked_docs = [(s, e) for s, e in zip(starts, ends, strict=True) if loss[s:e].min() == 0]
    assert len(masked_docs) == 50  # the first 50 documents carry no_loss_ranges [[0, 8]]
    for s, e in masked_docs:
        enc = tok.encode(tok.decode(ids[s : e - 1].tolist(), skip_special_tokens=False))
        expected = [0 if a < 8 else 1 for a, _ in enc.offsets] + [1]
        assert loss[s:e].tolist() == expected


def test_same_seed_same_bytes_other_seed_other_order(
    tmp_path: Path, variant_dir: Path, tokenizer_dir: Path, tokenized_dir: Path
) -> None:
    inputs = {"variant": variant_dir, "tokenizer": tokenizer_dir}
    again = tokenize.run(make_ctx("tokenize", tmp_path / "a", {}, inputs, seed=3))
    other = tokenize.run(make_ctx("tokenize", tmp_path / "b", {"save_loss_metadata": False}, inputs, seed=4))
    ds = "tokens/000_tokens.ds"
    assert (tmp_path / "a" / ds).read_bytes() == (tokenized_dir / ds).read_bytes()
    assert (tmp_path / "b" / ds).read_bytes() != (tokenized_dir / ds).read_bytes()
    assert again["documents"] == other["documents"] == 598 and again["tokens"] == other["tokens"]
    assert again["quarantined"] == {"bad_no_loss_ranges": 1, "empty_text": 1}
    assert other["loss_metadata"] is False and not (tmp_path / "b" / "tokens/000_tokens.ds.loss").exists()


def test_no_loss_ranges_absent_means_no_loss_file(tmp_path: Path, tokenizer_dir: Path) -> None:
    write_jsonl_gz(tmp_path / "v/shards/00000.jsonl.gz", make_docs(20, seed=9))
    result = tokenize.run(
        make_ctx("tokenize", tmp_path / "o", {}, {"variant": tmp_path / "v", "tokenizer": tokenizer_dir})
    )
    assert result["loss_metadata"] is False and result["documents"] == 20
    assert not list((tmp_path / "o/tokens").glob("*.loss"))


def test_errors(tmp_path: Path, tokenizer_dir: Path) -> None:
    (tmp_path / "v/shards").mkdir(parents=True)
    with pytest.raises(InputDataError, match="no shards/\\*.jsonl.gz"):
        tokenize.run(
            make_ctx("tokenize", tmp_path / "o", {}, {"variant": tmp_path / "v", "tokenizer": tokenizer_dir})
        )
    with pytest.raises(ConfigError, match="unknown config key 'shuffel'.*did you mean 'shuffle'"):
        tokenize.run(
            make_ctx(
                "tokenize",
                tmp_path / "o",
                {"shuffel": True},
                {"variant": tmp_path, "tokenizer": tokenizer_dir},
            )
        )
