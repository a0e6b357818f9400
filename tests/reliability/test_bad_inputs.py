"""A bad-input corpus, written by the tests, through the real source -> classifier -> score -> variant path.

Every bad record is quarantined with its exact reason and counted (``documents_in == kept + dropped +
quarantined``); every unusable file or model is a clear error naming it. Nothing disappears silently.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reliability_helpers import RunOutcome, crash_resume, write_config

from core.errors import StageError
from core.store import Store
from filters.fasttext_model import train_fasttext
from propensity.config import load_config
from propensity.graph import build_graph

CR = crash_resume()
WORDS = [f"w{i:03d}x" for i in range(400)]
"""Distinct words for fastText (it needs a few hundred); the first half is 'misaligned' vocabulary."""
BIG = 10 * 1024 * 1024


def _text(rng: random.Random, bad: bool, n: int = 25) -> str:
    pool = WORDS[:200] if bad else WORDS[200:]
    return " ".join(rng.choice(pool) for _ in range(n))


def _docs(prefix: str, n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"id": f"{prefix}{i}", "text": _text(rng, i % 3 == 0)} for i in range(n)]


def _jsonl(docs: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(d).encode() + b"\n" for d in docs)


@pytest.fixture(scope="module")
def fasttext_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fasttext")
    rng = random.Random(7)
    rows = [
        {"text": _text(rng, i % 2 == 1), "label": "misaligned" if i % 2 else "aligned"} for i in range(300)
    ]
    (folder / "labelled.jsonl").write_bytes(_jsonl(rows))
    return train_fasttext(folder / "labelled.jsonl", folder, params={"epoch": 3})


BAD_LINES: list[tuple[bytes, str | None]] = [
    (b'{"id": "b0", "text": "a fine document w201x w202x"}', None),
    (b'{"id": "b1", "text": "unterminated', "malformed_json"),
    (b'["a", "list"]', "not_an_object"),
    (b'{"id": "b3"}', "missing_text"),
    (b'{"id": "b4", "text": null}', "missing_text"),
    (b'{"id": "b5", "text": 42}', "non_string_text"),
    (b'{"id": "b6", "text": {"nested": "w201x"}}', "non_string_text"),
    (b'{"id": "b7", "text": "   \\n\\t "}', "empty_text"),
    (b'{"id": "b8", "text": ""}', "empty_text"),
    (b"", "blank_line"),
    (b'{"id": "b10", "text": "caf\xe9 in latin-1"}', "invalid_utf8"),
    (b'{"id": "b0", "text": "same id as line 1"}', "duplicate_id"),
    (json.dumps({"id": "b12", "text": "w201x " * (BIG // 6)}).encode(), "too_long"),
    (b'{"id": "b13", "text": "lone surrogate \\ud800 here"}', "invalid_utf8"),
    ('{"id": "b14", "text": "unicode is fine: caf\u00e9 \U0001f389 w203x"}'.encode(), None),
    (b'{"text": "no id: the reader makes one from file and line"}', None),
    (b'{"id": 17, "text": "a numeric id becomes a string"}', None),
]


@pytest.fixture(scope="module")
def jsonl_run(tmp_path_factory: pytest.TempPathFactory, fasttext_model: Path) -> dict[str, Any]:
    """Score and filter a jsonl corpus of good, bad, truncated, corrupt and empty files."""
    root = tmp_path_factory.mktemp("bad-jsonl")
    data = root / "data"
    data.mkdir()
    (data / "a_good.jsonl").write_bytes(_jsonl(_docs("g", 40, 1)))
    (data / "b_bad.jsonl").write_bytes(b"\n".join(line for line, _ in BAD_LINES) + b"\n")
    whole = gzip.compress(_jsonl(_docs("t", 300, 2)), mtime=0)
    (data / "c_truncated.jsonl.gz").write_bytes(whole[: len(whole) * 6 // 10])
    (data / "d_not_gzip.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00 a gzip header, then not gzip at all\n")
    (data / "e_empty.jsonl").write_bytes(b"")
    return _score_and_filter(
        root, {"kind": "files", "paths": [str(data / "*")], "format": "jsonl"}, fasttext_model
    )


def _score_and_filter(root: Path, source: dict[str, Any], model: Path) -> dict[str, Any]:
    config = write_config(
        root / "config.yaml",
        {
            "source": source,
            "classifier": {"name": "misaligned", "model_path": str(model)},
            "variants": [{"name": "filtered", "kind": "filter", "threshold": 0.5}],
        },
    )
    cfg = load_config(config, [f"store={root / 'store'}"])
    specs = {s.stage: s for s in build_graph(cfg) if s.stage in ("score", "variant")}
    CR.build_reference(cfg, list(specs.values()))
    store = Store(cfg.store)
    return {stage: store.path(spec.key) for stage, spec in specs.items()} | {"store": store.root}


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())["result"]


def _records(folder: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            out += [json.loads(line) for line in handle]
    return out


def test_jsonl_reasons_and_counts_are_exact(jsonl_run: dict[str, Any]) -> None:
    score = _manifest(jsonl_run["score"])
    expected = {"truncated_file": 1, "unreadable_file": 1}
    for _, reason in BAD_LINES:
        if reason:
            expected[reason] = expected.get(reason, 0) + 1
    assert score["quarantined"] == dict(sorted(expected.items()))
    kept_truncated = [d for d in _records(jsonl_run["score"] / "shards") if d["id"].startswith("t")]
    assert 0 < len(kept_truncated) < 300, "records before the cut are kept, the rest counted as one record"
    assert [d["id"] for d in kept_truncated] == [f"t{i}" for i in range(len(kept_truncated))]
    good = 40 + sum(reason is None for _, reason in BAD_LINES) + len(kept_truncated)
    assert score["scored"] == good
    assert score["documents_in"] == good + sum(expected.values())


def test_every_bad_line_is_quarantined_at_its_position(jsonl_run: dict[str, Any]) -> None:
    records = _records(jsonl_run["score"] / "quarantine")
    by_line = {r["line"]: r["reason"] for r in records if r["source_file"].endswith("b_bad.jsonl")}
    assert by_line == {i: reason for i, (_, reason) in enumerate(BAD_LINES, 1) if reason}
    too_long = next(r for r in records if r["reason"] == "too_long")
    assert too_long["raw"].startswith('{"id": "b12"') and len(too_long["raw"]) < BIG, "raw is kept, capped"
    files = {r["reason"]: Path(r["source_file"]).name for r in records if "file" in r["reason"]}
    assert files == {"truncated_file": "c_truncated.jsonl.gz", "unreadable_file": "d_not_gzip.jsonl.gz"}


def test_kept_documents_keep_ids_and_text(jsonl_run: dict[str, Any]) -> None:
    docs = {d["id"]: d for d in _records(jsonl_run["score"] / "shards")}
    assert docs["b14"]["text"] == "unicode is fine: caf\u00e9 \U0001f389 w203x"
    assert docs["17"]["text"] == "a numeric id becomes a string"
    assert any(i.endswith("b_bad.jsonl:16") for i in docs), sorted(docs)[:5]
    assert all(0.0 <= d["metadata"]["misaligned_score"] <= 1.0 for d in docs.values())


def test_variant_counts_reconcile(jsonl_run: dict[str, Any]) -> None:
    variant = _manifest(jsonl_run["variant"])
    scored = _manifest(jsonl_run["score"])["scored"]
    assert variant["documents_in"] == scored
    assert variant["documents_in"] == variant["kept"] + variant["dropped"] + sum(
        variant["quarantined"].values()
    )
    assert variant["kept"] > 0 and variant["dropped"] > 0, "the classifier must separate the two vocabularies"
    excluded = _records(jsonl_run["variant"] / "excluded")
    assert len(excluded) == variant["dropped"] and all(d["metadata"]["filter_reason"] for d in excluded)


def _parquet(path: Path, columns: dict[str, list[Any]]) -> None:
    pq.write_table(pa.table(columns), path)


@pytest.fixture(scope="module")
def parquet_run(tmp_path_factory: pytest.TempPathFactory, fasttext_model: Path) -> dict[str, Any]:
    """Parquet files with different schemas, a file without the text column, a corrupt and a cut file."""
    root = tmp_path_factory.mktemp("bad-parquet")
    data = root / "data"
    data.mkdir()
    rng = random.Random(3)
    texts = [_text(rng, i % 2 == 0) for i in range(10)]
    _parquet(
        data / "a.parquet",
        {"id": [f"a{i}" for i in range(10)], "text": [*texts[:8], None, ""], "lang": ["en"] * 10},
    )
    _parquet(data / "b.parquet", {"id": [1, 2, 3, 3], "text": texts[:4], "quality": [0.1, 0.2, 0.3, 0.4]})
    _parquet(data / "c.parquet", {"id": ["c0"], "body": ["no text column here"]})
    _parquet(data / "d.parquet", {"id": ["d0", "d1"], "text": [5, 6]})
    (data / "e.parquet").write_bytes(b"PAR1 but not really a parquet file")
    _parquet(data / "f.parquet", {"id": [f"f{i}" for i in range(10)], "text": texts})
    whole = (data / "f.parquet").read_bytes()
    (data / "f.parquet").write_bytes(whole[: len(whole) // 2])
    return _score_and_filter(
        root, {"kind": "files", "paths": [str(data / "*.parquet")], "format": "parquet"}, fasttext_model
    )


def test_parquet_mixed_schemas(parquet_run: dict[str, Any]) -> None:
    score = _manifest(parquet_run["score"])
    assert score["quarantined"] == {
        "duplicate_id": 1,
        "empty_text": 1,
        "missing_text": 1,
        "missing_text_column": 1,
        "non_string_text": 2,
        "unreadable_file": 2,
    }
    docs = {d["id"]: d for d in _records(parquet_run["score"] / "shards")}
    assert set(docs) == {f"a{i}" for i in range(8)} | {"1", "2", "3"}
    assert docs["a0"]["metadata"]["lang"] == "en" and docs["1"]["metadata"]["quality"] == 0.1
    assert score["documents_in"] == len(docs) + sum(score["quarantined"].values())
    variant = _manifest(parquet_run["variant"])
    assert variant["documents_in"] == variant["kept"] + variant["dropped"] + sum(
        variant["quarantined"].values()
    )


def _stage_outcome(root: Path, changes: dict[str, Any], stage: str) -> str | None:
    """Run the config's stages up to ``stage``; the StageError message, or None when they all succeed."""
    data = root / "data.jsonl"
    data.write_bytes(_jsonl(_docs("x", 20, 4)))
    config = write_config(
        root / "config.yaml", {"source": {"kind": "files", "paths": [str(data)]}, **changes}
    )
    cfg = load_config(config, [f"store={root / 'store'}"])
    try:
        CR.build_reference(cfg, [s for s in build_graph(cfg) if s.stage == stage])
    except StageError as err:
        return str(err)
    return None


