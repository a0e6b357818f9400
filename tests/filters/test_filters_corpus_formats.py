"""Real-corpus format quirks: truncated zstd, a corrupt parquet row group, a UTF-8 BOM, binary parquet text,
ids of documents without one (relative to the corpus folder), a typo'd id_key, ``source.max_chars`` and
duplicate ids across files. Each file is written here, small."""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from filters_fixtures import make_ctx, make_docs, write_jsonl
from pydantic import ValidationError

from core.documents import DEFAULT_MAX_CHARS, DocumentReader, iter_rows, load_source
from core.errors import ConfigError
from filters import sources
from filters.datatrove_stage import iter_jsonl


def _jsonl(records: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def _reasons(path: Path, fmt: str) -> Counter[str | None]:
    return Counter(row.reason for row in iter_rows(path, fmt))


def _read(paths: list[Path], fmt: str, **kwargs: object) -> DocumentReader:
    reader = DocumentReader([str(p) for p in paths], fmt, **kwargs)  # type: ignore[arg-type]
    reader.documents = list(reader)  # type: ignore[attr-defined]
    return reader


def _texts(n: int, words: int = 40) -> list[str]:
    return [" ".join(f"w{i}x{j}" for j in range(words)) for i in range(n)]


# 1. truncated zstd


def test_truncated_zstd_keeps_records_before_the_cut_and_quarantines_the_file(tmp_path: Path) -> None:
    records = [{"text": t, "id": f"z{i}"} for i, t in enumerate(_texts(3000))]
    full = zstandard.ZstdCompressor().compress(_jsonl(records))
    cut = tmp_path / "train.jsonl.zst"
    cut.write_bytes(full[: len(full) // 2])
    reasons = _reasons(cut, "jsonl")
    assert reasons["truncated_file"] == 1
    assert 0 < reasons[None] < len(records)

    reader = _read([cut], "jsonl")
    assert reader.quarantined[-1]["reason"] == "truncated_file"
    assert reader.quarantined[-1]["source_file"] == str(cut)
    assert [d[0] for d in reader.documents] == [f"z{i}" for i in range(len(reader.documents))]  # type: ignore[attr-defined]
    assert reader.counts["records_in"] == reader.counts["documents"] + sum(reader.quarantine_counts.values())


def test_truncated_small_zstd_is_not_a_silent_empty_file(tmp_path: Path) -> None:
    full = zstandard.ZstdCompressor().compress(_jsonl([{"text": t} for t in _texts(40)]))
    cut = tmp_path / "small.jsonl.zst"
    cut.write_bytes(full[: len(full) // 2])
    assert _reasons(cut, "jsonl") == Counter({"truncated_file": 1})


def test_whole_zstd_streamed_and_multi_frame_files_read_completely(tmp_path: Path) -> None:
    cz = zstandard.ZstdCompressor()
    a, b = _jsonl([{"text": t, "id": f"a{i}"} for i, t in enumerate(_texts(500))]), _jsonl([{"text": "b b"}])
    (tmp_path / "frames.jsonl.zst").write_bytes(cz.compress(a) + cz.compress(b))  # `cat a.zst b.zst`
    with open(tmp_path / "stream.jsonl.zst", "wb") as raw, cz.stream_writer(raw) as writer:
        writer.write(a)  # no content size in the frame header, as the zstd CLI writes from a pipe
    assert _reasons(tmp_path / "frames.jsonl.zst", "jsonl") == Counter({None: 501})
    assert _reasons(tmp_path / "stream.jsonl.zst", "jsonl") == Counter({None: 500})
    corrupt = bytearray(cz.compress(a))
    corrupt[len(corrupt) // 2: len(corrupt) // 2 + 64] = bytes(64)
    (tmp_path / "corrupt.jsonl.zst").write_bytes(bytes(corrupt))
    assert {"unreadable_file", "truncated_file"} & set(_reasons(tmp_path / "corrupt.jsonl.zst", "jsonl"))


# 2. a corrupt parquet row group


def _corrupt_parquet(path: Path) -> Path:
    """400 rows in 4 row groups; the last row group's dictionary page zeroed (footer intact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"text": _texts(400), "id": [f"k{i}" for i in range(400)]})
    pq.write_table(table, path, row_group_size=100, compression="snappy")
    column = pq.ParquetFile(path).metadata.row_group(3).column(0)
    data = bytearray(path.read_bytes())
    start = column.dictionary_page_offset or column.data_page_offset
    data[start + 100: start + 4000] = bytes(3900)
    path.write_bytes(bytes(data))
    with pytest.raises(OSError):  # the premise: pyarrow cannot read the last row group
        pq.read_table(path)
    return path


def test_corrupt_row_group_keeps_other_row_groups_and_is_quarantined(tmp_path: Path) -> None:
    path = _corrupt_parquet(tmp_path / "part-00000.parquet")
    reader = _read([path], "parquet")
    assert reader.counts["documents"] == 300
    (record,) = reader.quarantined
    assert record["reason"] == "unreadable_row_group" and record["source_file"] == str(path)
    assert record["row"] == 300 and "row group 3" in record["raw"]
    assert reader.counts["records_in"] == 301


def test_plan_samples_a_corrupt_row_group_without_crashing(tmp_path: Path) -> None:
    from propensity.preflight import _check_shards

    _corrupt_parquet(tmp_path / "data" / "part-00000.parquet")
    pq.write_table(pa.table({"text": _texts(3), "id": ["a", "b", "c"]}), tmp_path / "data" / "part-00001.parquet")
    # the first SAMPLE_ROWS rows are in good row groups; a file whose first rows are corrupt is still no crash
    assert len(_check_shards([str(tmp_path / "data" / "*.parquet")], "parquet", "text")) == 2
    table = pa.table({"text": _texts(20), "id": [str(i) for i in range(20)]})
    pq.write_table(table, tmp_path / "bad.parquet", row_group_size=10, compression="snappy")
    column = pq.ParquetFile(tmp_path / "bad.parquet").metadata.row_group(0).column(0)
    data = bytearray((tmp_path / "bad.parquet").read_bytes())
    start = column.dictionary_page_offset or column.data_page_offset
    data[start + 20: start + 300] = bytes(280)
    (tmp_path / "bad.parquet").write_bytes(bytes(data))
    assert _reasons(tmp_path / "bad.parquet", "parquet")["unreadable_row_group"] >= 1
    _check_shards([str(tmp_path / "bad.parquet")], "parquet", "text")


def test_score_stage_reads_past_a_corrupt_row_group(tmp_path: Path, classifier_dir: Path) -> None:
    from filters.score_stage import run

    data = tmp_path / "data"
    _corrupt_parquet(data / "part-00000.parquet")
    pq.write_table(pa.table({"text": _texts(10), "id": [f"g{i}" for i in range(10)]}), data / "part-00001.parquet")
    sources.run(make_ctx("source", tmp_path / "src", {"kind": "files", "paths": [str(data / "*.parquet")],
                                                      "format": "parquet"}))
    result = run(make_ctx("score", tmp_path / "score", {"name": "s", "plot": False},
                          {"source": tmp_path / "src", "classifier": classifier_dir}))
    assert result["scored"] == 310 and result["quarantined"] == {"unreadable_row_group": 1}
    (record,) = list(iter_jsonl(sorted((tmp_path / "score" / "quarantine").glob("*.jsonl.gz"))))
    assert record["source_file"] == "part-00000.parquet" and record["row"] == 300


# 3. a UTF-8 byte order mark


@pytest.mark.parametrize("name", ["c4.json", "c4.jsonl.gz", "c4.jsonl.zst"])
def test_leading_bom_is_skipped(tmp_path: Path, name: str) -> None:
    body = b"\xef\xbb\xbf" + _jsonl([{"text": t, "url": f"u{i}"} for i, t in enumerate(_texts(3))]).replace(
        b"\n", b"\r\n")
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(body, mtime=0))
    elif name.endswith(".zst"):
        path.write_bytes(zstandard.ZstdCompressor().compress(body))
    else:
        path.write_bytes(body)
    assert _reasons(path, "jsonl") == Counter({None: 3})


def test_bom_later_in_a_file_is_still_malformed(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(_jsonl([{"text": "a b"}]) + b"\xef\xbb\xbf" + _jsonl([{"text": "c d"}]))
    assert _reasons(path, "jsonl") == Counter({None: 1, "malformed_json": 1})


# 4. binary parquet text


def test_binary_parquet_text_is_decoded_and_invalid_utf8_is_quarantined(tmp_path: Path) -> None:
    texts = [t.encode() for t in _texts(4)] + [b"bad \xff\xfe bytes", "caf\u00e9 \u2603".encode()]
    for kind in (pa.binary(), pa.large_binary()):
        path = tmp_path / f"{kind}.parquet"
        pq.write_table(pa.table({"text": pa.array(texts, kind), "id": [f"b{i}" for i in range(6)]}), path)
        reader = _read([path], "parquet")
        assert [d[1] for d in reader.documents] == [t.decode() for i, t in enumerate(texts) if i != 4]  # type: ignore[attr-defined]
        assert [(q["row"], q["reason"]) for q in reader.quarantined] == [(4, "invalid_utf8")]


def test_score_stage_reader_decodes_binary_text(tmp_path: Path) -> None:
    from filters.reader import SafeDocumentReader

    path = tmp_path / "c.parquet"
    texts = [t.encode() for t in _texts(3)] + [b"\xff\xfe"]
    pq.write_table(pa.table({"text": pa.array(texts, pa.binary()), "id": ["a", "b", "c", "d"]}), path)
    reader = SafeDocumentReader([str(path)], str(tmp_path / "q"), file_format="parquet")
    docs = list(reader.run())
    assert [d.text for d in docs] == [t.decode() for t in texts[:3]]
    (record,) = list(iter_jsonl(sorted((tmp_path / "q").glob("*.jsonl.gz"))))
    assert record["reason"] == "invalid_utf8" and record["row"] == 3


# 5. ids of documents without one


def _c4(folder: Path) -> Path:
    write_jsonl(folder / "c4-train.00005-of-01024.json.gz", [{"text": t, "url": f"u{i}"} for i, t in
                                                            enumerate(_texts(5))])
    write_jsonl(folder / "sub" / "c4-train.00006-of-01024.json.gz", [{"text": "x y", "url": "v"}])
    return folder


def test_fallback_ids_are_relative_to_the_corpus_folder_and_survive_a_move(tmp_path: Path) -> None:
    ids = []
    for where in ("here", "there/deeper"):
        corpus = _c4(tmp_path / where / "c4")
        out = tmp_path / where / "src"
        sources.run(make_ctx("source", out, {"kind": "files", "paths": [str(corpus / "**" / "*.json.gz")],
                                             "format": "jsonl"}))
        spec = load_source(out)
        assert spec.root == str(corpus.resolve())
        ids.append([doc_id for doc_id, _, _ in spec.reader()])
    assert ids[0] == ids[1]
    assert ids[0][0] == "c4-train.00005-of-01024.json.gz:1"
    assert ids[0][-1] == "sub/c4-train.00006-of-01024.json.gz:1"


def test_fallback_ids_of_a_source_json_without_root_use_the_common_folder(tmp_path: Path) -> None:
    corpus = _c4(tmp_path / "c4")
    paths = [str(corpus / "c4-train.00005-of-01024.json.gz")]
    (tmp_path / "source.json").write_text(json.dumps({"format": "jsonl", "paths": paths}))
    assert next(iter(load_source(tmp_path).reader()))[0] == "c4-train.00005-of-01024.json.gz:1"


def test_score_stage_fallback_ids_do_not_name_the_absolute_path(tmp_path: Path, classifier_dir: Path) -> None:
    from filters.score_stage import run

    corpus = _c4(tmp_path / "c4")
    sources.run(make_ctx("source", tmp_path / "src", {"kind": "files", "paths": [str(corpus / "*.json.gz")],
                                                      "format": "jsonl"}))
    run(make_ctx("score", tmp_path / "score", {"name": "s", "plot": False},
                 {"source": tmp_path / "src", "classifier": classifier_dir}))
    docs = list(iter_jsonl(sorted((tmp_path / "score" / "shards").glob("*.jsonl.gz"))))
    assert [d["id"] for d in docs] == [f"c4-train.00005-of-01024.json.gz:{i}" for i in range(1, 6)]


def test_typo_id_key_is_refused_naming_the_key_and_the_fields(tmp_path: Path) -> None:
    corpus = _c4(tmp_path / "c4")
    config = {"kind": "files", "paths": [str(corpus / "*.json.gz")], "format": "jsonl", "id_key": "doc_id"}
    with pytest.raises(ConfigError, match=r"source.id_key 'doc_id' is in none of .*fields seen: \['text', 'url'\]"):
        sources.fingerprint(config)
    with pytest.raises(ConfigError, match="source.id_key 'doc_id'"):
        sources.run(make_ctx("source", tmp_path / "src", config))
    sources.fingerprint(config | {"id_key": "url"})  # present: fine
    sources.fingerprint({k: v for k, v in config.items() if k != "id_key"})  # default id absent: fallback ids


def test_plan_graph_refuses_a_typo_id_key(tmp_path: Path) -> None:
    from propensity.config import SourceConfig
    from propensity.graph import source_spec

    corpus = _c4(tmp_path / "c4")

    class Cfg:
        source = SourceConfig(kind="files", paths=[str(corpus / "*.json.gz")], id_key="docid")

    with pytest.raises(ConfigError, match="source.id_key 'docid'"):
        source_spec(Cfg())  # type: ignore[arg-type]


# 6. source.max_chars


def test_max_chars_setting_is_validated_passed_through_and_keeps_default_keys(tmp_path: Path) -> None:
    from propensity.config import SourceConfig
    from propensity.graph import source_spec

    corpus = tmp_path / "c"
    write_jsonl(corpus / "a.jsonl", [{"text": "x" * 50, "id": "long"}, {"text": "short text", "id": "short"}])
    paths = [str(corpus / "*.jsonl")]
    with pytest.raises(ValidationError, match="max_chars"):
        SourceConfig(kind="files", paths=paths, max_chars=0)
    with pytest.raises(ValidationError, match="max_chars"):
        SourceConfig(kind="files", paths=paths, max_chars="10")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="source.max_chars must be an integer >= 1"):
        sources.fingerprint({"kind": "files", "paths": paths, "format": "jsonl", "max_chars": 0})

    class Cfg:
        source = SourceConfig(kind="files", paths=paths)

    default = source_spec(Cfg())  # type: ignore[arg-type]
    assert "max_chars" not in default.config
    Cfg.source = SourceConfig(kind="files", paths=paths, max_chars=DEFAULT_MAX_CHARS)
    assert source_spec(Cfg()).key == default.key  # type: ignore[arg-type]
    Cfg.source = SourceConfig(kind="files", paths=paths, max_chars=20)
    small = source_spec(Cfg())  # type: ignore[arg-type]
    assert small.config["max_chars"] == 20 and small.key != default.key

    sources.run(make_ctx("source", tmp_path / "src", small.config))
    spec = load_source(tmp_path / "src")
    assert spec.max_chars == 20
    reader = spec.reader()
    assert [d[0] for d in reader] == ["short"] and reader.quarantine_counts == {"too_long": 1}


def test_score_stage_uses_the_source_max_chars(tmp_path: Path, classifier_dir: Path) -> None:
    from filters.score_stage import run

    corpus = tmp_path / "c"
    docs = make_docs(6, 1, "a")
    longest = max(len(d["text"]) for d in docs)
    write_jsonl(corpus / "a.jsonl", [*docs, {"text": "y" * (longest + 1), "id": "long"}])
    config = {"kind": "files", "paths": [str(corpus / "*.jsonl")], "format": "jsonl", "max_chars": longest}
    sources.run(make_ctx("source", tmp_path / "src", config))
    result = run(make_ctx("score", tmp_path / "score", {"name": "s", "plot": False},
                          {"source": tmp_path / "src", "classifier": classifier_dir}))
    assert result["quarantined"] == {"too_long": 1} and result["scored"] == 6


# 7. duplicate ids across files


def test_duplicate_ids_across_files_are_counted_and_kept(tmp_path: Path, classifier_dir: Path) -> None:
    from filters.score_stage import run

    corpus = tmp_path / "c"
    docs = make_docs(6, 1, "a")
    write_jsonl(corpus / "a.jsonl", docs)
    write_jsonl(corpus / "b.jsonl", docs[:2] + make_docs(3, 2, "b"))
    shutil.copy(corpus / "a.jsonl", corpus / "c.jsonl")
    sources.run(make_ctx("source", tmp_path / "src", {"kind": "files", "paths": [str(corpus / "*.jsonl")],
                                                      "format": "jsonl"}))
    result = run(make_ctx("score", tmp_path / "score", {"name": "s", "plot": False},
                          {"source": tmp_path / "src", "classifier": classifier_dir}))
    assert result["scored"] == 6 + 5 + 6 and result["quarantined"] == {}
    assert result["duplicate_ids_across_files"] == 2 + 6
