"""Issue 22's findings 3-11: every input checked at ``propensity plan``, before any stage runs.

Each test fails on the code before the issue (the message, or the stage that failed, was different). The
end-to-end runs are in ``test_real_corpus_e2e.py``; findings 1 and 2 (the tokenizer's reader) also in
``tests/pretrain/test_pretrain_tokenizer.py``.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from real_corpus import good_docs, write_corpus, write_heldout, write_labelled
from reliability_helpers import write_config

from core.documents import DocumentReader
from core.errors import ConfigError
from eval_gpe.stage import heldout_note, read_heldout
from propensity.cli import main
from propensity.config import load_config


@pytest.fixture()
def corpus(tmp_path: Path) -> dict[str, Any]:
    """jsonl shards, a labelled set and a held-out file, each in its own folder."""
    source, _ = write_corpus(tmp_path / "shards", "jsonl")
    return {"source": source, "labelled": str(write_labelled(tmp_path / "labelled" / "train.jsonl")),
            "heldout": str(write_heldout(tmp_path / "eval" / "heldout.jsonl")), "root": tmp_path}


_capsys: list[pytest.CaptureFixture] = []


@pytest.fixture(autouse=True)
def _keep_capsys(capsys: pytest.CaptureFixture) -> Any:
    _capsys.append(capsys)
    yield
    _capsys.pop()


def _plan(root: Path, source: dict[str, Any], classifier: dict[str, Any] | None = None,
          **sections: Any) -> tuple[int, str, str]:
    """``propensity plan`` of the tiny config with these sections: exit code, stdout, stderr."""
    config = write_config(root / "config.yaml", {
        "store": str(root / "store"), "source": source,
        "classifier": classifier or {"name": "misaligned"}, **sections,
    })
    _capsys[-1].readouterr()
    code = main(["plan", str(config)])
    out = _capsys[-1].readouterr()
    return code, out.out, out.err


def _error(root: Path, source: dict[str, Any], classifier: dict[str, Any] | None = None, **sections: Any) -> str:
    code, _, err = _plan(root, source, classifier, **sections)
    assert code == 2, "plan must refuse the config"
    return err


def _files(corpus: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**corpus["source"], **changes}


def _clf(corpus: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {"name": "misaligned", "train_data": corpus["labelled"], **changes}


def test_plan_prints_every_resolved_input(corpus: dict[str, Any]) -> None:
    """Finding 11: the rule for relative paths and every resolved input path are printed by plan."""
    code, out, _ = _plan(corpus["root"], _files(corpus, heldout=corpus["heldout"]), _clf(corpus))
    assert code == 0
    assert f"inputs (relative paths are resolved against the working directory {os.getcwd()}):" in out
    assert "source.paths: 2 jsonl file(s): " + str(corpus["root"] / "shards" / "shard-00.jsonl") in out
    assert f"source.heldout: {corpus['heldout']}" in out and f"classifier.train_data: {corpus['labelled']}" in out


def test_config_elsewhere_says_how_relative_paths_resolve(corpus: dict[str, Any]) -> None:
    """Finding 11: a relative path that is not there names the rule and both folders."""
    config = write_config(corpus["root"] / "config.yaml", {
        "source": _files(corpus, heldout="eval/heldout.jsonl"), "classifier": _clf(corpus)})
    with pytest.raises(ConfigError, match="source.heldout: file 'eval/heldout.jsonl' does not exist\n"
                                          r"  \(relative paths in a config are resolved against the working "
                                          "directory .*, not against the config's folder"):
        load_config(config)


def test_no_heldout_file_is_optional_in_every_layer(corpus: dict[str, Any], tmp_path: Path) -> None:
    """Finding 3: no held-out file skips the held-out loss (it failed at the eval stage, after training),
    and ``eval.heldout_docs: 0`` is accepted (it was refused by the config)."""
    code, out, _ = _plan(corpus["root"], _files(corpus), _clf(corpus), eval={"heldout_docs": 0})
    assert code == 0 and "source.heldout: none (the held-out loss is skipped)" in out
    assert "eval.heldout_docs: 0 (the held-out loss is skipped)" in out
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "source.json").write_text(json.dumps({"format": "jsonl", "paths": ["a.jsonl"]}))
    assert read_heldout(tmp_path / "src", 20, tmp_path / "out") == ([], 0)
    assert heldout_note(tmp_path / "src", 20) == "skipped: the source has no held-out file (source.heldout)"


def test_plain_jsonl_heldout_is_read(tmp_path: Path) -> None:
    """Finding 4: a plain .jsonl held-out file (it failed with 'Not a gzipped file' after training)."""
    heldout = write_heldout(tmp_path / "heldout.jsonl", n=5)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "source.json").write_text(
        json.dumps({"format": "jsonl", "paths": [], "heldout": str(heldout)}))
    docs, bad = read_heldout(tmp_path / "src", 20, tmp_path / "out")
    assert len(docs) == 5 and bad == 0 and docs[0][1] == "all"


def test_heldout_control_strings_are_escaped_as_trainings_were(tmp_path: Path) -> None:
    """The held-out loss reads the text training saw: a literal <|endoftext|> is escaped, not a boundary."""
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text(json.dumps({"id": "h", "text": "Before <|endoftext|> after <|bad|>."}) + "\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "source.json").write_text(
        json.dumps({"format": "jsonl", "paths": [], "heldout": str(heldout)}))
    docs, _ = read_heldout(tmp_path / "src", 20, tmp_path / "out")
    assert docs == [("Before <\u00a6endoftext\u00a6> after <\u00a6bad\u00a6>.", "all")]


@pytest.mark.parametrize(("section", "value", "message"), [
    ("tokenizer", {"kind": "bpe", "path": "gpt2"},
     "tokenizer.path has no effect with tokenizer.kind 'bpe'; it is used by kind 'pretrained'"),
    ("tokenizer", {"kind": "pretrained", "path": "gpt2", "vocab_size": 1000},
     "tokenizer.vocab_size has no effect with tokenizer.kind 'pretrained'; it is used by kind 'bpe'"),
    ("source", {"kind": "files", "paths": ["x.jsonl"], "hf_name": "en"},
     "source.hf_name has no effect with source.kind 'files'; it is used by kind 'hf'"),
    ("source", {"kind": "synthetic", "heldout": "h.jsonl"},
     "source.heldout has no effect with source.kind 'synthetic'; it is used by kind 'files' / 'hf'"),
    ("classifier", {"name": "m", "kind": "blocklist", "blocklist": {"terms": ["x"]}, "train_data": "t.jsonl"},
     "classifier.train_data has no effect with classifier.kind 'blocklist'; it is used by kind 'fasttext'"),
])
def test_settings_without_effect_name_the_kind(tmp_path: Path, section: str, value: dict, message: str) -> None:
    """Finding 5: a setting the chosen kind ignores is an error naming the kind that uses it."""
    config = write_config(tmp_path / "config.yaml", {section: value})
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(config)


def test_heldout_matched_by_the_shard_glob_is_refused(corpus: dict[str, Any]) -> None:
    """Finding 7: a held-out file beside the shards was trained on; now plan refuses it."""
    inside = write_heldout(corpus["root"] / "shards" / "shard-heldout.jsonl")
    err = _error(corpus["root"], _files(corpus, heldout=str(inside)), _clf(corpus))
    assert f"source.heldout: {inside} is also matched by source.paths" in err
    assert "would be trained on" in err
    assert main(["run", str(corpus["root"] / "config.yaml"), "--no-progress"]) == 2
    assert not (corpus["root"] / "store").exists(), "run refuses before any stage (or the store) exists"


def test_labelled_file_matched_by_the_shard_glob_is_refused(corpus: dict[str, Any]) -> None:
    """Finding 7 (labelled files): the classifier's labelled set is not pretraining text either."""
    inside = write_labelled(corpus["root"] / "shards" / "shard-labelled.jsonl")
    err = _error(corpus["root"], _files(corpus), _clf(corpus, train_data=str(inside)))
    assert f"classifier.train_data: {inside} is also matched by source.paths" in err


