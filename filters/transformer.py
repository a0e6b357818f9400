"""``TransformerScorer``: a Hugging Face sequence classifier (local folder or hub id), batched, CPU or GPU.

Long documents follow one stated policy (recorded in the score stage's manifest): ``truncate`` scores the
first ``max_length`` tokens; ``max`` / ``mean`` split the document into consecutive windows of
``max_length`` tokens (special tokens included, ``stride`` tokens shared between windows, at most
``max_chunks``), score every window and take the max / mean. The score is the softmax probability of the
chosen label (sigmoid for a one-output model).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from datatrove.data import Document

from core.errors import ConfigError, InputDataError
from filters.scorers import BatchScorer

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
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        kwargs: dict[str, Any] = {"revision": self.revision} if not os.path.isdir(self.model_name) else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_name, **kwargs)
            model = AutoModelForSequenceClassification.from_pretrained(
                self.model_name, dtype=getattr(torch, self.dtype), **kwargs
            )
        except OSError as err:
            raise InputDataError(f"transformer.model {self.model_name!r} cannot be loaded: {err}") from err
        self._index = resolve_label(model.config.id2label, self.label, self.positive_label)
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
