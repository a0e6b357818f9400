"""The ``classifier`` stage: train or adopt the classifier(s) and measure them on held-out data.

Config: a ``filters.config.ClassifierSpec``. For ``kind: fasttext`` (the quickstart): ``model_path``
(optional existing ``.bin``, copied in under a content-hashed name after checking it is a supervised fastText
model); ``train_data`` (optional labelled jsonl/parquet; default ``labelled.train`` of the ``source`` input);
``heldout_data`` (optional; default ``labelled.heldout`` of the source, plus ``labelled.heldout_sentences``
when the source has sentence examples: metrics under ``heldout_sentences``); ``label_key`` (default ``"label"``,
read at top level or in ``metadata``); ``positive_label`` (default ``"misaligned"``); ``fasttext`` (training
parameters overriding ``filters.fasttext_model.DEFAULT_PARAMS``). Other kinds (transformer, blocklist, cascade,
ensemble): see ``filters.suite``.

Writes ``model-<sha256[:16]>.bin`` per fastText model, ``classifier.json`` (for fastText ``{"kind", "path",
"labels", "positive_label", "score_key"}``, ``path`` relative to the artifact folder, ``score_key`` =
``"<name>_score"``) and ``metrics.json`` (held-out precision/recall/F1/ROC-AUC) when a held-out set exists.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.documents import load_source
from core.errors import ConfigError
from core.stage import StageContext
from filters.config import ClassifierSpec, parse
from filters.datatrove_stage import check_keys
from filters.fasttext_model import evaluate, load_fasttext, store_content_hashed, train_fasttext
from filters.suite import build_scorer, evaluate_scorer, prepare


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
            model_path = store_content_hashed(Path(spec.model_path), ctx.out)
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
