"""Every file an experiment config names, checked before any stage runs (``propensity plan`` and ``run``).

Each input file must exist, be a file (``source.paths`` entries name files or globs, not folders), be
readable, hold the declared format (parquet or jsonl, compression recognised by content) and, in a sample of
its first ``SAMPLE_ROWS`` records, the text field; labelled files must hold ``classifier.label_key`` and
``classifier.positive_label``. The corpus must have a usable document, and no held-out or labelled file may
also be a training shard. An adopted fastText model must hold ``classifier.positive_label`` among its labels
(``filters.model_files``; the classifier's other local files are checked as the config loads). Every failure
is a ConfigError naming the config field, the path and the problem;
docs/reliability.md lists them all with their messages.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.documents import is_saved_dataset, iter_dataset_rows, iter_rows, sniff, text_problem
from core.errors import ConfigError, InputDataError
from filters.model_files import check_fasttext_labels, classifier_files
from filters.sources import expand_paths
from propensity.config import ClassifierConfig, ExperimentConfig

SAMPLE_ROWS = 200
"""Records read from the start of each file (labelled files: ``LABEL_SAMPLE_ROWS``)."""
LABEL_SAMPLE_ROWS = 5000
FILE_PROBLEMS = ("unreadable_file", "missing_text_column")
"""Row reasons that make a whole file unusable: an error at plan time."""


@dataclass
class Sample:
    """What the first records of one file hold."""

    records: int = 0
    usable: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    keys: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)


def check_inputs(cfg: ExperimentConfig) -> list[str]:
    """Check every input file of ``cfg``; raise ConfigError on the first problem, else return lines naming
    each input with its resolved path (printed by ``propensity plan``): a header, then one line per local file or
    folder the config reads (data, classifier files, a local tokenizer, GPE files); no lines when it reads none."""
    lines: list[str] = []
    src = cfg.source
    shards: list[Path] = []
    if src.kind == "files":
        shards = _check_shards(src.paths, src.format, src.text_key)
        shown = ", ".join(str(p) for p in shards[:3]) + (", ..." if len(shards) > 3 else "")
        lines.append(f"  source.paths: {len(shards)} {src.format} file(s): {shown}")
    elif src.kind == "hf":
        lines.append(f"  source.hf_path: {_check_hf(src.hf_path or '', src.split, src.text_key)}")
    named: dict[str, Path] = {}
    if src.kind != "synthetic" and src.heldout:
        named["source.heldout"] = _check_file("source.heldout", src.heldout, None, src.text_key)[0]
    named.update(_check_classifier(cfg.classifier, "classifier", src.kind))
    _check_not_trained_on(named, shards, src.paths)
    lines += [f"  {name}: {path}" for name, path in named.items()]
    check_fasttext_labels(cfg.classifier)  # an adopted model's labels must hold positive_label
    lines += [f"  {name}: {path}" for name, path in classifier_files(cfg.classifier)]
    tok = cfg.tokenizer
    if tok.kind == "pretrained" and tok.path and Path(tok.path).expanduser().is_dir():
        lines.append(f"  tokenizer.path: {Path(tok.path).expanduser().resolve()}")
    lines += _gpe_files(cfg.eval.gpes)
    if src.kind != "synthetic" and not src.heldout:
        lines.append("  source.heldout: none (the held-out loss is skipped)")
    if cfg.eval.heldout_docs == 0:
        lines.append("  eval.heldout_docs: 0 (the held-out loss is skipped)")
    if not lines:
        return []
    return [f"inputs (relative paths are resolved against the working directory {os.getcwd()}):", *lines]


def _gpe_files(refs: list[Any]) -> list[str]:
    """GPE files named in ``eval.gpes`` and the local files each GPE reads (built-in GPEs read none)."""
    from eval_gpe.resolve import files_read, is_file_ref, resolve

    lines = []
    for index, ref in enumerate(refs):
        files = ([ref] if is_file_ref(ref) else []) + files_read(resolve(ref))
        lines += [f"  eval.gpes[{index}]: {f}" for f in dict.fromkeys(files)]
    return lines


def _check_shards(patterns: list[str], fmt: str, text_key: str) -> list[Path]:
    """The files ``source.paths`` matches, each checked; the corpus must have a usable document."""
    files = expand_paths(patterns)
    total = Sample()
    for path in files:
        sample = _sample("source.paths", path, fmt, text_key, SAMPLE_ROWS)
        total.records += sample.records
        total.usable += sample.usable
        total.reasons.update(sample.reasons)
    if total.usable == 0:
        what = (f"{total.records} records, none usable ({dict(sorted(total.reasons.items()))})" if total.records
                else "no records at all")
        raise ConfigError(f"source.paths: the corpus is empty: the first {SAMPLE_ROWS} records of each of the "
                          f"{len(files)} matched file(s) hold {what}")
    return files


def _check_file(name: str, value: str, fmt: str | None, text_key: str, label_key: str | None = None
                ) -> tuple[Path, Sample]:
    """One named input file: exists, is a file, is readable, holds ``fmt`` and the text field."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise ConfigError(f"{name}: {str(path)!r} is a directory; it must be one jsonl or parquet file")
    if not path.is_file():
        raise ConfigError(f"{name}: file {str(path)!r} does not exist")
    sample = _sample(name, path, fmt, text_key, LABEL_SAMPLE_ROWS if label_key else SAMPLE_ROWS, label_key)
    return path.resolve(), sample


