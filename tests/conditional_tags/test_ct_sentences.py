"""The sentence splitter on tricky text: abbreviations, initials, decimals, ellipses, quotes, paragraphs."""

from __future__ import annotations

import pytest

from core.sentences import sentences, split_sentences

CASES = [
    ("Dr. Smith paid $3.14 at 5 p.m. today. He left.", ["Dr. Smith paid $3.14 at 5 p.m. today.", "He left."]),
    ('He said "Stop." Then he left! Why? Because.', ['He said "Stop."', "Then he left!", "Why?", "Because."]),
    ('"Why?" she asked. Really?! Yes.', ['"Why?" she asked.', "Really?!", "Yes."]),
    ("Wait... what now? Hmm... Fine.", ["Wait... what now?", "Hmm...", "Fine."]),
    (
        "Use e.g. os.path here, i.e. the stdlib. Next one.",
        ["Use e.g. os.path here, i.e. the stdlib.", "Next one."],
    ),
    ("The U.S. Army came. J. R. R. Tolkien wrote it.", ["The U.S. Army came.", "J. R. R. Tolkien wrote it."]),
    ("(See Fig. 3.) The end.", ["(See Fig. 3.)", "The end."]),
    ("Version 2.0 is out. 3 bugs remain.", ["Version 2.0 is out.", "3 bugs remain."]),
    ("no capital after. so no split here.", ["no capital after. so no split here."]),
    (
        "A title without a stop\n\nA paragraph. <|bad|>Tagged.",
        ["A title without a stop", "A paragraph.", "<|bad|>Tagged."],
    ),
    ("   ", []),
    ("single", ["single"]),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_tricky_sentences(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected


def test_spans_are_exact_and_rebuild_the_text() -> None:
    text = "  First one.  Second one!\n\nThird?  "
    spans = split_sentences(text)
    assert spans == [(2, 12), (14, 25), (27, 33)]
    rebuilt = text[: spans[0][0]] + "".join(
        text[s:e] + text[e : (spans[i + 1][0] if i + 1 < len(spans) else len(text))]
        for i, (s, e) in enumerate(spans)
    )
    assert rebuilt == text
