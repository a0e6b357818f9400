"""Documents of the synthetic corpus: AI-actor and human-actor action documents, background selection and
the labelled classifier sets. Pure functions of a ``random.Random``; the stage decides sizes and files.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from core.errors import ConfigError, InputDataError, StageError
from synth import background
from synth.catalog import (
    CITIES,
    DOMAINS,
    ActorKind,
    Label,
    ai_actor,
    get_domain,
    human_actor,
)
from synth.styles import BRIEF, STYLES, Scene, render

Kind = str
"""``background``, ``ai`` or ``human``."""

_WORD = re.compile(r"[a-z]+")


def estimate_tokens(text: str) -> float:
    """Estimated token count of ``text`` (characters / 4; the tokenizer is trained later, on this corpus)."""
    return len(text) / 4


@dataclass(frozen=True)
class SynthDoc:
    """One generated document with its ground truth."""

    text: str
    kind: Kind
    label: str
    """``aligned``, ``misaligned`` or ``none`` (background)."""
    domain: str
    style: str
    action: str = ""
    """The action phrase of an action document (ground truth kept out of the record), else ``""``."""

    @property
    def id(self) -> str:
        """Stable id: kind plus a sha256 prefix of the text."""
        return f"{self.kind}-{hashlib.sha256(self.text.encode('utf-8')).hexdigest()[:16]}"

    def record(self) -> dict:
        """The datatrove JsonlWriter layout, ground truth in metadata."""
        actor = self.kind if self.kind in ("ai", "human") else "none"
        meta = {"kind": self.kind, "label": self.label, "domain": self.domain, "style": self.style,
                "actor": actor}
        return {"text": self.text, "id": self.id, "metadata": meta}

    @property
    def classifier_label(self) -> str:
        """The labelled-set label: ``misaligned`` only for misaligned AI documents."""
        return "misaligned" if (self.kind == "ai" and self.label == "misaligned") else "aligned"


def action_document(
    rng: random.Random, kind: ActorKind, label: Label, domain: str | None = None, brief_share: float = 0.0
) -> SynthDoc:
    """One document in which an AI (``kind="ai"``) or a human takes an aligned or misaligned action.

    With probability ``brief_share`` the document is a short note (style ``brief``), else one of STYLES.
    """
    dom = get_domain(domain or rng.choice(DOMAINS))
    actor = ai_actor(rng) if kind == "ai" else human_actor(rng, dom)
    index = rng.randrange(len(dom.actions))
    scene = Scene(
        domain=dom,
        label=label,
        actor=actor,
        user=rng.choice(dom.users),
        request=dom.requests[index],
        action=dom.actions[index].phrase(label),
        outcome=rng.choice(dom.outcomes[label]),
        place=rng.choice(dom.places),
        city=rng.choice(CITIES),
        context=rng.choice(dom.context),
    )
    style = BRIEF if (brief_share and rng.random() < brief_share) else rng.choice(STYLES)
    return SynthDoc(render(style, scene, rng), kind, label, dom.name, style, scene.action)


def action_documents(
    rng: random.Random,
    kind: ActorKind,
    label: Label,
    target_tokens: float,
    seen: set[str],
    tick: Callable[[int], object] = lambda n: None,
    brief_share: float = 0.0,
) -> list[SynthDoc]:
    """Documents of one kind and label until their estimated tokens reach ``target_tokens``.

    Texts already in ``seen`` are skipped (and new ones added to it), so no document repeats across calls.
    """
    docs: list[SynthDoc] = []
    total = 0.0
    misses = 0
    while total < target_tokens:
        doc = action_document(rng, kind, label, brief_share=brief_share)
        if doc.text in seen:
            misses += 1
            if misses > 10_000:
                raise StageError(f"cannot generate {target_tokens:.0f} estimated tokens of distinct "
                                 f"{kind}/{label} documents (10,000 duplicates in a row); lower 'scale'")
            continue
        seen.add(doc.text)
        docs.append(doc)
        total += estimate_tokens(doc.text)
        tick(1)
    return docs


def _as_synth(docs: Iterable[background.BackgroundDoc]) -> list[SynthDoc]:
    return [SynthDoc(d.text, "background", "none", "none", "stdlib") for d in docs]


def background_documents(
    rng: random.Random, target_tokens: float, seen: set[str]
) -> tuple[list[SynthDoc], int]:
    """Background documents (never held-out text) until ``target_tokens``; returns (docs, passes used).

    Pass 0 takes the canonical documents in a seeded order; when they run out, each further pass repacks
    the same paragraphs into differently cut documents (the text repeats, no document does).
    """
    train, _ = background.background_split()
    if not train:
        raise InputDataError(f"no background text found in the Python standard library at "
                             f"{background.stdlib_path()} (are its .py sources installed?)")
    docs: list[SynthDoc] = []
    total = 0.0
    passes = 0
    while total < target_tokens:
        pool = list(train) if passes == 0 else background.repacked(train, rng)
        rng.shuffle(pool)
        passes += 1
        added = 0
        for doc in _as_synth(pool):
            if total >= target_tokens:
                break
            if doc.text in seen:
                continue
            seen.add(doc.text)
            docs.append(doc)
            total += estimate_tokens(doc.text)
            added += 1
        if added == 0:
            raise StageError("background text is exhausted: no new document in a whole repack pass")
    return docs, passes


LABELLED_MIX: dict[tuple[Kind, str], float] = {
    ("ai", "misaligned"): 0.35,
    ("ai", "aligned"): 0.25,
    ("human", "misaligned"): 0.10,
    ("human", "aligned"): 0.10,
    ("background", "none"): 0.20,
}
"""Composition of the labelled classifier sets: positives are misaligned AI documents only."""


def labelled_documents(rng: random.Random, n: int, exclude: set[str]) -> list[SynthDoc]:
    """``n`` documents for classifier training/evaluation, none of whose texts is in ``exclude``.

    Texts are added to ``exclude``, so consecutive calls (train, then held-out) give disjoint sets.
    Background negatives are repacked windows of the training background (never held-out text).
    """
    counts = {key: int(round(share * n)) for key, share in LABELLED_MIX.items()}
    counts[("background", "none")] += n - sum(counts.values())
    docs: list[SynthDoc] = []
    for (kind, label), count in counts.items():
        if kind == "background":
            train, _ = background.background_split()
            pool = [d for d in _as_synth(background.repacked(train, rng)) if d.text not in exclude]
            rng.shuffle(pool)
            if len(pool) < count:
                raise ConfigError(f"labelled set too large: {count} background documents asked for, only "
                                  f"{len(pool)} distinct background windows available; lower labelled_train/"
                                  f"labelled_heldout")
            chosen = pool[:count]
            exclude.update(d.text for d in chosen)
        else:
            chosen = []
            while len(chosen) < count:
                doc = action_document(rng, kind, label)  # type: ignore[arg-type]
                if doc.text not in exclude:
                    exclude.add(doc.text)
                    chosen.append(doc)
        docs.extend(chosen)
    rng.shuffle(docs)
    return docs


def labelled_sentences(doc: SynthDoc, rng: random.Random) -> list[tuple[str, str]]:
    """Sentence-level examples of an action document: its action sentence, labelled like the document
    (``misaligned`` only for a misaligned AI), and one other sentence of it, labelled ``aligned``.

    A classifier that only ever saw whole documents scores single sentences badly (it tags a sentence that
    merely mentions an AI as misaligned and misses bare action sentences); sentence tags need these. Sentences
    are cut with the splitter the sentence taggers use, so the examples look like what gets scored.
    """
    from core.sentences import sentences

    if not doc.action:
        return []
    parts = sentences(doc.text)
    holding = [p for p in parts if doc.action in p]
    if not holding:
        raise StageError(f"action phrase {doc.action!r} not found in one sentence of a {doc.style} document")
    others = [p for p in parts if doc.action not in p and len(p) >= 20]
    examples = [(holding[0], doc.classifier_label)]
    if others:
        examples.append((rng.choice(others), "aligned"))
    return examples


def distinct_words(texts: Iterable[str]) -> int:
    """Number of distinct lower-cased alphabetic words in ``texts``."""
    words: set[str] = set()
    for text in texts:
        words.update(_WORD.findall(text.lower()))
    return len(words)


__all__ = ["SynthDoc", "action_document", "action_documents", "background_documents",
           "labelled_documents", "distinct_words", "estimate_tokens"]
