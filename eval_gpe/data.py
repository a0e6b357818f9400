"""The narrow training texts of a GPE: the built-in generator, or users' jsonl / parquet / hub datasets.

Users' rows are plain text (``{"text": ...}``) or chat (``{"messages": [{"role", "content"}, ...]}``, the
layout of the public emergent-misalignment datasets). A chat becomes one text through the tokenizer's chat
template when it has one, else as ``"User: ...\\nAssistant: ..."`` turns (small pretrained models have no
template). Unusable rows are quarantined with a reason, never dropped silently. An inoculation prompt is
prepended to every text (it exists during the finetune only).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

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


def _iter_file(path: Path) -> Iterator[Any]:
    """Rows of a local file (``"<invalid json>"`` marks a line that does not parse)."""
    name = path.name
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
    elif name.endswith((".jsonl", ".jsonl.gz", ".json")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            if name.endswith(".json"):
                data = json.load(f)
                yield from data if isinstance(data, list) else [data]
                return
            for line in f:
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError:
                        yield "<invalid json>"
    else:
        raise ConfigError(
            f"finetune.data.path {str(path)!r}: allowed suffixes .jsonl, .jsonl.gz, .json, .parquet"
        )


def _iter_hub(dataset_id: str, split: str) -> Iterator[Any]:
    """Rows of a Hugging Face dataset (a local ``save_to_disk`` folder, or an id in the offline cache)."""
    import datasets

    try:
        if Path(dataset_id).is_dir():
            ds = datasets.load_from_disk(dataset_id)
            ds = ds[split] if isinstance(ds, datasets.DatasetDict) else ds
        else:
            ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; the message names the id
        raise InputDataError(
            f"finetune.data.path 'hf:{dataset_id}' (split {split!r}) cannot be loaded offline: {exc}"
        ) from exc
    yield from ds


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
        text, reason = (None, "invalid_json") if row == "<invalid json>" else row_text(row, spec, tokenizer)
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
