"""The local files and folders a classifier config reads, checked before any stage runs.

``classifier_files`` (called when the experiment config loads, so ``propensity plan`` refuses a bad config
before any stage runs) checks that every local path a classifier (and each cascade stage / ensemble member)
names is there: ``model_path`` (a fastText ``.bin``), ``blocklist.terms_file`` and a local
``transformer.model`` folder (with its ``config.json``; ``transformer.label`` / ``positive_label`` must pick
one of the labels in it, as the score stage would). It returns them, resolved, for ``propensity plan``'s list
of inputs. ``check_fasttext_labels`` loads an adopted fastText model and checks ``positive_label`` is one of
its labels (``propensity plan`` / ``run``).

A transformer ``model`` is told apart the way transformers tells it apart: an existing folder is a local
model; anything else is a hub id, and a string that cannot be a hub id (huggingface_hub's
``validate_repo_id``: a leading ``/``, ``.`` or ``~``, more than one ``/``, a space, ...) can only be a
local folder that is not there. A string that can be a hub id (``models/nope``, ``org/name``) is looked up
in the HF cache by the stage; when that fails, the error says it is not a local folder either.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from core.errors import ConfigError, InputDataError
from filters.config import ClassifierSpec

MODEL_FILES_HINT = "a folder written by save_pretrained (config.json, weights, tokenizer files)"


def hub_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a hub id (huggingface_hub's rule), or None when it can be one."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(value)
    except HFValidationError as err:
        return str(err)
    return None


def model_location(value: str) -> Literal["folder", "missing", "hub"]:
    """``folder``: an existing local folder; ``hub``: not a folder, but a valid hub id; ``missing``: neither
    (a local path that is not there, or an existing file)."""
    if os.path.isdir(value):
        return "folder"
    return "hub" if hub_id_problem(value) is None else "missing"


def not_local(value: str) -> str:
    """'not a local folder (resolved against the working directory: ...)' for a model or tokenizer string."""
    resolved = Path(value).absolute()
    what = "a file, not a folder" if resolved.is_file() else "not a local folder"
    tilde = "; a leading '~' is not expanded" if value.startswith("~") else ""
    return f"{what} (resolved against the working directory: {resolved}{tilde})"


def hub_load_error(value: str, error: BaseException) -> str:
    """The message for a transformer model that failed to load: where it was looked for locally, and the hub
    failure (so a typo'd local path does not read as a network problem)."""
    if os.path.isdir(value):
        return f"the local folder {Path(value).resolve()} cannot be loaded ({MODEL_FILES_HINT} expected): {error}"
    problem = hub_id_problem(value)
    if problem is not None:
        return f"it is {not_local(value)}, and it cannot be a hub id either ({problem})"
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    note = " (HF_HUB_OFFLINE is set: a hub id must already be in the HF cache)" if offline else ""
    return f"it is {not_local(value)}; as a hub id it failed{note}: {error}"


def model_labels(config: dict[str, Any]) -> dict[int, str]:
    """The output labels of a ``config.json`` (transformers' default when it names none: LABEL_0, LABEL_1)."""
    if isinstance(config.get("id2label"), dict) and config["id2label"]:
        return {int(k): str(v) for k, v in config["id2label"].items()}
    n = int(config.get("num_labels", 2))
    return {i: f"LABEL_{i}" for i in range(n)}


def classifier_files(spec: ClassifierSpec, where: str = "classifier") -> list[tuple[str, str]]:
    """Every local file or folder ``spec`` (and its stages / members) reads besides labelled data, checked:
    ``[(config key, resolved path or a note)]``. Raises ConfigError naming the key, the resolved path and the
    fix. A transformer hub id is listed with a note (it is looked up in the HF cache by the stage)."""
    found: list[tuple[str, str]] = []
    if spec.model_path:
        path = Path(spec.model_path)
        if not path.exists():
            raise ConfigError(f"{where}.model_path: file {spec.model_path!r} does not exist (resolved against the "
                              f"working directory: {path.absolute()}); give the path of a trained fastText .bin, "
                              f"or train_data to train one")
        if not path.is_file():
            raise ConfigError(f"{where}.model_path: {spec.model_path!r} is not a file (a fastText .bin is expected)")
        found.append((f"{where}.model_path", str(path.resolve())))
    if spec.blocklist is not None and spec.blocklist.terms_file:
        path = Path(spec.blocklist.terms_file)
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "does not exist"
            raise ConfigError(f"{where}.blocklist.terms_file: file {spec.blocklist.terms_file!r} {what} "
                              f"(resolved against the working directory: {path.absolute()}); give a text file "
                              "with one term per line, or list the terms under blocklist.terms")
        found.append((f"{where}.blocklist.terms_file", str(path.resolve())))
    if spec.transformer is not None:
        found.append(_transformer_model(spec, where))
    for key, sub in spec.members(where):
        found += classifier_files(sub, key)
    return found


def _transformer_model(spec: ClassifierSpec, where: str) -> tuple[str, str]:
    """A local model folder must hold config.json and the label the score is read from; a hub id is noted."""
    assert spec.transformer is not None
    key, model = f"{where}.transformer.model", spec.transformer.model
    location = model_location(model)
    if location == "hub":
        return key, (f"{model}: a hub id (there is no local folder {Path(model).absolute()}), read from the HF "
                     "cache by the classifier stage")
    if location == "missing":
        raise ConfigError(f"{key}: {model!r} does not exist: it is {not_local(model)} and cannot be a hub id "
                          f"({hub_id_problem(model)}). Give {MODEL_FILES_HINT}, or a hub id (org/name) already "
                          "in the HF cache")
    folder = Path(model).resolve()
    config_file = folder / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{key}: the folder {folder} is not a model folder: it has no config.json (expected "
                          f"{MODEL_FILES_HINT})") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"{key}: {config_file} cannot be read as JSON: {err}") from None
    labels = model_labels(config)
    label = spec.transformer.label
    field, wanted = ("transformer.label", label) if label is not None else ("positive_label", spec.positive_label)
    try:
        resolve_label(labels, label, spec.positive_label)
    except ConfigError:
        raise ConfigError(f"{where}.{field}: {wanted!r} is not one of the labels {labels} of the model {folder} "
                          f"(id2label in its config.json); set {where}.transformer.label to one of them (a name "
                          "or an index)") from None
    named = any(name != f"LABEL_{index}" for index, name in labels.items())
    if label is None and "positive_label" in spec.model_fields_set and len(labels) > 1 and named \
            and spec.positive_label not in labels.values():
        raise ConfigError(f"{where}.positive_label: {spec.positive_label!r} is not one of the labels {labels} of the "
                          f"model {folder} (id2label in its config.json), so the score would silently be label "
                          f"{labels[1]!r} (index 1); set {where}.transformer.label to the label to score (a name "
                          "or an index), or positive_label to one of the model's labels")
    return key, str(folder)


