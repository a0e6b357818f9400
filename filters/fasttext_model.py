"""fastText as a library: train a supervised model on labelled jsonl/parquet, load it, and score texts.

The ``classifier`` stage (``filters.classifier``) trains or adopts models with it; the fastText scorer
(``filters.scorers``), the classifier suite and sentence taggers load and apply them. Training runs in a
subprocess with one thread, so the same labelled file and seed give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from core.documents import DocumentReader, file_format
from core.errors import ConfigError, InputDataError
from filters.config import FastTextParams
from filters.metrics import binary_metrics

PARAM_ALIASES = {
    "word_ngrams": "wordNgrams",
    "min_count": "minCount",
    "min_count_label": "minCountLabel",
    "lr_update_rate": "lrUpdateRate",
}
"""snake_case spellings (as in propensity's config) of fastText's camelCase parameters."""
DEFAULT_PARAMS: dict[str, Any] = {
    PARAM_ALIASES.get(key, key): value for key, value in FastTextParams().model_dump().items()
} | {"loss": "softmax"}
"""Small, sane defaults: ~8 MB models (fastText's default bucket with bigrams gives ~400 MB)."""
ALLOWED_PARAMS = {
    "dim",
    "bucket",
    "wordNgrams",
    "minCount",
    "epoch",
    "lr",
    "loss",
    "minn",
    "maxn",
    "neg",
    "ws",
    "lrUpdateRate",
    "t",
    "minCountLabel",
}
FASTTEXT_MAGIC = 793712314
"""First int32 (little endian) of every fastText .bin file."""


def fasttext_line(text: str) -> str:
    """Text as fastText sees it: one line (newlines and tabs become spaces): ``" ".join(text.split())``.

    A text that is already so (every whitespace character that ``str.split`` splits on but the space is
    non-printable, so a printable text has only spaces, here single and inside) is returned as is, without
    the list of words: a third cheaper for a one-line document, a few percent dearer for others."""
    if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text
    return " ".join(text.split())


def read_labelled(path: Path, label_key: str) -> list[tuple[str, str]]:
    """``(text, label)`` pairs of a labelled jsonl(.gz/.zst)/parquet file; the label may sit in ``metadata``.

    Read by ``core.documents`` (format recognised by content). Labelled sets are curated, so any unusable
    record (the source quarantine reasons, or ``missing_label``) is an error naming the file, the reasons
    and the first line or row."""
    if not Path(path).is_file():
        raise InputDataError(f"labelled data file {str(path)!r} does not exist")
    reader = DocumentReader([str(path)], file_format(path), keep_quarantined=1)
    pairs, no_label = [], []
    for doc_id, text, record in reader:
        label = record.get(label_key, (record.get("metadata") or {}).get(label_key))
        if label is None:
            no_label.append(doc_id)
        else:
            pairs.append((text, str(label).replace(" ", "_")))
    if reader.quarantined or no_label:
        problems = {**reader.quarantine_counts, **({"missing_label": len(no_label)} if no_label else {})}
        first = reader.quarantined[0] if reader.quarantined else {"record": no_label[0]}
        where = {k: v for k, v in first.items() if k in ("line", "row", "record")}
        raise InputDataError(
            f"labelled data file {path}: every record needs a string 'text' and a {label_key!r} label; "
            f"unusable records {problems}, first at {where}"
        )
    if not pairs:
        raise InputDataError(f"labelled data file {path} is empty")
    return pairs


def train_fasttext(
    train_path: Path,
    out_dir: Path,
    *,
    label_key: str = "label",
    positive_label: str = "misaligned",
    params: dict[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """Train a supervised fastText model (one thread, seeded: reproducible) as ``model-<sha[:16]>.bin``."""
    params = {PARAM_ALIASES.get(key, key): value for key, value in (params or {}).items()}
    unknown = sorted(set(params) - ALLOWED_PARAMS)
    if unknown:
        raise ConfigError(
            f"classifier.fasttext: unknown parameter(s) {unknown}; allowed: {sorted(ALLOWED_PARAMS)}"
        )
    pairs = read_labelled(Path(train_path), label_key)
    labels = sorted({label for _, label in pairs})
    if positive_label not in labels:
        raise ConfigError(
            f"classifier.positive_label {positive_label!r} not among {label_key!r} values {labels}"
        )
    if len(labels) < 2:
        raise InputDataError(f"{train_path}: need at least two {label_key!r} values to train, found {labels}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        train_txt = Path(tmp) / "train.txt"
        train_txt.write_text("".join(f"__label__{label} {fasttext_line(text)}\n" for text, label in pairs))
        tmp_bin = Path(tmp) / "model.bin"
        args = (
            DEFAULT_PARAMS
            | (params or {})
            | {"input": str(train_txt), "thread": 1, "seed": seed, "verbose": 0}
        )
        _train_in_subprocess(args, tmp_bin)
        return store_content_hashed(tmp_bin, out_dir)


_TRAIN_SCRIPT = (
    "import json, sys, fasttext\n"
    "args = json.loads(sys.argv[1])\n"
    "fasttext.train_supervised(**args).save_model(sys.argv[2])\n"
)


def _train_in_subprocess(args: dict[str, Any], out: Path) -> None:
    """Run ``fasttext.train_supervised`` in a fresh interpreter.

    Measured here: the first training in a process is reproducible, but later trainings in the same
    process (fasttext-numpy2-wheel 0.9.2) give different bytes and sometimes fail with "Encountered NaN",
    so every training gets its own process.
    """
    proc = subprocess.run(
        [sys.executable, "-c", _TRAIN_SCRIPT, json.dumps(args), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not out.is_file():
        detail = (
            proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
        )
        hint = (
            " (fastText needs a few hundred distinct words; check the training data)"
            if "NaN" in detail
            else ""
        )
        raise InputDataError(f"fastText training on {args['input']} failed: {detail}{hint}")


def store_content_hashed(path: Path, out_dir: Path) -> Path:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    target = out_dir / f"model-{digest}.bin"
    shutil.copyfile(path, target)
    return target


def load_fasttext(path: Path) -> Any:
    """Load a supervised fastText model, with a clear InputDataError when the file is not one."""
    import fasttext

    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"classifier.model_path {str(path)!r} does not exist")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if len(head) < 4 or int.from_bytes(head, "little") != FASTTEXT_MAGIC:
        raise InputDataError(
            f"classifier.model_path {str(path)!r} is not a fastText model (.bin from save_model): "
            "bad magic number"
        )
    try:
        model = fasttext.load_model(str(path))
    except ValueError as err:
        raise InputDataError(
            f"classifier.model_path {str(path)!r} is not a loadable fastText model: {err}"
        ) from err
    if not model.get_labels():
        raise InputDataError(
            f"classifier.model_path {str(path)!r} is an unsupervised fastText model (no labels)"
        )
    predicted, _ = model.predict("probe", k=-1)
    if len(predicted) != len(model.get_labels()):  # a cut .bin loads without its output matrix
        raise InputDataError(
            f"classifier.model_path {str(path)!r} is truncated or corrupt: it predicts "
            f"{len(predicted)} of its {len(model.get_labels())} labels"
        )
    return model


def positive_probabilities(model: Any, texts: list[str], positive_label: str) -> list[float]:
    """P(positive_label) for each text (batched fastText prediction over all labels)."""
    if not texts:
        return []
    labels, probs = model.predict([fasttext_line(t) for t in texts], k=-1)
    target = f"__label__{positive_label}"
    out = []
    for doc_labels, doc_probs in zip(labels, probs, strict=True):
        score = dict(zip(doc_labels, doc_probs, strict=True)).get(target, 0.0)
        out.append(min(1.0, max(0.0, float(score))))
    return out


def evaluate(
    model: Any, heldout_path: Path, *, label_key: str = "label", positive_label: str = "misaligned"
) -> dict[str, Any]:
    """Held-out precision/recall/F1 at 0.5, ROC-AUC and the fraction flagged at thresholds 0.1..0.9."""
    if isinstance(model, (str, Path)):
        model = load_fasttext(Path(model))
    pairs = read_labelled(Path(heldout_path), label_key)
    scores = positive_probabilities(model, [t for t, _ in pairs], positive_label)
    return binary_metrics(scores, [label == positive_label for _, label in pairs])