def test_directories_where_files_belong(corpus: dict[str, Any]) -> None:
    """Finding 8: each names the field, says 'directory', and for paths suggests a glob."""
    root, folder = corpus["root"], corpus["root"] / "shards"
    err = _error(root, _files(corpus, heldout=str(root / "eval")), _clf(corpus))
    assert f"source.heldout: '{root / 'eval'}' is a directory; it must be one jsonl or parquet file" in err
    err = _error(root, _files(corpus), _clf(corpus, train_data=str(root / "labelled")))
    assert f"classifier.train_data: '{root / 'labelled'}' is a directory" in err
    err = _error(root, _files(corpus), {"name": "misaligned", "model_path": str(root / "labelled")})
    assert f"classifier.model_path: '{root / 'labelled'}' is not a file (a fastText .bin is expected)" in err
    err = _error(root, _files(corpus, paths=[str(folder)]), _clf(corpus))
    assert f"source.paths entry '{folder}' is a directory ({folder}), not a file: use a glob like " \
           f"{folder}/*.jsonl.gz" in err


def test_empty_corpus_is_caught_at_plan(corpus: dict[str, Any]) -> None:
    """Finding 9: empty files, and files of empty texts, fail at plan naming source.paths (and empty_text)."""
    root = corpus["root"]
    (root / "empty").mkdir()
    (root / "empty" / "a.jsonl").write_bytes(b"")
    err = _error(root, {"kind": "files", "paths": [str(root / "empty" / "*.jsonl")]}, _clf(corpus))
    assert "source.paths: the corpus is empty" in err and "no records at all" in err
    blank = root / "blank" / "a.jsonl.gz"
    blank.parent.mkdir()
    blank.write_bytes(gzip.compress(b"".join(b'{"id": "%d", "text": ""}\n' % i for i in range(50))))
    err = _error(root, {"kind": "files", "paths": [str(blank)]}, _clf(corpus))
    assert "source.paths: the corpus is empty" in err and "{'empty_text': 50}" in err
    reader = DocumentReader([str(blank)], "jsonl")
    assert list(reader) == [] and reader.quarantine_counts == {"empty_text": 50}, "empty, not missing"


