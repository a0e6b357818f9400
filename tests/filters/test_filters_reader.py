"""SafeDocumentReader: every kind of bad input is quarantined with its reason and counted, none is lost."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from filters.datatrove_stage import iter_jsonl
from filters.reader import SafeDocumentReader


def read_all(reader: SafeDocumentReader, world_size: int = 1) -> list:
    docs = []
    for rank in range(world_size):
        docs += list(reader.run(None, rank=rank, world_size=world_size))
    return docs


def quarantined(folder: Path) -> list[dict]:
    return list(iter_jsonl(sorted(folder.glob("*.jsonl.gz"))))


def test_every_bad_jsonl_record_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "ok1", "text": "a good document", "metadata": {"label": "aligned"}}).encode(),
        b'{"id": "broken", "text": "no closing brace"',
        b"",
        b'{"id": "bad-utf8", "text": "caf\xe9"}',
        b'["a", "list"]',
        json.dumps({"id": "no-text"}).encode(),
        json.dumps({"id": "num-text", "text": 42}).encode(),
        json.dumps({"id": "empty", "text": "   \n"}).encode(),
        json.dumps({"id": "long", "text": "x" * 101}).encode(),
        json.dumps({"id": "ok1", "text": "same id again"}).encode(),
        b'{"id": "surrogate", "text": "\\ud800"}',
        json.dumps({"text": "no id here", "source": "web"}).encode(),
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    reader = SafeDocumentReader([str(path)], str(tmp_path / "q"), display_paths=["in.jsonl"], max_chars=100)
    docs = read_all(reader)

    assert [d.id for d in docs] == ["ok1", "in.jsonl:12"]
    assert docs[0].metadata == {"label": "aligned"}  # no file_path added
    assert docs[1].metadata == {"source": "web"}
    records = quarantined(tmp_path / "q")
    assert [(r["line"], r["reason"]) for r in records] == [
        (2, "malformed_json"),
        (3, "blank_line"),
        (4, "invalid_utf8"),
        (5, "not_an_object"),
        (6, "missing_text"),
        (7, "non_string_text"),
        (8, "empty_text"),
        (9, "too_long"),
        (10, "duplicate_id"),
        (11, "invalid_utf8"),
    ]
    assert all(r["source_file"] == "in.jsonl" for r in records)
    assert records[0]["raw"] == '{"id": "broken", "text": "no closing brace"'
    assert records[2]["raw"] == '{"id": "bad-utf8", "text": "caf\ufffd"}'  # decoded with errors="replace"
    stats = reader.stats
    assert stats["records_in"].total == len(lines) == len(docs) + len(records)
    assert stats["quarantined_invalid_utf8"].total == 2
    assert stats["documents"].total == 2


def test_raw_is_truncated_to_10k_chars(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "x", "text": "y" * 20_000}) + "\n")
    read_all(SafeDocumentReader([str(path)], str(tmp_path / "q"), max_chars=1000))
    (record,) = quarantined(tmp_path / "q")
    assert record["reason"] == "too_long" and len(record["raw"]) == 10_000


def test_truncated_gzip_keeps_records_before_the_cut(tmp_path: Path) -> None:
    body = b"".join(
        json.dumps({"id": str(i), "text": f"document number {i} " * 20}).encode() + b"\n" for i in range(200)
    )
    data = gzip.compress(body)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    reader = SafeDocumentReader([str(path)], str(tmp_path / "q"))
    docs = read_all(reader)
    records = quarantined(tmp_path / "q")
    assert [r["reason"] for r in records] == ["truncated_file"]
    assert 0 < len(docs) < 200
    assert [d.id for d in docs] == [str(i) for i in range(len(docs))]
    assert records[0]["line"] == len(docs) + 1
    assert reader.stats["records_in"].total == len(docs) + 1


def test_corrupt_gzip_and_zstd(tmp_path: Path) -> None:
    """Compression is recognised by content: a corrupt gzip stream is one unreadable_file record, a zstd
    stream and a plain jsonl file are read whatever their names say."""
    import zstandard

    corrupt = tmp_path / "a.jsonl.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00this is not a gzip stream\n")
    zst = tmp_path / "b.jsonl"  # zstd content without the .zst suffix
    zst.write_bytes(zstandard.ZstdCompressor().compress(b'{"id": "z", "text": "zstd text"}\n'))
    plain = tmp_path / "c.jsonl.gz"  # plain jsonl named .gz
    plain.write_bytes(b'{"id": "p", "text": "plain text"}\n')
    reader = SafeDocumentReader([str(corrupt), str(zst), str(plain)], str(tmp_path / "q"))
    docs = read_all(reader)
    assert [d.text for d in docs] == ["zstd text", "plain text"]
    assert [r["reason"] for r in quarantined(tmp_path / "q")] == ["unreadable_file"]


def test_parquet_rows_and_missing_text_column(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    pq.write_table(
        pa.table(
            {
                "doc_id": ["p1", "p2", "p3"],
                "content": ["first text", None, "third"],
                "lang": ["en", "en", "fr"],
            }
        ),
        good,
    )
    no_text = tmp_path / "no_text.parquet"
    pq.write_table(pa.table({"doc_id": ["q1"], "body": ["text under another name"]}), no_text)
    reader = SafeDocumentReader(
        [str(good), str(no_text)],
        str(tmp_path / "q"),
        file_format="parquet",
        text_key="content",
        id_key="doc_id",
    )
    docs = read_all(reader, world_size=2)
    assert [(d.id, d.text, d.metadata) for d in docs] == [
        ("p1", "first text", {"lang": "en"}),
        ("p3", "third", {"lang": "fr"}),
    ]
    records = quarantined(tmp_path / "q")
    assert sorted((r["reason"], r["row"]) for r in records) == [
        ("missing_text", 1),
        ("missing_text_column", None),
    ]
    assert reader.stats["records_in"].total == 4


def test_duplicate_ids_are_only_checked_within_a_rank(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps({"id": "same", "text": "one"}) + "\n")
    b.write_text(json.dumps({"id": "same", "text": "two"}) + "\n")
    assert len(read_all(SafeDocumentReader([str(a), str(b)], str(tmp_path / "q1")))) == 1
    assert len(read_all(SafeDocumentReader([str(a), str(b)], str(tmp_path / "q2")), world_size=2)) == 2