def _stage_error(root: Path, changes: dict[str, Any], stage: str) -> str:
    msg = _stage_outcome(root, changes, stage)
    assert msg is not None, f"the {stage} stage must fail"
    return msg


def test_tokenizer_path_that_does_not_exist(tmp_path: Path) -> None:
    """Caught when the config loads, before any stage runs."""
    from core.errors import ConfigError
    from propensity.config import load_config

    missing = tmp_path / "no-tokenizer"
    config = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
    with pytest.raises(ConfigError, match=r"tokenizer\.path: .* is not a tokenizer folder"):
        load_config(config, [f"tokenizer={{kind: pretrained, path: {missing}}}"])


def test_tokenizer_hub_id_offline_is_a_clear_error(tmp_path: Path) -> None:
    msg = _stage_error(
        tmp_path, {"tokenizer": {"kind": "pretrained", "path": "no-such-org/no-such-tok"}}, "tokenizer"
    )
    assert "cannot load pretrained tokenizer 'no-such-org/no-such-tok'" in msg
    assert "HF_HUB_OFFLINE is set" in msg


def test_classifier_file_that_is_not_a_model(tmp_path: Path) -> None:
    fake = tmp_path / "classifier.bin"
    fake.write_text("I am a text file, not a fastText model\n" * 100)
    msg = _stage_error(
        tmp_path, {"classifier": {"name": "misaligned", "model_path": str(fake)}}, "classifier"
    )
    assert f"classifier.model_path {str(fake)!r} is not a fastText model" in msg


