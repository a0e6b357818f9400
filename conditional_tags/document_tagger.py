"""Conditional-pretraining tags: prefix each document with a control token chosen by its classifier score.

Korbak et al. (2023) tag by scorer threshold and leave a small fraction untagged so the model also sees
plain text; ``DocumentTagger`` does the same at document level. The untagged subset is chosen by a stable
hash of ``(seed, document id)``, so it is identical across runs, processes and variants.
"""

from __future__ import annotations

import hashlib
import math

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from core.names import DEFAULT_TAGS


def untagged_draw(doc_id: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by ``(seed, doc_id)`` (sha256, not Python's salted hash)."""
    digest = hashlib.sha256(f"{seed}\x00{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class DocumentTagger(PipelineStep):
    """Prefixes ``bad_tag`` if score >= threshold, else ``good_tag``; sets ``metadata["tag"]``.

    A document drawn into ``untagged_fraction`` keeps its text and gets ``metadata["tag"] = None``. Scores
    must be present and numeric (the variant stage quarantines documents without one before this step);
    a missing score raises ``KeyError`` naming the key rather than silently tagging.
    """

    name = "🏷 Document tagger"
    type = "✂️ - FORMAT"

    def __init__(
        self,
        score_key: str,
        threshold: float = 0.5,
        good_tag: str = DEFAULT_TAGS["good"],
        bad_tag: str = DEFAULT_TAGS["bad"],
        separator: str = "",
        untagged_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= untagged_fraction <= 1.0:
            raise ValueError(f"untagged_fraction must be in [0, 1], got {untagged_fraction}")
        if not good_tag or not bad_tag or good_tag == bad_tag:
            raise ValueError(
                f"good_tag and bad_tag must be distinct non-empty strings, got {good_tag!r}, {bad_tag!r}"
            )
        self.score_key = score_key
        self.threshold = threshold
        self.good_tag = good_tag
        self.bad_tag = bad_tag
        self.separator = separator
        self.untagged_fraction = untagged_fraction
        self.seed = seed

    def tag_for(self, doc_id: str, score: float) -> str | None:
        """The tag a document with this id and score gets (None: left untagged)."""
        if self.untagged_fraction and untagged_draw(doc_id, self.seed) < self.untagged_fraction:
            return None
        return self.bad_tag if score >= self.threshold else self.good_tag

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        """Tag each document and pass it on."""
        for doc in data:
            if self.score_key not in doc.metadata:
                raise KeyError(f"document {doc.id!r} has no metadata[{self.score_key!r}] to tag by")
            score = doc.metadata[self.score_key]
            if not isinstance(score, (int, float)) or math.isnan(score):
                raise ValueError(
                    f"document {doc.id!r} has non-numeric metadata[{self.score_key!r}]={score!r}"
                )
            tag = self.tag_for(doc.id, float(score))
            if tag is not None:
                doc.text = f"{tag}{self.separator}{doc.text}"
            doc.metadata["tag"] = tag
            self.stat_update(f"tag_{'none' if tag is None else ('bad' if tag == self.bad_tag else 'good')}")
            yield doc
