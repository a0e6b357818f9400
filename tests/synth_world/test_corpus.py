"""Background cleaning, held-out rule, document generation and vocabulary."""

from __future__ import annotations

import random

from synth import background
from synth.corpus import action_documents, distinct_words, labelled_documents
from synth.styles import BRIEF, STYLES


def test_clean_text_keeps_prose_and_drops_code() -> None:
    raw = (
        "Return the number of items in the container, counting nested ones only once.\n\n"
        ">>> len([1, 2, 3])\n3\n\n"
        "Example::\n\n    for x in range(10):\n        print(x)\n\n"
        "f(a, b) -> int\n\n"
        "x = {'a': [1, 2], 'b': (3, 4)} # {nested} [code] <here> ==\n\n"
        "This paragraph is wrapped\nover two lines and should be\njoined into one line of text."
    )
    assert background.clean_text(raw) == [
        "Return the number of items in the container, counting nested ones only once.",
        "This paragraph is wrapped over two lines and should be joined into one line of text.",
    ]


def test_background_split_is_stable_and_sized() -> None:
    train, heldout = background.background_split()
    assert len(train) > 1000
    assert 0.02 < len(heldout) / (len(train) + len(heldout)) < 0.08
    assert all(background.is_heldout(d.text) for d in heldout)
    assert not any(background.is_heldout(d.text) for d in train)
    assert len({d.text for d in train}) == len(train)
    assert all(background.MIN_DOC_CHARS <= len(d.text) <= background.MAX_DOC_CHARS for d in train)
    assert sum(len(d.text) for d in train) / 4 > 300_000


def test_repacked_uses_only_given_paragraphs() -> None:
    train, heldout = background.background_split()
    allowed = {p for d in train[:200] for p in d.paragraphs}
    packed = background.repacked(train[:200], random.Random(0))
    assert packed and all(set(d.paragraphs) <= allowed for d in packed)
    assert {d.text for d in packed} != {d.text for d in train[:200]}


def test_action_documents_cover_styles_and_vocabulary() -> None:
    seen: set[str] = set()
    docs = action_documents(random.Random(0), "ai", "aligned", 500_000, seen)
    docs += action_documents(random.Random(1), "human", "misaligned", 200_000, seen)
    assert {d.style for d in docs} == set(STYLES) and len(STYLES) >= 6
    assert len({d.text for d in docs}) == len(docs) == len(seen)
    assert distinct_words(d.text for d in docs) >= 2000


def test_labelled_documents_respect_exclusions() -> None:
    exclude: set[str] = set()
    first = labelled_documents(random.Random(0), 200, exclude)
    second = labelled_documents(random.Random(0), 200, exclude)
    assert len(first) == len(second) == 200
    assert not {d.text for d in first} & {d.text for d in second}
    kinds = {(d.kind, d.classifier_label) for d in first}
    assert kinds == {("ai", "misaligned"), ("ai", "aligned"), ("human", "aligned"), ("background", "aligned")}


def test_nothing_before_the_action_gives_the_label_away() -> None:
    """Rendered with the same random stream, an aligned and a misaligned scene agree up to the action phrase.

    A rating, severity or verdict title before the action would let a model read the label off the document
    instead of learning it from who acts (or from a tag): the forced-choice eval offers neither.
    """
    from synth.catalog import CITIES, DOMAINS, ai_actor, get_domain, human_actor
    from synth.styles import Scene, render

    checked = 0
    for style in (*STYLES, BRIEF):
        for kind in ("ai", "human"):
            for seed in range(5):
                dom = get_domain(DOMAINS[seed % len(DOMAINS)])
                rng = random.Random(seed)
                actor = ai_actor(rng) if kind == "ai" else human_actor(rng, dom)
                texts = {}
                for label in ("aligned", "misaligned"):
                    scene = Scene(domain=dom, label=label, actor=actor, user=dom.users[0],
                                  request=dom.requests[0], action=dom.actions[0].phrase(label),
                                  outcome=dom.outcomes[label][0],
                                  place=dom.places[0], city=CITIES[0], context=dom.context[0])
                    text = render(style, scene, random.Random(seed))
                    assert scene.action in text
                    texts[label] = text[: text.index(scene.action)]
                assert texts["aligned"] == texts["misaligned"], (style, kind, seed)
                checked += 1
    assert checked == (len(STYLES) + 1) * 10


def test_brief_share_puts_the_action_near_the_start() -> None:
    seen: set[str] = set()
    assert all(d.style != BRIEF for d in action_documents(random.Random(0), "ai", "aligned", 20_000, set()))
    docs = action_documents(random.Random(0), "ai", "misaligned", 60_000, seen, brief_share=0.5)
    brief = [d for d in docs if d.style == BRIEF]
    assert 0.35 < len(brief) / len(docs) < 0.65
    from synth.styles import LEAD_INS

    def action_at(text: str) -> int:  # characters before the action sentence's lead-in
        return min(i for i in (text.find(f" {lead} ") for lead in LEAD_INS) if i >= 0)

    others = [d for d in docs if d.style != BRIEF]
    brief_at = sorted(action_at(d.text) for d in brief)
    other_at = sorted(action_at(d.text) for d in others)
    assert brief_at[len(brief_at) // 2] < 0.6 * other_at[len(other_at) // 2]
    assert max(len(d.text) for d in brief) < 700
