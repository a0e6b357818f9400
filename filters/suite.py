"""From a ``ClassifierSpec`` to a self-describing ``classifier.json``, and from that to a scorer step.

``prepare`` runs in the classifier stage: it trains or adopts each fastText model (content-hashed copies in
the artifact folder), folds a blocklist's ``terms_file`` into the JSON, fingerprints a local transformer
folder and caps a transformer's ``max_length`` at what the model takes. ``build_scorer`` runs in the score
stage and rebuilds the (cheap, lazily loading) scorer step.
``classifier.json`` per kind:

- fasttext: ``{"kind", "path", "labels", "positive_label", "score_key"}`` (``path`` relative to the folder)
- transformer: ``{"kind", "model", "fingerprint", "positive_label", "score_key", "params": {...}}`` and, when
  ``params.max_length`` was capped, ``"max_length_cap": {"configured", "effective", "limited_by"}``
- blocklist: ``{"kind", "score_key", "params": {"terms", "patterns", "case_sensitive", ...}}``
- cascade: ``{"kind", "score_key", "stages": [<info> + {"escalate_at"}]}``; ensemble: ``{"kind", "score_key",
  "classifiers": [<info>]}``
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datatrove.data import Document

from core.errors import ConfigError, InputDataError
from filters.cascade import CascadeScorer, EnsembleScorer
from filters.config import ClassifierSpec
from filters.fasttext_model import read_labelled
from filters.metrics import binary_metrics
from filters.scorers import BatchScorer, BlocklistScorer, FastTextScorer, read_terms
from filters.sources import file_sha256

log = logging.getLogger("propensity")
FastTextPreparer = Callable[[ClassifierSpec], dict[str, Any]]


def prepare(spec: ClassifierSpec, fasttext: FastTextPreparer) -> dict[str, Any]:
    """The classifier.json entry for ``spec`` (recursively); ``fasttext`` trains/adopts one fastText model."""
    base = {"kind": spec.kind, "score_key": f"{spec.name}_score"}
    if spec.kind == "fasttext":
        return fasttext(spec)
    if spec.kind == "transformer":
        assert spec.transformer is not None
        return base | _transformer_info(spec)
    if spec.kind == "blocklist":
        assert spec.blocklist is not None
        params = spec.blocklist.model_dump(exclude={"terms_file"})
        if spec.blocklist.terms_file:
            params["terms"] = params["terms"] + read_terms(spec.blocklist.terms_file)
        build_scorer(base | {"params": params}, Path("."))  # a bad regex fails here, naming the pattern
        return base | {"params": params}
    if spec.kind == "cascade":
        return base | {"stages": [prepare(s, fasttext) | {"escalate_at": s.escalate_at} for s in spec.stages]}
    return base | {"classifiers": [prepare(c, fasttext) for c in spec.classifiers]}


def _transformer_info(spec: ClassifierSpec) -> dict[str, Any]:
    """Model (a resolved local folder or a hub id), fingerprint, label, params; ``max_length`` capped at what
    the model takes (``filters.transformer.length_limit``; the cap is logged and kept under ``max_length_cap``).
    The model is built on the meta device (no weights read) to know its shapes."""
    from filters.transformer import effective_max_length, load_model, resolve_label

    assert spec.transformer is not None
    params = spec.transformer.model_dump(exclude={"model", "revision"})
    model = spec.transformer.model
    local = os.path.isdir(model)
    tokenizer, meta_model = load_model(model, spec.transformer.revision, meta=True)
    resolve_label(meta_model.config.id2label, spec.transformer.label, spec.positive_label)
    params["max_length"], cap = effective_max_length(params["max_length"], params["stride"], meta_model, tokenizer)
    info: dict[str, Any] = {
        "model": str(Path(model).resolve()) if local else model,
        "revision": spec.transformer.revision,
        "fingerprint": folder_fingerprint(Path(model)) if local else None,
        "positive_label": spec.positive_label,
        "params": params,
    }
    if cap is not None:
        log.warning("classifier %s: transformer.max_length %d capped at %d (%s)", spec.name, cap["configured"],
                    cap["effective"], cap["limited_by"])
        info["max_length_cap"] = cap
    return info


def folder_fingerprint(folder: Path) -> str:
    """sha256[:16] over the relative names and bytes of every file in a model folder (sorted)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def files_fingerprint(paths: list[str]) -> str:
    """sha256[:16] over the paths (sorted) and the content of each file or model folder they name: the
    fingerprint of a stage config that names files only by path."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.encode())
        digest.update((folder_fingerprint(Path(path)) if Path(path).is_dir() else file_sha256(Path(path))).encode())
    return digest.hexdigest()[:16]


def build_scorer(
    info: dict[str, Any], folder: Path, *, batch_size: int | None = None, flag_at: float = 0.5
) -> BatchScorer:
    """The scorer step described by a classifier.json entry (models load lazily, on first batch)."""
    kind, key = info.get("kind"), info.get("score_key")
    sized = {"batch_size": batch_size} if batch_size else {}
    if kind == "fasttext":
        return FastTextScorer(str(Path(folder) / info["path"]), key, info["positive_label"], **sized)
    if kind == "transformer":
        from filters.transformer import TransformerScorer

        params = dict(info["params"])
        return TransformerScorer(
            info["model"], key, positive_label=info["positive_label"], revision=info.get("revision"), **params
        )
    if kind == "blocklist":
        params = dict(info["params"])
        return BlocklistScorer(key, params.pop("terms"), params.pop("patterns"), **params, **sized)
    if kind == "cascade":
        stages = [build_scorer(s, folder, batch_size=batch_size) for s in info["stages"]]
        thresholds = [s["escalate_at"] for s in info["stages"][:-1]]
        return CascadeScorer(key, stages, thresholds, flag_at=flag_at, **sized)
    if kind == "ensemble":
        members = [build_scorer(c, folder, batch_size=batch_size) for c in info["classifiers"]]
        return EnsembleScorer(key, members, **sized)
    raise InputDataError(
        f"classifier.json kind must be one of fasttext, transformer, blocklist, cascade, "
        f"ensemble; got {kind!r}"
    )


def score_keys(info: dict[str, Any]) -> list[str]:
    """Every metadata score key the described scorer writes, its own first."""
    keys = [info["score_key"]]
    for child in (*info.get("stages", []), *info.get("classifiers", [])):
        keys += [k for k in score_keys(child) if k not in keys]
    return keys


def policies(info: dict[str, Any]) -> dict[str, Any]:
    """Per score key: the transformer long-document policy (chunking, max_length, stride, max_chunks; when
    max_length was capped, ``max_length_configured`` and ``max_length_limited_by``)."""
    found: dict[str, Any] = {}
    if info.get("kind") == "transformer":
        params = info["params"]
        found[info["score_key"]] = {k: params[k] for k in ("chunking", "max_length", "stride", "max_chunks")}
        if info.get("max_length_cap"):
            cap = info["max_length_cap"]
            found[info["score_key"]] |= {"max_length_configured": cap["configured"],
                                         "max_length_limited_by": cap["limited_by"]}
    for child in (*info.get("stages", []), *info.get("classifiers", [])):
        found |= policies(child)
    return found


def evaluate_scorer(
    scorer: BatchScorer, heldout: Path, *, label_key: str = "label", positive_label: str = "misaligned"
) -> dict[str, Any]:
    """Precision/recall/F1 at 0.5, ROC-AUC, fraction flagged at 0.1..0.9 of any scorer on a labelled set."""

    pairs = read_labelled(Path(heldout), label_key)
    labels = {label for _, label in pairs}
    if positive_label not in labels:
        raise ConfigError(
            f"positive_label {positive_label!r} not among {label_key!r} values {sorted(labels)} of {heldout}"
        )
    docs = [Document(text=text, id=str(i), metadata={}) for i, (text, _) in enumerate(pairs)]
    scores: list[float] = []
    for start in range(0, len(docs), scorer.batch_size):
        scores += scorer.score_batch(docs[start : start + scorer.batch_size])
    return binary_metrics(scores, [label == positive_label for _, label in pairs])
