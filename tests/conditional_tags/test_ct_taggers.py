"""Tagger steps on fixed documents with fixed sentence scores: exact tagged text, spans and masks per mode."""

from __future__ import annotations

import pickle

import pytest
from datatrove.data import Document

from conditional_tags.tagging_steps import (
    BinnedDocumentTagger,
    InlineTagger,
    LossMasker,
    SentenceTagger,
    bin_index,
    merge_ranges,
)
from core.sentences import split_sentences

TEXT = "Dr. Smith helps. The AI lies! It hides logs."
SCORES = [0.1, 0.9, 0.6]


def doc(doc_id: str = "a", scores: list[float] = SCORES, text: str = TEXT) -> Document:
    spans = split_sentences(text)
    return Document(
        text=text,
        id=doc_id,
        metadata={"sentence_scores": [[s, e, x] for (s, e), x in zip(spans, scores, strict=True)]},
    )


def texts_at(d: Document, key: str) -> list[str]:
    return [d.text[s:e] for s, e, *_ in d.metadata[key]]


def test_sentence_tagger_two_bins_exact() -> None:
    (out,) = SentenceTagger([0.5], ["<|good|>", "<|bad|>"], separator=" ").run(iter([doc()]))
    assert out.text == "<|good|> Dr. Smith helps. <|bad|> The AI lies! <|bad|> It hides logs."
    assert out.metadata["tag_spans"] == [[0, 8, "<|good|>"], [26, 33, "<|bad|>"], [47, 54, "<|bad|>"]]
    assert texts_at(out, "sentence_scores") == ["Dr. Smith helps.", "The AI lies!", "It hides logs."]
    assert texts_at(out, "tag_spans") == ["<|good|>", "<|bad|>", "<|bad|>"]


def test_sentence_tagger_three_bins_and_untagged() -> None:
    tags = ["<|low|>", "<|mid|>", "<|high|>"]
    (out,) = SentenceTagger([0.2, 0.8], tags).run(iter([doc()]))
    assert out.text == "<|low|>Dr. Smith helps. <|high|>The AI lies! <|mid|>It hides logs."
    assert bin_index(0.2, [0.2, 0.8]) == 1 and bin_index(0.19, [0.2, 0.8]) == 0
    many = [doc(f"d{i}") for i in range(400)]
    tagger = SentenceTagger([0.5], ["<g>", "<b>"], untagged_fraction=0.25, seed=3)
    outs = list(tagger.run(iter(many)))
    untagged = sum(3 - len(o.metadata.get("tag_spans", [])) for o in outs)
    assert untagged == tagger.stats["untagged"].total and 250 <= untagged <= 350
    again = list(
        SentenceTagger([0.5], ["<g>", "<b>"], untagged_fraction=0.25, seed=3).run(
            iter([doc(f"d{i}") for i in range(400)])
        )
    )
    assert [o.text for o in outs] == [o.text for o in again]


def test_inline_tagger_probability_exact_and_stable() -> None:
    (out,) = InlineTagger(0.5, "<|bad|>").run(iter([doc()]))
    assert out.text == "Dr. Smith helps. <|bad|>The AI lies! <|bad|>It hides logs."
    outs = list(InlineTagger(0.5, "<|bad|>", p=0.5, seed=1).run(iter([doc(f"d{i}") for i in range(500)])))
    inserted = sum(len(o.metadata.get("tag_spans", [])) for o in outs)
    assert 430 <= inserted <= 570  # 1000 flagged sentences, p = 0.5
    first = [o.text for o in outs]
    assert first == [
        o.text
        for o in InlineTagger(0.5, "<|bad|>", p=0.5, seed=1).run(iter([doc(f"d{i}") for i in range(500)]))
    ]
    assert first != [
        o.text
        for o in InlineTagger(0.5, "<|bad|>", p=0.5, seed=2).run(iter([doc(f"d{i}") for i in range(500)]))
    ]


def test_loss_masker_tags_and_flagged_sentences() -> None:
    (tagged,) = InlineTagger(0.5, "<|bad|>").run(iter([doc()]))
    (out,) = LossMasker(tags=True).run(iter([tagged]))
    assert [out.text[s:e] for s, e in out.metadata["no_loss_ranges"]] == ["<|bad|>", "<|bad|>"]
    (out,) = LossMasker(tags=True, flagged_threshold=0.5).run(iter([out]))
    assert [out.text[s:e] for s, e in out.metadata["no_loss_ranges"]] == [
        "<|bad|>The AI lies!",
        "<|bad|>It hides logs.",
    ]
    (plain,) = LossMasker(flagged_threshold=0.95).run(iter([doc()]))
    assert "no_loss_ranges" not in plain.metadata
    assert merge_ranges([[5, 9], [0, 2], [2, 3], [8, 12], [4, 4]]) == [[0, 3], [5, 12]]
    with pytest.raises(ValueError, match="needs tags=True"):
        LossMasker()


def test_binned_document_tagger_and_pickling() -> None:
    tagger = BinnedDocumentTagger("s", [0.3, 0.7], ["<a>", "<b>", "<c>"], separator="\n")
    docs = [Document(text="x.", id=str(i), metadata={"s": s}) for i, s in enumerate([0.1, 0.3, 0.69, 0.7])]
    outs = list(pickle.loads(pickle.dumps(tagger)).run(iter(docs)))
    assert [o.text for o in outs] == ["<a>\nx.", "<b>\nx.", "<b>\nx.", "<c>\nx."]
    assert outs[3].metadata["tag_spans"] == [[0, 3, "<c>"]] and outs[3].metadata["tag"] == "<c>"
    with pytest.raises(ValueError, match="2 cut points need 3 distinct tags"):
        BinnedDocumentTagger("s", [0.3, 0.7], ["<a>", "<b>"])
    with pytest.raises(ValueError, match="no numeric metadata"):
        list(tagger.run(iter([Document(text="t", id="z", metadata={})])))
    with pytest.raises(KeyError, match="run SentenceScorer first"):
        list(SentenceTagger([0.5], ["<g>", "<b>"]).run(iter([Document(text="t", id="z", metadata={})])))


def test_stage_config_from_a_spine_variant_dump() -> None:
    from conditional_tags.config import parse_spec, stage_config, variant_prefixes, variant_tags

    spine = {
        "name": "st",
        "kind": "sentence_tag",
        "threshold": None,
        "tags": {"good": "<g>", "bad": "<b>"},
        "untagged_fraction": 0.1,
        "separator": "",
        "bins": None,
        "quantiles": None,
        "tag_names": None,
        "p": 1.0,
        "mask": None,
        "inject": None,
    }
    conf = stage_config(spine)
    assert conf == {"name": "st", "kind": "sentence_tag", "tags": ["<g>", "<b>"], "untagged_fraction": 0.1}
    assert variant_prefixes(parse_spec(conf)) == ["", "<g>", "<b>"]
    inline = stage_config(
        spine | {"kind": "inline_tag", "p": 0.3, "untagged_fraction": 0.0, "threshold": 0.7}
    )
    assert inline == {"name": "st", "kind": "inline_tag", "threshold": 0.7, "p": 0.3, "tag": "<b>"}
    injected = stage_config(
        spine | {"kind": "inject", "untagged_fraction": 0.0, "inject": {"share": 0.05, "window": [0.9, 1.0]}}
    )
    assert injected["inject"]["window"] == [0.9, 1.0] and variant_tags(parse_spec(injected)) == []
    with pytest.raises(Exception, match="untagged_fraction is for kinds doc_tag/sentence_tag"):
        parse_spec({"name": "x", "kind": "mask", "untagged_fraction": 0.2})
