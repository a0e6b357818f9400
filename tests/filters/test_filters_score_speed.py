"""The score stage's faster paths give the results and bytes of the general ones."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from core.documents import iter_rows
from filters.datatrove_stage import add_count, add_values
from filters.fasttext_model import fasttext_line
from filters.reader import SafeDocumentReader
from filters.score_stage import GROUND_TRUTH_KEYS, summarize_columns, summarize_scores


def test_summarize_columns_equals_summarize_scores() -> None:
    rng = random.Random(0)
    n = 2000
    rows = {"m_score": [rng.random() for _ in range(n)],
            "label": [rng.choice(["aligned", "misaligned", None]) for _ in range(n)],
            "kind": [None] * n}
    records = [{k: rows[k][i] for k in rows} for i in range(n)]
    assert summarize_columns(rows, "m_score", 0.5) == summarize_scores(records, "m_score", 0.5)
    assert set(GROUND_TRUTH_KEYS) == {"label", "kind"}
    assert "flagged_by_kind" not in summarize_columns(rows, "m_score", 0.5)


def test_reader_column_path_equals_row_path(tmp_path: Path) -> None:
    """Parquet documents built column by column equal those built from ``iter_rows``' dicts through the
    adapter: text, id (missing, int, duplicate), metadata columns in order, and every quarantine record."""
    n = 40
    table = pa.table({
        "label": [f"l{i % 3}" for i in range(n)],
        "text": [None if i == 3 else ("  \n" if i == 4 else ("x" * 50 if i == 5 else f"doc {i}")) for i in range(n)],
        "id": [None if i % 7 == 0 else (str(i) if i != 9 else "8") for i in range(n)],
        "score": [i / n for i in range(n)],
    })
    path = tmp_path / "a.parquet"
    pq.write_table(table, path, row_group_size=16)
    reader = SafeDocumentReader([str(path)], str(tmp_path / "q"), file_format="parquet", max_chars=40,
                                batch_size=16)
    columns = list(reader._parquet_records(str(path), "a.parquet"))
    rows = list(reader._row_records(iter_rows(str(path), "parquet", batch_size=16), "a.parquet"))
    assert columns == rows
    assert [r["reason"] for _, r in columns if isinstance(r, dict)] == ["missing_text", "empty_text", "too_long"]
    doc = next(d for _, d in columns if isinstance(d, Document) and d.id == "a.parquet:7")
    assert list(doc.metadata) == ["label", "score"]
    record = {"label": "l", "text": "t", "id": 5, "score": 0.5}  # the reader's own path = datatrove's adapter
    parsed = reader.adapter({**record, "id": "5"}, "a.parquet", 0)
    want = Document(text=parsed["text"], id=parsed["id"], metadata=parsed["metadata"])
    assert reader._to_document(dict(record), "a.parquet", 0) == want


class _Step(PipelineStep):
    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        yield from data or []


def test_batched_stats_equal_per_document_stats() -> None:
    per_doc, batched = _Step(), _Step()
    lengths = [5, 9, 2, 2, 40, 7]
    for value in lengths:
        per_doc.stat_update("documents")
        per_doc.stat_update("doc_len", value=value)
    add_count(batched, "documents", 4)
    add_count(batched, "documents", 2)
    add_values(batched, "doc_len", lengths[:3])
    add_values(batched, "doc_len", lengths[3:])
    assert batched.stats["documents"].to_dict() == per_doc.stats["documents"].to_dict() == 6
    want, got = per_doc.stats["doc_len"].to_dict(), batched.stats["doc_len"].to_dict()
    assert got == {k: (pytest.approx(v) if isinstance(v, float) else v) for k, v in want.items()}


def test_fasttext_line_fast_path_equals_split_join() -> None:
    rng = random.Random(0)
    chars = [" ", "a", "b", "\n", "\t", "\xa0", "\u2028", "\x1c", "\u3000", "\x85", "é", "\x00"]
    for _ in range(20_000):
        text = "".join(rng.choice(chars) for _ in range(rng.randint(0, 8)))
        assert fasttext_line(text) == " ".join(text.split()), repr(text)
