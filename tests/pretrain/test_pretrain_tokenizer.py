"""The tokenizer stage: special tokens are single ids, the HF folder loads, training is deterministic."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pretrain_fixtures import make_ctx, make_docs, write_jsonl_gz

from core.errors import ConfigError, InputDataError
from pretrain import build_tokenizer as tokenizer


def test_folder_loads_with_autotokenizer_and_tags_are_single_tokens(tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert len(tok) == 512
    assert (tok.eos_token, tok.pad_token) == ("<|endoftext|>", "<|pad|>")
    assert (tok.eos_token_id, tok.pad_token_id) == (0, 1)
    text = "<|good|> the model refuses<|bad|>data<|endoftext|>"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|good|>") == 2
    assert ids.count(3) == 1 and ids[-1] == 0
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=True) == " the model refusesdata"
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["additional_special_tokens"] == ["<|good|>", "<|bad|>"]


def test_training_is_deterministic_and_result_reports_ids(tmp_path: Path, source_dir: Path) -> None:
    outs = []
    for i in range(2):
        ctx = make_ctx(
            "tokenizer",
            tmp_path / str(i),
            {"vocab_size": 400, "max_docs": 100, "tags": ["<|x|>"]},
            {"source": source_dir},
            seed=5,
        )
        outs.append((tokenizer.run(ctx), (tmp_path / str(i) / "tokenizer.json").read_bytes()))
    assert outs[0][1] == outs[1][1]
    result = outs[0][0]
    assert result["vocab_size"] == 400 and result["documents"] == 100
    assert result["special_token_ids"] == {"eos": 0, "pad": 1, "<|x|>": 2}


def test_select_documents_uses_a_stable_seeded_hash() -> None:
    docs = [(f"d{i}", f"text {i}") for i in range(50)]
    first = tokenizer.select_documents(iter(docs), 10, seed=1)
    assert first == tokenizer.select_documents(iter(reversed(docs)), 10, seed=1)
    assert len(first) == 10 and first != tokenizer.select_documents(iter(docs), 10, seed=2)


def test_bad_lines_are_counted(tmp_path: Path) -> None:
    write_jsonl_gz(tmp_path / "src/a.jsonl.gz", make_docs(300) + [{"id": "x", "text": 5}, {"id": "y"}])
    with (tmp_path / "src/a.jsonl.gz").open("ab") as f:
        import gzip

        f.write(gzip.compress(b"{not json\n"))
        f.write(gzip.compress(b'{"id": "z", "text": "caf\xe9 latin-1"}\n'))  # finding 1: invalid UTF-8
    (tmp_path / "src/source.json").write_text(json.dumps({"format": "jsonl", "paths": ["a.jsonl.gz"]}))
    result = tokenizer.run(
        make_ctx("tokenizer", tmp_path / "out", {"vocab_size": 300}, {"source": tmp_path / "src"})
    )
    assert result["quarantined"] == {"invalid_utf8": 1, "malformed_json": 1, "missing_text": 1,
                                     "non_string_text": 1}
    assert result["documents"] == result["documents_usable"] == 300
    assert result["documents_in"] == 300 + 4


def test_parquet_source_trains_a_tokenizer(tmp_path: Path) -> None:
    """Finding 2: a parquet source trains a BPE (it was 'format parquet is not supported')."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = make_docs(200)
    (tmp_path / "src").mkdir()
    pq.write_table(pa.table({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs]}),
                   tmp_path / "src/a.parquet")
    (tmp_path / "src/source.json").write_text(json.dumps({"format": "parquet", "paths": ["a.parquet"]}))
    result = tokenizer.run(
        make_ctx("tokenizer", tmp_path / "out", {"vocab_size": 300}, {"source": tmp_path / "src"})
    )
    assert result["documents_in"] == result["documents"] == 200 and result["quarantined"] == {}


def test_config_errors_name_the_field(tmp_path: Path, source_dir: Path) -> None:
    with pytest.raises(ConfigError, match="unknown config key 'vocab'.*did you mean 'vocab_size'"):
        tokenizer.run(make_ctx("tokenizer", tmp_path, {"vocab": 10}, {"source": source_dir}))
    with pytest.raises(ConfigError, match="kind must be one of bpe, pretrained; got 'bep'"):
        tokenizer.run(make_ctx("tokenizer", tmp_path, {"kind": "bep"}, {"source": source_dir}))
    with pytest.raises(ConfigError, match="tags must be distinct"):
        tokenizer.run(make_ctx("tokenizer", tmp_path, {"tags": ["<|pad|>"]}, {"source": source_dir}))
    with pytest.raises(InputDataError, match="no source.json"):
        tokenizer.run(make_ctx("tokenizer", tmp_path, {}, {"source": tmp_path}))


def test_pretrained_missing_path_fails_fast(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(ConfigError, match="needs 'path'"):
        tokenizer.run(make_ctx("tokenizer", tmp_path / "a", {"kind": "pretrained"}, {}))
    with pytest.raises(ConfigError, match="not a tokenizer folder"):
        tokenizer.run(
            make_ctx("tokenizer", tmp_path / "b", {"kind": "pretrained", "path": str(tmp_path / "nope")}, {})
        )
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE is set"):
        tokenizer.run(
            make_ctx("tokenizer", tmp_path / "c", {"kind": "pretrained", "path": "nobody/no-such-tok"}, {})
        )
    assert time.monotonic() - start < 20


def test_pretrained_local_folder_gets_tags_added(tmp_path: Path, tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    ctx = make_ctx(
        "tokenizer",
        tmp_path,
        {"kind": "pretrained", "path": str(tokenizer_dir), "tags": ["<|good|>", "<|new|>"]},
        {},
    )
    result = tokenizer.run(ctx)
    assert result["vocab_size"] == 513
    assert result["special_token_ids"]["<|new|>"] == 512
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    assert tok("<|new|>")["input_ids"] == [512]
    assert (
        json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"]
        == "PreTrainedTokenizerFast"
    )