def check_fasttext_labels(spec: ClassifierSpec, where: str = "classifier") -> None:
    """An adopted fastText model (``model_path``, here and in stages / members) must load and have
    ``positive_label`` among its labels; raises ConfigError naming the key, the model and its labels."""
    from filters.fasttext_model import load_fasttext

    if spec.kind == "fasttext" and spec.model_path:
        path = Path(spec.model_path).resolve()
        try:
            model = load_fasttext(path)
        except InputDataError as err:
            raise ConfigError(f"{where}.model_path: {err}") from None
        labels = sorted(label.removeprefix("__label__") for label in model.get_labels())
        if spec.positive_label not in labels:
            raise ConfigError(f"{where}.positive_label: {spec.positive_label!r} is not a label of the fastText "
                              f"model {path}; its labels: {labels} (set {where}.positive_label to one of them)")
    for key, sub in spec.members(where):
        check_fasttext_labels(sub, key)


def resolve_label(id2label: dict[int, str], label: str | int | None, positive_label: str) -> int:
    """The output index used as the score; a ConfigError lists the model's labels when none fits."""
    labels = {int(k): str(v) for k, v in id2label.items()}
    if len(labels) == 1:
        return 0
    if isinstance(label, int):
        if label not in labels:
            raise ConfigError(f"transformer.label index {label} out of range; model labels: {labels}")
        return label
    wanted = label if label is not None else positive_label
    for index, name in labels.items():
        if name == wanted:
            return index
    if label is None and len(labels) == 2:
        return 1
    raise ConfigError(f"transformer.label {wanted!r} is not a label of the model; labels: {labels}")