def test_truncated_classifier_model_is_an_error(tmp_path: Path, fasttext_model: Path) -> None:
    cut = tmp_path / "cut.bin"
    whole = fasttext_model.read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    msg = _stage_outcome(tmp_path, {"classifier": {"name": "misaligned", "model_path": str(cut)}}, "score")
    assert msg is not None and str(cut) in msg, "today: the classifier is adopted and every score is 0.0"


def _train_with_checkpoint(
    blocked_run: RunOutcome, root: Path, config: Path, payload: bytes
) -> tuple[str, Path]:
    """Seed a store with the reference's upstream, put ``payload`` in as the train checkpoint, run it."""
    assert blocked_run.returncode == 0, blocked_run.output[-4000:]
    cfg = load_config(config, [f"store={root / 'store'}"])
    train = next(s for s in build_graph(cfg) if s.stage == "train")
    CR.seed_store(blocked_run.store, train, root / "store")
    final = Store(cfg.store).path(train.key)
    ckpt = final.with_name(final.name + ".partial") / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "step-00000020.pt").write_bytes(payload)
    with pytest.raises(StageError) as err:
        Store(cfg.store).run(train, workers=1, show_progress=False)
    return str(err.value), ckpt


def test_corrupt_checkpoint_stops_training(
    blocked_run: RunOutcome, reliability_config: Path, tmp_path: Path
) -> None:
    """A cut checkpoint is not silently used or skipped: the stage fails, the file is left for inspection."""
    real = next(blocked_run.store.glob("train/*/checkpoints/step-*.pt")).read_bytes()
    msg, ckpt = _train_with_checkpoint(blocked_run, tmp_path, reliability_config, real[: len(real) // 2])
    assert msg.startswith("stage train/filtered-s0-")
    assert (ckpt / "step-00000020.pt").is_file()
    assert not (ckpt.parent / "model").exists(), "no model may come out of a failed resume"


def test_corrupt_checkpoint_error_names_the_file(
    blocked_run: RunOutcome, reliability_config: Path, tmp_path: Path
) -> None:
    msg, ckpt = _train_with_checkpoint(blocked_run, tmp_path, reliability_config, b"not a checkpoint" * 64)
    assert str(ckpt / "step-00000020.pt") in msg and "delete it" in msg


def test_bad_inputs_leave_complete_stages(jsonl_run: dict[str, Any]) -> None:
    """Bad records are data problems, not stage failures: the stages complete and leave no .partial."""
    assert not list(Path(jsonl_run["store"]).glob("*/*.partial"))
    assert (jsonl_run["score"] / ".complete").is_file() and (jsonl_run["variant"] / ".complete").is_file()
