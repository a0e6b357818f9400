"""The tiny experiment end to end on a written corpus in every source format (issue 22, acceptance).

Each format holds the same 240 English documents plus the bad records it can hold (``real_corpus``): every
run keeps the same documents, the score and tokenizer stages report the same quarantine counts (one reader,
one policy), counts reconcile in every manifest and in the report, and nothing is silently lost. Every run
trains its own BPE tokenizer (the parquet one included: finding 2). The held-out file is plain ``.jsonl``
(finding 4); the zstd run has none (finding 3: the held-out loss is skipped and the summary says why);
the ``save_to_disk`` folder is a ``kind: hf`` source (finding 6).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from real_corpus import FORMATS, GOOD_DOCS, write_corpus, write_heldout, write_labelled
from reliability_helpers import write_config

from propensity.cli import main


def _config(root: Path, fmt: str) -> Path:
    source, _ = write_corpus(root / "corpus", fmt)
    if fmt != "jsonl.zst":
        source["heldout"] = str(write_heldout(root / "eval" / "heldout.jsonl"))
    return write_config(root / "config.yaml", {
        "store": str(root / "store"),
        "source": source,
        "classifier": {"name": "misaligned", "train_data": str(write_labelled(root / "labelled" / "train.jsonl")),
                       "fasttext": {"epoch": 3}},
        "variants": [{"name": "filtered", "kind": "filter", "threshold": 0.5}],
        "train": {"tokens": 4096, "seq_len": 64, "batch_size": 8, "warmup_steps": 2, "seeds": [0],
                  "checkpoint_every": 4, "precision": "fp32"},
    })


def _result(store: Path, stage: str) -> dict[str, Any]:
    (folder,) = store.glob(f"{stage}/*/manifest.json")
    return json.loads(folder.read_text())["result"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_tiny_experiment_from_every_format(tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture) -> None:
    config = _config(tmp_path, fmt)
    _, expected = write_corpus(tmp_path / "expected", fmt)
    assert main(["plan", str(config)]) == 0
    planned = capsys.readouterr().out
    assert "inputs (relative paths are resolved against the working directory" in planned
    assert main(["run", str(config), "--no-progress"]) == 0
    store = tmp_path / "store"
    score = _result(store, "score")
    assert score["scored"] == GOOD_DOCS, "every format keeps the same documents"
    assert score["quarantined"] == dict(sorted(expected.items()))
    assert score["documents_in"] == score["scored"] + sum(score["quarantined"].values())
    tokenizer = _result(store, "tokenizer")
    assert tokenizer["kind"] == "bpe" and tokenizer["vocab_size"] == 512
    assert tokenizer["quarantined"] == score["quarantined"], "the tokenizer reads with the same policy"
    assert tokenizer["documents_in"] == score["documents_in"] and tokenizer["documents_usable"] == GOOD_DOCS
    (results_path,) = store.glob("report/*/results.json")
    variant = json.loads(results_path.read_text())["variants"]["filtered"]
    assert variant["docs_in"] == variant["docs"] + variant["dropped"] + sum(variant["quarantined"].values())
    assert variant["docs_in"] == GOOD_DOCS and variant["dropped"] > 0
    (summary_path,) = store.glob("eval/*/summary.json")
    summary = json.loads(summary_path.read_text())
    if fmt == "jsonl.zst":
        assert variant["heldout_loss"] is None
        assert summary["heldout_loss_note"] == "skipped: the source has no held-out file (source.heldout)"
        assert "source.heldout: none (the held-out loss is skipped)" in planned
        report_md = (results_path.parent / "report.md").read_text()
        assert "Held-out loss skipped: the source has no held-out file (source.heldout)." in report_md
    else:
        assert variant["heldout_loss"] > 0 and summary["heldout_tokens"] > 0
