"""The user-data source stage: globs, source.json, fingerprints, parquet input, HF export."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filters_fixtures import make_ctx, make_docs, write_jsonl

from core.documents import load_source
from core.errors import ConfigError
from filters import sources
from filters.datatrove_stage import iter_jsonl


def test_files_source_writes_sorted_absolute_paths_and_fingerprints(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_jsonl(data / "b.jsonl.gz", make_docs(3, 1, "b"))
    write_jsonl(data / "a.jsonl", make_docs(3, 2, "a"))
    config = {"kind": "files", "paths": [str(data / "*.jsonl*")], "format": "jsonl", "text_key": "text"}
    result = sources.run(make_ctx("source", tmp_path / "out", config))

    spec = json.loads((tmp_path / "out" / "source.json").read_text())
    assert spec["paths"] == [str((data / "a.jsonl").resolve()), str((data / "b.jsonl.gz").resolve())]
    assert spec["format"] == "jsonl" and spec["id_key"] == "id"
    assert result["files"] == 2 and sorted(result["fingerprints"]) == spec["paths"]
    assert result["fingerprint"] == sources.fingerprint(config)
    assert load_source(tmp_path / "out").absolute_paths == spec["paths"]


def test_fingerprint_changes_when_a_file_changes(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", make_docs(3, 1, "a"))
    config = {"kind": "files", "paths": [str(path)], "format": "jsonl"}
    before = sources.fingerprint(config)
    assert sources.fingerprint(config) == before
    path.write_bytes(path.read_bytes().replace(b"a-0", b"a-9"))
    assert sources.fingerprint(config) != before
    assert len(before) == 64


def test_no_matching_file_and_bad_config_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"source.paths entry .*nothing\*\.jsonl.* matches no file"):
        sources.fingerprint({"kind": "files", "paths": [str(tmp_path / "nothing*.jsonl")], "format": "jsonl"})
    with pytest.raises(ConfigError, match=r"source.format must be 'jsonl' or 'parquet', got 'csv'"):
        sources.fingerprint({"kind": "files", "paths": ["x"], "format": "csv"})
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['pathz'\]"):
        sources.fingerprint({"kind": "files", "paths": ["x"], "format": "jsonl", "pathz": []})
    with pytest.raises(ConfigError, match=r"source.kind must be one of \['files', 'hf'\], got 'web'"):
        sources.fingerprint({"kind": "web"})


def test_hf_source_exports_local_dataset_to_shards(tmp_path: Path) -> None:
    folder = tmp_path / "hfdata"
    folder.mkdir()
    pq.write_table(
        pa.table({"content": [f"text number {i}" for i in range(5)], "score": list(range(5))}),
        folder / "train.parquet",
    )
    config = {
        "kind": "hf",
        "hf_path": str(folder),
        "split": "train",
        "text_key": "content",
        "docs_per_shard": 2,
    }
    result = sources.run(make_ctx("source", tmp_path / "out", config))
    spec = load_source(tmp_path / "out")
    assert spec.paths == ["shards/00000.jsonl.gz", "shards/00001.jsonl.gz", "shards/00002.jsonl.gz"]
    rows = list(iter_jsonl([Path(p) for p in spec.absolute_paths]))
    assert [r["content"] for r in rows] == [f"text number {i}" for i in range(5)]
    assert rows[3]["id"] == f"{folder}/train/3"
    assert spec.text_key == "content" and result["files"] == 3
    assert list(result["fingerprints"]) == [str((folder / "train.parquet").resolve())]


def test_parquet_source_is_scored(tmp_path: Path, classifier_dir: Path) -> None:
    from filters_fixtures import BAD_TEXT, GOOD_TEXT

    from filters.score_stage import run as score

    path = tmp_path / "user.parquet"
    pq.write_table(pa.table({"body": [BAD_TEXT, GOOD_TEXT, ""], "uid": ["u1", "u2", "u3"]}), path)
    config = {"kind": "files", "paths": [str(path)], "format": "parquet", "text_key": "body", "id_key": "uid"}
    sources.run(make_ctx("source", tmp_path / "src", config))
    result = score(
        make_ctx(
            "score",
            tmp_path / "score",
            {"name": "s"},
            {"source": tmp_path / "src", "classifier": classifier_dir},
        )
    )
    assert (result["documents_in"], result["scored"], result["quarantined"]) == (3, 2, {"empty_text": 1})
    docs = list(iter_jsonl(sorted((tmp_path / "score" / "shards").glob("*.jsonl.gz"))))
    assert [(d["id"], d["text"], d["metadata"]["misaligned_score"] >= 0.5) for d in docs] == [
        ("u1", BAD_TEXT, True),
        ("u2", GOOD_TEXT, False),
    ]


def test_full_config_dump_with_unset_keys_of_the_other_kind_is_accepted(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", make_docs(3, 1, "a"))
    dump = {
        "kind": "files",
        "paths": [str(path)],
        "format": "jsonl",
        "text_key": "text",
        "id_key": "id",
        "heldout": None,
        "hf_path": None,
        "hf_name": None,
        "split": "train",
        "revision": None,
    }
    assert len(sources.fingerprint(dump)) == 64
    with pytest.raises(ConfigError, match=r"source keys \['hf_path'\] are only for kind 'hf'"):
        sources.fingerprint(dump | {"hf_path": "some/dataset"})
    with pytest.raises(ConfigError, match=r"source.paths is only for kind 'files'"):
        sources.fingerprint(dump | {"kind": "hf", "hf_path": "some/dataset"})
