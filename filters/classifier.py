"""The ``classifier`` stage: train or adopt the classifier(s) and measure them on held-out data.

Config: a ``filters.config.ClassifierSpec``. For ``kind: fasttext`` (the quickstart): ``model_path``
(optional existing ``.bin``, copied in under a content-hashed name after checking it is a supervised fastText
model); ``train_data`` (optional labelled jsonl/parquet; default ``labelled.train`` of the ``source`` input);
``heldout_data`` (optional; default ``labelled.heldout`` of the source, plus ``labelled.heldout_sentences``
when the source has sentence examples: metrics under ``heldout_sentences``); ``label_key`` (default ``"label"``,
read at top level or in ``metadata``); ``positive_label`` (default ``"misaligned"``); ``fasttext`` (training
parameters overriding ``DEFAULT_PARAMS``). Other kinds (transformer, blocklist, cascade, ensemble): see
``filters.suite``.

Writes ``model-<sha256[:16]>.bin`` per fastText model, ``classifier.json`` (for fastText ``{"kind", "path",
"labels", "positive_label", "score_key"}``, ``path`` relative to the artifact folder, ``score_key`` =
``"<name>_score"``) and ``metrics.json`` (held-out precision/recall/F1/ROC-AUC) when a held-out set exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import ConfigError, InputDataError
from core.stage import StageContext
from filters.config import ClassifierSpec, FastTextParams, parse
from filters.metrics import binary_metrics
from filters.pipeline import check_keys, load_source
from filters.suite import build_scorer, evaluate_scorer, prepare

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
    """Text as fastText sees it: one line (newlines and tabs become spaces)."""
    return " ".join(text.split())


def read_labelled(path: Path, label_key: str) -> list[tuple[str, str]]:
    """``(text, label)`` pairs of a labelled jsonl(.gz)/parquet file; the label may sit in ``metadata``."""
    from filters.pipeline import iter_jsonl

    if not Path(path).is_file():
        raise InputDataError(f"labelled data file {str(path)!r} does not exist")
    if str(path).endswith(".parquet"):
        import pyarrow.parquet as pq

        records = pq.read_table(path).to_pylist()
    else:
        records = iter_jsonl([Path(path)])
    pairs = []
    for index, record in enumerate(records):
        label = record.get(label_key, (record.get("metadata") or {}).get(label_key))
        text = record.get("text")
        if label is None or not isinstance(text, str):
            raise InputDataError(f"{path} record {index}: needs a string 'text' and a {label_key!r} label")
        pairs.append((text, str(label).replace(" ", "_")))
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
        return _store_content_hashed(tmp_bin, out_dir)


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


def _store_content_hashed(path: Path, out_dir: Path) -> Path:
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


def _labelled(ctx: StageContext, spec: ClassifierSpec) -> dict[str, Path | None]:
    """Labelled files by role: ``train`` and ``heldout`` from the spec, else from the source's ``labelled``
    entry; ``heldout_sentences`` (sentence examples) from the source only, and only when the spec gives no
    held-out file of its own."""
    source = load_source(ctx.inputs["source"]) if "source" in ctx.inputs else None

    def from_source(role: str) -> Path | None:
        return source.resolve(source.labelled[role]) if source is not None and source.labelled.get(role) else None

    return {
        "train": Path(spec.train_data) if spec.train_data else from_source("train"),
        "heldout": Path(spec.heldout_data) if spec.heldout_data else from_source("heldout"),
        "heldout_sentences": None if spec.heldout_data else from_source("heldout_sentences"),
    }


def _fasttext_preparer(ctx: StageContext) -> Callable[[ClassifierSpec], dict[str, Any]]:
    """Adopts (``model_path``) or trains one fastText model into ``ctx.out``; returns its classifier.json."""

    def prepare_one(spec: ClassifierSpec) -> dict[str, Any]:
        train = _labelled(ctx, spec)["train"]
        if spec.model_path:
            load_fasttext(Path(spec.model_path))  # validates before copying
            model_path = _store_content_hashed(Path(spec.model_path), ctx.out)
        elif train is not None:
            model_path = train_fasttext(
                train,
                ctx.out,
                label_key=spec.label_key,
                positive_label=spec.positive_label,
                params=spec.fasttext,
                seed=ctx.seed,
            )
        else:
            raise ConfigError(
                f"classifier {spec.name!r}: give model_path or train_data, or a source input "
                "with labelled.train"
            )
        labels = sorted(label.removeprefix("__label__") for label in load_fasttext(model_path).get_labels())
        if spec.positive_label not in labels:
            raise ConfigError(
                f"classifier.positive_label {spec.positive_label!r} is not a label of the model; "
                f"labels: {labels}"
            )
        return {
            "kind": "fasttext",
            "path": model_path.name,
            "labels": labels,
            "positive_label": spec.positive_label,
            "score_key": f"{spec.name}_score",
        }

    return prepare_one


def run(ctx: StageContext) -> dict[str, Any]:
    """Train or adopt the classifier(s), write ``classifier.json`` and return held-out metrics."""
    check_keys(ctx.config, set(ClassifierSpec.model_fields), {"name"}, "classifier")
    spec: ClassifierSpec = parse(ClassifierSpec, ctx.config, "classifier")
    info = prepare(spec, _fasttext_preparer(ctx))
    (ctx.out / "classifier.json").write_text(json.dumps(info, indent=2) + "\n")
    models = sorted(ctx.out.glob("model-*.bin"))
    result: dict[str, Any] = {"model_bytes": sum(os.path.getsize(p) for p in models), **info}
    files = {k: p for k, p in _labelled(ctx, spec).items() if k != "train" and p is not None}
    scorer = None if spec.kind == "fasttext" or not files else build_scorer(info, ctx.out)
    for key, path in files.items():
        if scorer is None:
            metrics = evaluate(ctx.out / info["path"], path, label_key=spec.label_key,
                               positive_label=spec.positive_label)
        else:
            metrics = evaluate_scorer(scorer, path, label_key=spec.label_key, positive_label=spec.positive_label)
        result[key] = metrics
        name = "metrics.json" if key == "heldout" else "metrics_sentences.json"
        (ctx.out / name).write_text(json.dumps(metrics, indent=2) + "\n")
    return result