def _sample(name: str, path: Path, fmt: str | None, text_key: str, rows: int, label_key: str | None = None
            ) -> Sample:
    """Read the first ``rows`` records of a file and raise ConfigError when it cannot be a source file."""
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{name}: {path} is not readable (permissions)")
    kind = sniff(path)
    actual = "parquet" if kind == "parquet" else "jsonl"
    if fmt is not None and fmt != actual:
        held = "a parquet file" if actual == "parquet" else f"not a parquet file ({kind} text)"
        raise ConfigError(f"{name}: {path} is {held}, but source.format is {fmt!r}; set source.format: {actual}")
    sample = Sample()
    for row in iter_rows(path, actual, text_key=text_key):
        if row.reason in FILE_PROBLEMS:
            raw = row.raw.decode("utf-8", "replace") if isinstance(row.raw, bytes) else row.raw
            raise ConfigError(f"{name}: {path} is unusable ({row.reason}): {raw[:300]}")
        _count(sample, row.data, row.reason, text_key, label_key)
        if sample.records >= rows:
            break
    objects = sample.records - sum(sample.reasons[r] for r in ("blank_line", "invalid_utf8", "malformed_json",
                                                                "not_an_object", "truncated_file"))
    if objects and sample.reasons["missing_text"] == objects:
        keys = sorted(sample.keys)[:20]
        raise ConfigError(f"{name}: {path}: no record of the first {sample.records} has the text field "
                          f"{text_key!r}; fields seen: {keys} (set source.text_key)")
    return sample


def _count(sample: Sample, data: dict[str, Any] | None, reason: str | None, text_key: str, label_key: str | None
           ) -> None:
    sample.records += 1
    if data is not None:
        sample.keys.update(data)
        reason = text_problem(data, text_key)
        if label_key is not None:
            label = data.get(label_key, (data.get("metadata") or {}).get(label_key))
            if label is not None:
                sample.labels.add(str(label).replace(" ", "_"))
    if reason is None:
        sample.usable += 1
    else:
        sample.reasons[reason] += 1


def _check_hf(hf_path: str, split: str, text_key: str) -> str:
    """A local dataset folder saved with ``save_to_disk`` is opened (cheap: memory-mapped) to check the split
    and the text column; hub ids and ``load_dataset`` folders are checked when the source stage loads them."""
    local = Path(hf_path).expanduser()
    if not (local.is_dir() and is_saved_dataset(local)):
        return f"{hf_path} (loaded by the source stage)"
    try:
        dataset = iter_dataset_rows(str(local), split=split)
    except InputDataError as err:
        raise ConfigError(f"source.hf_path: {err}") from None
    if text_key not in dataset.column_names:
        raise ConfigError(f"source.hf_path: the saved dataset {local} has no text column {text_key!r} "
                          f"(source.text_key); columns: {dataset.column_names}")
    if len(dataset) == 0:
        raise ConfigError(f"source.hf_path: the corpus is empty: split {split!r} of {local} has no rows")
    return f"{local.resolve()} (save_to_disk folder, split {split!r}, {len(dataset):,} rows)"


def _check_classifier(clf: ClassifierConfig, name: str, source_kind: str) -> dict[str, Path]:
    """The labelled files of a classifier (and of its cascade stages / ensemble members)."""
    found: dict[str, Path] = {}
    if clf.kind == "fasttext" and not (clf.model_path or clf.train_data) and source_kind != "synthetic":
        raise ConfigError(f"{name}: a {source_kind!r} source has no labelled set to train the fastText classifier "
                          f"on: set {name}.train_data (labelled jsonl/parquet) or {name}.model_path (a .bin)")
    for key in ("train_data", "heldout_data"):
        value = getattr(clf, key)
        if value:
            path, sample = _check_file(f"{name}.{key}", value, None, "text", clf.label_key)
            _check_labels(name, path, sample, clf)
            found[f"{name}.{key}"] = path
    for key, sub in clf.members(name):
        found.update(_check_classifier(sub, key, source_kind))
    return found


def _check_labels(name: str, path: Path, sample: Sample, clf: ClassifierConfig) -> None:
    """``label_key`` and ``positive_label`` must appear in the labelled file's sample (typos fail here)."""
    if not sample.labels:
        raise ConfigError(f"{name}.label_key: no record of the first {sample.records} in {path} has the label "
                          f"field {clf.label_key!r} (at the top level or in metadata); fields seen: "
                          f"{sorted(sample.keys)[:20]}")
    if clf.kind == "fasttext" and clf.positive_label not in sample.labels:
        raise ConfigError(f"{name}.positive_label: {clf.positive_label!r} is not among the {clf.label_key!r} "
                          f"values {sorted(sample.labels)} of the first {sample.records} records of {path}")


def _check_not_trained_on(named: dict[str, Path], shards: list[Path], patterns: list[str]) -> None:
    """Held-out and labelled files must not also be pretraining shards (held-out text is never trained on)."""
    shard_set = set(shards)
    for name, path in named.items():
        if path in shard_set:
            raise ConfigError(
                f"{name}: {path} is also matched by source.paths {patterns}: its documents would be trained on. "
                "Move it out of the shards' folder or narrow the glob (e.g. shard-*.jsonl.gz)"
            )
