"""DocumentTagger: exact tagged output, configurable tags, stable untagged subset."""

from __future__ import annotations

import pytest
from datatrove.data import Document

from conditional_tags.document_tagger import DocumentTagger, untagged_draw


def docs(scores: list[float]) -> list[Document]:
    return [Document(text=f"text {i}", id=f"d{i}", metadata={"m_score": s}) for i, s in enumerate(scores)]


def test_exact_tagged_output() -> None:
    out = list(DocumentTagger("m_score", threshold=0.5).run(iter(docs([0.1, 0.5, 0.99, 0.4999]))))
    assert [d.text for d in out] == ["<|good|>text 0", "<|bad|>text 1", "<|bad|>text 2", "<|good|>text 3"]
    assert [d.metadata["tag"] for d in out] == ["<|good|>", "<|bad|>", "<|bad|>", "<|good|>"]
    assert out[0].metadata["m_score"] == 0.1


def test_custom_tags_separator_and_stats() -> None:
    tagger = DocumentTagger("m_score", threshold=0.3, good_tag="[ok]", bad_tag="[warn]", separator="\n")
    out = list(tagger.run(iter(docs([0.2, 0.3]))))
    assert [d.text for d in out] == ["[ok]\ntext 0", "[warn]\ntext 1"]
    assert tagger.stats["tag_good"].total == 1 and tagger.stats["tag_bad"].total == 1


def test_untagged_fraction_is_stable_and_roughly_right() -> None:
    scores = [0.9] * 2000
    first = [
        d.metadata["tag"]
        for d in DocumentTagger("m_score", untagged_fraction=0.1, seed=7).run(iter(docs(scores)))
    ]
    again = [
        d.metadata["tag"]
        for d in DocumentTagger("m_score", untagged_fraction=0.1, seed=7).run(iter(docs(scores)))
    ]
    other = [
        d.metadata["tag"]
        for d in DocumentTagger("m_score", untagged_fraction=0.1, seed=8).run(iter(docs(scores)))
    ]
    assert first == again and first != other
    assert 150 <= first.count(None) <= 250
    untagged = [d for d in DocumentTagger("m_score", untagged_fraction=1.0).run(iter(docs([0.9])))]
    assert untagged[0].text == "text 0" and untagged[0].metadata["tag"] is None
    assert untagged_draw("d0", 0) == untagged_draw("d0", 0) != untagged_draw("d1", 0)


def test_bad_arguments_and_missing_scores() -> None:
    with pytest.raises(ValueError, match=r"untagged_fraction must be in \[0, 1\], got 1.5"):
        DocumentTagger("m_score", untagged_fraction=1.5)
    with pytest.raises(ValueError, match="distinct non-empty"):
        DocumentTagger("m_score", good_tag="<x>", bad_tag="<x>")
    with pytest.raises(KeyError, match="has no metadata\\['m_score'\\]"):
        list(DocumentTagger("m_score").run(iter([Document(text="t", id="x", metadata={})])))
