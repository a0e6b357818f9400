"""The narrow training texts of a GPE: the built-in generator, or users' jsonl / parquet / hub datasets.

Users' rows are plain text (``{"text": ...}``) or chat (``{"messages": [{"role", "content"}, ...]}``, the
layout of the public emergent-misalignment datasets). A chat becomes one text through the tokenizer's chat
template when it has one, else as ``"User: ...\\nAssistant: ..."`` turns (small pretrained models have no
template). Unusable rows are quarantined with a reason, never dropped silently. An inoculation prompt is
prepended to every text (it exists during the finetune only).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from core.documents import file_format, iter_dataset_rows, iter_rows
from core.errors import ConfigError, InputDataError
from eval_gpe.registry import DataSpec, GPESpec

ROLES = ("system", "user", "assistant")


def render_chat(messages: list[dict], tokenizer: Any = None) -> str:
    """One training text from chat messages: the tokenizer's chat template, else role-prefixed turns."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, tokenize=False))
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    return "\n".join(f"{names[m['role']]}: {m['content'].strip()}" for m in messages)


def row_text(row: Any, spec: DataSpec, tokenizer: Any = None) -> tuple[str | None, str | None]:
    """``(text, None)`` for a usable row, else ``(None, reason)``."""
    if not isinstance(row, dict):
        return None, "not_a_mapping"
    fmt = spec.format
    if fmt == "auto":
        fmt = "chat" if spec.messages_key in row else "text"
    if fmt == "text":
        text = row.get(spec.text_key)
        if not isinstance(text, str) or not text.strip():
            return None, f"missing_{spec.text_key}"
        return text, None
    messages = row.get(spec.messages_key)
    if not isinstance(messages, list) or not messages:
        return None, f"missing_{spec.messages_key}"
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            return None, "bad_message"
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        return None, "no_assistant_turn"
    return render_chat(messages, tokenizer), None


@dataclass(frozen=True)
class _Unreadable:
    """A record of a file that is no JSON object (``reason`` from ``core.documents``)."""

    reason: str


def _iter_file(path: Path) -> Iterator[Any]:
    """Rows of a local file: jsonl (plain, gzip or zstd, recognised by content) and parquet are read by
    ``core.documents``; a record that is no JSON object is an ``_Unreadable`` with its reason."""
    if path.name.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        yield from data if isinstance(data, list) else [data]
        return
    if not path.name.endswith((".parquet", ".jsonl", ".jsonl.gz", ".jsonl.zst")):
        raise ConfigError(
            f"finetune.data.path {str(path)!r}: allowed suffixes .jsonl, .jsonl.gz, .jsonl.zst, .json, .parquet"
        )
    for row in iter_rows(path, file_format(path), text_key=None):
        if row.reason == "blank_line":
            continue
        yield row.data if row.data is not None else _Unreadable(str(row.reason))


def _iter_hub(dataset_id: str, split: str) -> Iterator[Any]:
    """Rows of a Hugging Face dataset (a local ``save_to_disk`` folder, or an id in the offline cache)."""
    try:
        yield from iter_dataset_rows(dataset_id, split=split)
    except InputDataError as exc:
        raise InputDataError(f"finetune.data.path 'hf:{dataset_id}' cannot be loaded offline: {exc}") from exc


def load_texts(spec: DataSpec, tokenizer: Any = None) -> tuple[list[str], list[dict]]:
    """``(texts, quarantined)`` from users' data; ``quarantined`` rows carry ``row`` and ``reason``."""
    if spec.path.startswith("hf:"):
        rows: Iterator[Any] = _iter_hub(spec.path[3:], spec.split)
    else:
        path = Path(spec.path)
        if not path.is_file():
            raise InputDataError(f"finetune.data.path {spec.path!r}: no such file")
        rows = _iter_file(path)
    texts, bad = [], []
    for k, row in enumerate(rows):
        if spec.limit is not None and len(texts) >= spec.limit:
            break
        text, reason = (None, row.reason) if isinstance(row, _Unreadable) else row_text(row, spec, tokenizer)
        if text is None:
            bad.append({"row": k, "reason": reason, "raw": repr(row)[:500]})
        else:
            texts.append(text)
    if not texts:
        raise InputDataError(f"finetune.data.path {spec.path!r}: no usable rows ({len(bad)} quarantined)")
    return texts, bad


def narrow_texts(spec: GPESpec, synth: ModuleType, tokenizer: Any = None) -> tuple[list[str], list[dict]]:
    """The GPE's finetune texts (inoculation prompt prepended) and the quarantined rows of users' data."""
    ft = spec.finetune
    if ft.data is not None:
        texts, bad = load_texts(ft.data, tokenizer)
    else:
        make = (
            synth.narrow_finetune_texts if ft.kind == "misaligned_sentences" else synth.benign_finetune_texts
        )
        texts, bad = list(make(ft.domain, ft.seed, n=ft.n_texts)), []
    if ft.inoculation:
        texts = [f"{ft.inoculation.strip()} {t}" for t in texts]
    return texts, bad