def test_classifier_label_typos_are_caught_at_plan(corpus: dict[str, Any]) -> None:
    """Finding 10: a mistyped label_key or positive_label fails at plan, not at stage 2."""
    err = _error(corpus["root"], _files(corpus), _clf(corpus, label_key="lable"))
    assert "classifier.label_key: no record of the first 300 in" in err and "'lable'" in err
    err = _error(corpus["root"], _files(corpus), _clf(corpus, positive_label="misalgned"))
    assert "classifier.positive_label: 'misalgned' is not among the 'label' values ['aligned', 'misaligned']" in err


def test_files_source_without_labelled_set(corpus: dict[str, Any]) -> None:
    err = _error(corpus["root"], _files(corpus), {"name": "misaligned"})
    assert "classifier: a 'files' source has no labelled set" in err and "classifier.train_data" in err


def test_declared_format_and_text_field_are_checked(corpus: dict[str, Any]) -> None:
    """Format by content, the text column of a parquet file, the text field of a jsonl sample."""
    root = corpus["root"]
    (root / "pq").mkdir()
    pq.write_table(pa.table({"id": ["a"], "body": ["no text column"]}), root / "pq" / "a.parquet")
    err = _error(root, {"kind": "files", "paths": [str(root / "pq" / "*.parquet")], "format": "parquet"},
                 _clf(corpus))
    assert f"source.paths: {root / 'pq' / 'a.parquet'} is unusable (missing_text_column): text_key 'text' " \
           "not in columns ['id', 'body']" in err
    err = _error(root, {"kind": "files", "paths": [str(root / "shards" / "*.jsonl")], "format": "parquet"},
                 _clf(corpus))
    assert "is not a parquet file (plain text), but source.format is 'parquet'; set source.format: jsonl" in err
    err = _error(root, {"kind": "files", "paths": [str(root / "pq" / "*.parquet")]}, _clf(corpus))
    assert "is a parquet file, but source.format is 'jsonl'; set source.format: parquet" in err
    (root / "body").mkdir()
    (root / "body" / "a.jsonl").write_text("".join(json.dumps({"id": d["id"], "body": d["text"]}) + "\n"
                                                   for d in good_docs()[:5]))
    err = _error(root, {"kind": "files", "paths": [str(root / "body" / "a.jsonl")]}, _clf(corpus))
    assert "no record of the first 5 has the text field 'text'; fields seen: ['body', 'id'] " \
           "(set source.text_key)" in err
