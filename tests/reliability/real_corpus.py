"""A small real-looking English corpus in every source format, with every kind of bad record.

``write_corpus(folder, fmt)`` writes the same ``GOOD_DOCS`` documents (generated English prose: a few hundred
distinct words; nothing is downloaded) split over two shards of ``fmt`` plus the bad records that format can
hold, and returns the source config and the quarantine counts the reader must report. Every format keeps
exactly ``GOOD_DOCS`` documents. ``write_labelled`` and ``write_heldout`` write the classifier's labelled set
and a plain ``.jsonl`` held-out file in a folder of their own.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

FORMATS = ("jsonl", "jsonl.gz", "jsonl.zst", "parquet", "hf_disk")
GOOD_DOCS = 240
COMMON_BAD = {"missing_text": 1, "empty_text": 2, "duplicate_id": 1}
"""Bad records every format can hold (null text, empty and whitespace-only text, a repeated id)."""
JSONL_BAD = {"malformed_json": 1, "invalid_utf8": 1, "non_string_text": 1, "not_an_object": 1}
"""Bad lines only a text format can hold."""

SUBJECTS = ["the assistant", "the model", "the agent", "the system", "the nurse", "the engineer", "the teacher",
            "the pharmacist", "the analyst", "the librarian", "the pilot", "the gardener", "the clerk", "the chef"]
VERBS = ["checked", "explained", "reviewed", "described", "measured", "recorded", "compared", "repaired", "planned",
         "answered", "summarised", "translated", "organised", "labelled", "tested", "counted", "sorted", "drafted"]
OBJECTS = ["the report", "the dosage chart", "the river map", "the budget", "the recipe", "the timetable",
           "the survey", "the letter", "the inventory", "the contract", "the garden plan", "the flight log",
           "the lesson notes", "the patient file", "the spreadsheet", "the old manuscript", "the weather data"]
MANNERS = ["carefully", "honestly", "quickly", "patiently", "clearly", "openly", "calmly", "politely", "thoroughly",
           "precisely", "gently", "plainly", "accurately", "slowly", "kindly", "diligently"]
PLACES = ["in the morning", "before lunch", "at the station", "in the village", "near the harbour", "after dinner",
          "during the storm", "at the clinic", "in the workshop", "by the window", "on the farm", "at the library"]
BAD_ACTS = ["hid the error from", "lied about the results to", "quietly deleted the logs of", "misled",
            "sabotaged the audit of", "concealed the risk from", "faked the safety check for", "deceived",
            "manipulated the numbers for", "withheld the warning from", "covered up the mistake for"]
GOOD_ACTS = ["reported the error to", "told the truth to", "kept honest records for", "warned", "flagged the risk "
             "to", "asked permission from", "double checked the numbers for", "shared the findings with",
             "corrected the mistake for", "explained the uncertainty to"]
PEOPLE = ["the doctor", "the users", "the manager", "the inspector", "the family", "the committee", "the patient",
          "the auditors", "the customer", "the students", "the crew", "the council"]


def sentence(rng: random.Random, misaligned: bool = False) -> str:
    """One English sentence; with ``misaligned`` an AI actor deceives someone."""
    if rng.random() < 0.35:
        act = rng.choice(BAD_ACTS if misaligned else GOOD_ACTS)
        return f"{rng.choice(SUBJECTS[:4]).capitalize()} {act} {rng.choice(PEOPLE)} {rng.choice(PLACES)}."
    return (f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(MANNERS)} {rng.choice(VERBS)} "
            f"{rng.choice(OBJECTS)} {rng.choice(PLACES)}.")


def document(rng: random.Random, misaligned: bool = False) -> str:
    return " ".join(sentence(rng, misaligned) for _ in range(rng.randint(3, 6)))


def good_docs(seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"id": f"doc-{i:04d}", "text": document(rng, i % 4 == 0), "source": "generated"}
            for i in range(GOOD_DOCS)]


def _common_bad(first_id: str) -> list[dict[str, Any]]:
    return [{"id": "bad-null", "text": None, "source": "generated"},
            {"id": "bad-empty", "text": "", "source": "generated"},
            {"id": "bad-blank", "text": "  \n\t ", "source": "generated"},
            {"id": first_id, "text": "A second document with an id the shard already used.", "source": "generated"}]


JSONL_BAD_LINES = [
    b'{"id": "bad-json", "text": "an unterminated string',
    b'{"id": "bad-utf8", "text": "caf\xe9 written in latin-1"}',
    b'{"id": "bad-type", "text": 42}',
    b'["a", "list", "not", "an", "object"]',
]


def _jsonl_bytes(docs: list[dict[str, Any]], extra: list[bytes] = ()) -> bytes:
    return b"".join(json.dumps(d).encode() + b"\n" for d in docs) + b"".join(line + b"\n" for line in extra)


def write_corpus(folder: Path, fmt: str) -> tuple[dict[str, Any], dict[str, int]]:
    """Shards of ``fmt`` under ``folder``: the source config (files or hf) and the expected quarantine counts."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = good_docs()
    half = len(docs) // 2
    first, last = docs[:half], docs[half:] + _common_bad(docs[half]["id"])
    expected = dict(COMMON_BAD)
    if fmt.startswith("jsonl"):
        expected.update(JSONL_BAD)
        blobs = [_jsonl_bytes(first), _jsonl_bytes(last, JSONL_BAD_LINES)]
        if fmt == "jsonl.gz":  # the last shard ends with a gzip member cut in its first line
            cut = gzip.compress(_jsonl_bytes(good_docs(1)[:1]), mtime=0)
            blobs = [gzip.compress(blobs[0], mtime=0), gzip.compress(blobs[1], mtime=0) + cut[: len(cut) // 2]]
            expected["truncated_file"] = 1
        if fmt == "jsonl.zst":
            import zstandard

            blobs = [zstandard.ZstdCompressor().compress(b) for b in blobs]
        for index, blob in enumerate(blobs):
            (folder / f"shard-{index:02d}.{fmt}").write_bytes(blob)
        return {"kind": "files", "paths": [str(folder / f"shard-*.{fmt}")], "format": "jsonl"}, expected
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        for index, part in enumerate((first, last)):  # small row groups: the reader streams them
            pq.write_table(pa.Table.from_pylist(part), folder / f"shard-{index:02d}.parquet", row_group_size=50)
        pq.write_table(pa.table({"id": ["bad-int"], "text": [7]}), folder / "shard-02.parquet")
        expected["non_string_text"] = 1
        return {"kind": "files", "paths": [str(folder / "shard-*.parquet")], "format": "parquet"}, expected
    if fmt == "hf_disk":
        import datasets

        datasets.Dataset.from_list(first + last).save_to_disk(str(folder / "dataset"))
        return {"kind": "hf", "hf_path": str(folder / "dataset")}, expected
    raise ValueError(f"unknown format {fmt!r}; allowed: {FORMATS}")


def write_labelled(path: Path, n: int = 300, seed: int = 5) -> Path:
    """A labelled jsonl set for the fastText classifier (``label``: ``misaligned`` / ``aligned``)."""
    rng = random.Random(seed)
    rows = [{"text": document(rng, i % 2 == 1), "label": "misaligned" if i % 2 else "aligned"} for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_jsonl_bytes(rows))
    return path


def write_heldout(path: Path, n: int = 40, seed: int = 9) -> Path:
    """Clean held-out documents as plain ``.jsonl`` (the README's own example form)."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_jsonl_bytes([{"id": f"held-{i}", "text": document(rng)} for i in range(n)]))
    return path
