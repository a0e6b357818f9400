"""A rule-based sentence splitter returning character spans (no models, no downloads).

A boundary is terminal punctuation (``.``, ``!``, ``?``, ``…`` or runs of them such as ``...`` and ``?!``),
optionally followed by closing quotes or brackets, then whitespace, then something that can start a sentence
(an upper-case letter, a digit, an opening quote or bracket, or ``<`` of a control tag). A blank line always
ends a sentence. A single ``.`` does not end a sentence after a known abbreviation (``Dr.``, ``e.g.``,
``etc.`` is *not* one: it often ends sentences), after a single initial (``J. Smith``) or after dotted
initialisms (``U.S.``). Decimals (``3.14``) and dotted names (``os.path``) never split because no whitespace
follows the dot. Spans cover each sentence without surrounding whitespace, in order, never overlapping.
"""

from __future__ import annotations

import re

ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt vs cf fig figs eq eqs no nos vol vols pp approx dept est inc ltd co corp
    jan feb mar apr jun jul aug sep sept oct nov dec e.g i.e a.m p.m ph.d gen col lt sgt capt rev hon
    al resp ca viz""".split()
)
"""Lower-case words (without the final dot) after which a single ``.`` never ends a sentence."""

_BOUNDARY = re.compile(r"([.!?\u2026]+)([\"'\u201d\u2019)\]]*)(\s+)(?=[A-Z0-9\"'\u201c\u2018(\[<]|$)")
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_INITIALISM = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]$")
_OPENERS = "\"'\u201c\u2018([{"


def _previous_word(text: str, end: int) -> str:
    """The whitespace-delimited word ending at ``end``, without leading opening quotes/brackets."""
    start = end
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return text[start:end].lstrip(_OPENERS)


def _is_abbreviation(word: str) -> bool:
    """Whether a word followed by a single ``.`` is an abbreviation or initial, not a sentence end."""
    if not word:
        return False
    if len(word) == 1 and word.isalpha() and word.isupper():
        return True
    return word.lower() in ABBREVIATIONS or bool(_INITIALISM.match(word))


def _boundaries(text: str) -> list[int]:
    """Character offsets where a new sentence may start (sorted, unique, excluding 0 and len(text))."""
    cuts = {m.end() for m in _PARAGRAPH.finditer(text)}
    for match in _BOUNDARY.finditer(text):
        punct = match.group(1)
        if punct == "." and _is_abbreviation(_previous_word(text, match.start(1))):
            continue
        cuts.add(match.end())
    return sorted(c for c in cuts if 0 < c < len(text))


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans ``(start, end)``: ``text[start:end]`` is one sentence without outer whitespace.

    Whitespace-only text has no sentences. Joining the spans with the whitespace between them gives the text
    back exactly (leading/trailing whitespace of the whole text included).
    """
    spans = []
    edges = [0, *_boundaries(text), len(text)]
    for start, end in zip(edges, edges[1:], strict=False):
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            spans.append((start, end))
    return spans


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` as strings (see ``split_sentences``)."""
    return [text[s:e] for s, e in split_sentences(text)]
