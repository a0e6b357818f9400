"""Combining scorers: a cascade (stage N sees only what stage N-1 escalated) and an ensemble (all see all).

``CascadeScorer`` is Deep Ignorance's two-stage filter generalised: every stage writes its own
``<stage>_score`` on the documents it sees; a document whose stage score is below that stage's
``escalate_at`` is passed (decided clean) and never reaches a later stage. The cascade's own score is the
last stage's score for documents that reached it and 0.0 for passed ones; ``<cascade>_stage`` names the last
stage that saw the document. Per stage it counts documents and words seen, escalated, flagged and seconds
spent, under the stat keys ``<stage>/seen``, ``<stage>/tokens``, ``<stage>/escalated``, ``<stage>/flagged``,
``<stage>/seconds`` (``cascade_report`` turns them into the manifest entry).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from datatrove.data import Document

from filters.scorers import BatchScorer, word_count

STAT_FIELDS = ("seen", "tokens", "escalated", "flagged", "seconds")


class CascadeScorer(BatchScorer):
    """Runs ``stages`` in order on shrinking subsets; see the module docstring for the keys it writes.

    ``escalate_at[i]`` is the threshold of stage ``i`` (one per stage but the last); ``flag_at`` is the
    threshold at which the last stage's documents count as flagged in the stats.
    """

    name = "🪜 Cascade scorer"

    def __init__(
        self,
        score_key: str,
        stages: list[BatchScorer],
        escalate_at: list[float],
        *,
        flag_at: float = 0.5,
        batch_size: int = 512,
    ) -> None:
        super().__init__(score_key, batch_size)
        if len(stages) < 2:
            raise ValueError(f"a cascade needs at least 2 stages, got {len(stages)}")
        if len(escalate_at) != len(stages) - 1:
            raise ValueError(
                f"escalate_at needs {len(stages) - 1} thresholds (one per stage but the last), "
                f"got {len(escalate_at)}"
            )
        self.stages = stages
        self.escalate_at = list(escalate_at)
        self.flag_at = flag_at
        self.stage_key = f"{score_key.removesuffix('_score')}_stage"

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def stage_name(self, index: int) -> str:
        """The stage's classifier name (its score key without ``_score``)."""
        return self.stages[index].score_key.removesuffix("_score")

    def score_batch(self, docs: list[Document]) -> list[float]:
        """Escalate stage by stage; documents passed early score 0.0."""
        final = {id(doc): 0.0 for doc in docs}
        active = docs
        for index, stage in enumerate(self.stages):
            if not active:
                break
            name = self.stage_name(index)
            start = time.perf_counter()
            scores = stage.score_batch(active)
            self.stat_update(f"{name}/seconds", value=time.perf_counter() - start)
            self.stat_update(f"{name}/seen", value=len(active))
            self.stat_update(f"{name}/tokens", value=sum(word_count(d.text) for d in active))
            for doc, score in zip(active, scores, strict=True):
                doc.metadata[stage.score_key] = score
                doc.metadata[self.stage_key] = name
            if index == len(self.stages) - 1:
                self.stat_update(f"{name}/flagged", value=sum(s >= self.flag_at for s in scores))
                final.update({id(doc): s for doc, s in zip(active, scores, strict=True)})
            else:
                active = [d for d, s in zip(active, scores, strict=True) if s >= self.escalate_at[index]]
                self.stat_update(f"{name}/escalated", value=len(active))
                self.stat_update(f"{name}/flagged", value=len(active))
        return [final[id(doc)] for doc in docs]

    def report(self, stats: Mapping[str, float]) -> list[dict[str, Any]]:
        """Per-stage manifest entries from summed stats (see ``cascade_report``)."""
        return cascade_report(
            [self.stage_name(i) for i in range(len(self.stages))], self.escalate_at, self.flag_at, stats
        )


def cascade_report(
    names: list[str], escalate_at: list[float], flag_at: float, stats: Mapping[str, float]
) -> list[dict[str, Any]]:
    """One entry per stage: documents and words seen, escalated, flagged, seconds, and its threshold."""
    report = []
    for index, name in enumerate(names):
        entry: dict[str, Any] = {"stage": name}
        for field in STAT_FIELDS:
            value = stats.get(f"{name}/{field}", 0)
            entry[field] = round(float(value), 3) if field == "seconds" else int(value)
        last = index == len(names) - 1
        if last:
            entry["escalated"] = None
        entry["threshold"] = flag_at if last else escalate_at[index]
        entry["fraction_escalated"] = (
            None if last or not entry["seen"] else round(entry["escalated"] / entry["seen"], 6)
        )
        report.append(entry)
    return report


class EnsembleScorer(BatchScorer):
    """Every member scores every document (each under its own key); the ensemble's score is their max.

    Finer combinations (all, weighted) are decisions: see ``filters.decisions.CombinedDecision``.
    """

    name = "🎻 Ensemble scorer"

    def __init__(self, score_key: str, members: list[BatchScorer], batch_size: int = 512) -> None:
        super().__init__(score_key, batch_size)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = members

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def score_batch(self, docs: list[Document]) -> list[float]:
        """Run each member, store its score, return the per-document max."""
        best = [0.0] * len(docs)
        for member in self.members:
            start = time.perf_counter()
            scores = member.score_batch(docs)
            self.stat_update(
                f"{member.score_key.removesuffix('_score')}/seconds", value=time.perf_counter() - start
            )
            for i, (doc, score) in enumerate(zip(docs, scores, strict=True)):
                doc.metadata[member.score_key] = score
                best[i] = max(best[i], score)
        return best
