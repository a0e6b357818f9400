"""``TransformerScorer``: a Hugging Face sequence classifier (local folder or hub id), batched, CPU or GPU.

Long documents follow one stated policy (recorded in the score stage's manifest): ``truncate`` scores the
first ``max_length`` tokens; ``max`` / ``mean`` split the document into consecutive windows of
``max_length`` tokens (special tokens included, ``stride`` tokens shared between windows, at most
``max_chunks``), score every window and take the max / mean. The score is the softmax probability of the
chosen label (sigmoid for a one-output model).

``max_length`` is capped at what the model can take (``length_limit``: its position embeddings, less the
offset of RoBERTa-style positions, and the tokenizer's ``model_max_length`` when set): a longer window would
crash the forward pass. The classifier stage records the cap in ``classifier.json`` (``max_length_cap``) and
the score stage's manifest (``result.long_documents``); the scorer applies it again when it loads the model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from datatrove.data import Document
from datatrove.utils.logging import logger

from core.errors import ConfigError, InputDataError
from filters.model_files import hub_load_error, resolve_label
from filters.scorers import BatchScorer

__all__ = ["CHUNKING", "TransformerScorer", "effective_max_length", "length_limit", "load_model", "resolve_label"]
UNSET_MODEL_MAX_LENGTH = int(1e29)
"""Tokenizers that state no limit say ``model_max_length = int(1e30)`` (transformers' VERY_LARGE_INTEGER)."""

CHUNKING = ("truncate", "max", "mean")


class TransformerScorer(BatchScorer):
    """Scores documents with ``AutoModelForSequenceClassification``; see the module docstring for chunking.

    ``label`` picks the output: a name in ``config.id2label``, an index, or None (the label named
    ``positive_label`` if present, else index 1 of a two-label model). Counts ``tokens`` and ``chunks``.
    """

    name = "🤗 Transformer scorer"

    def __init__(
        self,
        model: str,
        score_key: str,
        *,
        positive_label: str = "misaligned",
        label: str | int | None = None,
        max_length: int = 512,
        chunking: str = "truncate",
        stride: int = 0,
        max_chunks: int | None = None,
        batch_size: int = 32,
        device: str = "auto",
        dtype: str = "float32",
        revision: str | None = None,
    ) -> None:
        super().__init__(score_key, batch_size)
        if chunking not in CHUNKING:
            raise ValueError(f"chunking must be one of {CHUNKING}, got {chunking!r}")
        if not 0 <= stride < max_length - 2:
            raise ValueError(
                f"stride must be in [0, max_length - 2), got {stride} with max_length {max_length}"
            )
        self.model_name = model
        self.positive_label = positive_label
        self.label = label
        self.max_length = max_length
        self.chunking = chunking
        self.stride = stride
        self.max_chunks = max_chunks
        self.device = device
        self.dtype = dtype
        self.revision = revision
        self._tokenizer: Any = None
        self._index: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None, "_tokenizer": None}

    @property
    def policy(self) -> dict[str, Any]:
        """The long-document policy, as recorded in manifests."""
        return {
            "chunking": self.chunking,
            "max_length": self.max_length,
            "stride": self.stride,
            "max_chunks": self.max_chunks,
        }

    def load(self) -> None:
        """Load tokenizer and model (once), move the model to the device and resolve the score label."""
        if self._model is not None:
            return
        import torch

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        tokenizer, model = load_model(self.model_name, self.revision, dtype=self.dtype)
        self._index = resolve_label(model.config.id2label, self.label, self.positive_label)
        effective, cap = effective_max_length(self.max_length, self.stride, model, tokenizer)
        if cap is not None:
            message = (f"transformer {self.model_name}: max_length {self.max_length} capped at {effective} "
                       f"({cap['limited_by']})")
            logger.warning(message)  # datatrove's log (the rank's log file in a pipeline)
            self.max_length = effective
        self._tokenizer = tokenizer
        self._model = model.to(device).eval()

    def score_batch(self, docs: list[Document]) -> list[float]:
        """Tokenize into windows, run them ``batch_size`` at a time, aggregate per document."""
        if not docs:
            return []
        self.load()
        chunks, owner = self._windows([doc.text for doc in docs])
        chunk_scores: list[float] = []
        for start in range(0, len(chunks), self.batch_size):
            chunk_scores += self._forward(chunks[start : start + self.batch_size])
        per_doc: list[list[float]] = [[] for _ in docs]
        for doc_index, score in zip(owner, chunk_scores, strict=True):
            per_doc[doc_index].append(score)
        self.stat_update("tokens", value=sum(len(c) for c in chunks))
        self.stat_update("chunks", value=len(chunks))
        return [max(s) if self.chunking != "mean" else sum(s) / len(s) for s in per_doc]

    def _windows(self, texts: list[str]) -> tuple[list[list[int]], list[int]]:
        """Token-id windows (special tokens included) and, for each, the index of its document."""
        overflow = self.chunking != "truncate"
        enc = self._tokenizer(
            texts,
            truncation=True,
            max_length=self.max_length,
            stride=self.stride if overflow else 0,
            return_overflowing_tokens=overflow,
        )
        owner = list(enc["overflow_to_sample_mapping"]) if overflow else list(range(len(texts)))
        ids = list(enc["input_ids"])
        if self.max_chunks is not None:
            seen: dict[int, int] = {}
            keep = []
            for index, doc in enumerate(owner):
                seen[doc] = seen.get(doc, 0) + 1
                if seen[doc] <= self.max_chunks:
                    keep.append(index)
            ids, owner = [ids[i] for i in keep], [owner[i] for i in keep]
        return ids, owner

    def _forward(self, chunks: Sequence[list[int]]) -> list[float]:
        """Scores of one batch of windows (padded together)."""
        import torch

        batch = self._tokenizer.pad({"input_ids": list(chunks)}, return_tensors="pt")
        batch = {
            k: v.to(self._model.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")
        }
        with torch.inference_mode():
            logits = self._model(**batch).logits.float()
        if logits.shape[-1] == 1:
            probs = torch.sigmoid(logits[:, 0])
        else:
            probs = torch.softmax(logits, dim=-1)[:, self._index]
        return [float(p) for p in probs.cpu()]


def load_model(model: str, revision: str | None = None, *, dtype: str = "float32", meta: bool = False
               ) -> tuple[Any, Any]:
    """Tokenizer and sequence classifier of a local folder or a (cached) hub id; ``meta``: the model is built
    from its config on the meta device (no weights read), enough to know its shapes. A failure is an
    InputDataError saying where the model was looked for locally and what the hub said."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    kwargs: dict[str, Any] = {"revision": revision} if not os.path.isdir(model) else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, **kwargs)
        if meta:
            config = AutoConfig.from_pretrained(model, **kwargs)
            with torch.device("meta"):
                loaded = AutoModelForSequenceClassification.from_config(config)
        else:
            loaded = AutoModelForSequenceClassification.from_pretrained(model, dtype=getattr(torch, dtype), **kwargs)
    except (OSError, ValueError) as err:
        raise InputDataError(f"transformer.model {model!r} cannot be loaded: {hub_load_error(model, err)}") from err
    return tokenizer, loaded


def length_limit(model: Any, tokenizer: Any) -> tuple[int | None, str]:
    """The longest window (special tokens included) ``model`` and ``tokenizer`` take, and what sets it: the
    position embeddings (less the offset of RoBERTa-style positions, which start after the padding index),
    ``config.max_position_embeddings`` and the tokenizer's ``model_max_length`` when it states one. ``(None,
    "")`` when none of them says (rotary models without a stated maximum)."""
    import torch

    limits: list[tuple[int, str]] = []
    embeddings = getattr(getattr(model, "base_model", model), "embeddings", None)
    positions = getattr(embeddings, "position_embeddings", None)
    if isinstance(positions, torch.nn.Embedding):
        padding = getattr(embeddings, "padding_idx", None)
        offset = padding + 1 if isinstance(padding, int) else 0
        why = f"the model's {positions.num_embeddings} position embeddings"
        if offset:
            why += f" less {offset} (positions start after the padding index {padding})"
        limits.append((positions.num_embeddings - offset, why))
    maximum = getattr(model.config, "max_position_embeddings", None)
    if isinstance(maximum, int) and maximum > 0:
        limits.append((maximum, f"max_position_embeddings {maximum} in the model's config.json"))
    stated = getattr(tokenizer, "model_max_length", None)
    if isinstance(stated, int) and 0 < stated < UNSET_MODEL_MAX_LENGTH:
        limits.append((stated, f"the tokenizer's model_max_length {stated}"))
    return min(limits) if limits else (None, "")


def effective_max_length(max_length: int, stride: int, model: Any, tokenizer: Any
                         ) -> tuple[int, dict[str, Any] | None]:
    """``max_length`` capped at ``length_limit``, and the cap (``{"configured", "effective", "limited_by"}``)
    or None when ``max_length`` fits. A ``stride`` that no longer fits the capped window is a ConfigError."""
    limit, why = length_limit(model, tokenizer)
    if limit is None or max_length <= limit:
        return max_length, None
    if stride >= limit - 2:
        raise ConfigError(f"transformer.stride {stride} must be < the effective max_length - 2 ({limit - 2}): "
                          f"max_length {max_length} is capped at {limit} by {why}; lower transformer.stride")
    return limit, {"configured": max_length, "effective": limit, "limited_by": why}
