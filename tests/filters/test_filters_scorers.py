"""Each scorer on real small models the tests build: fastText, blocklist, transformer, cascade, ensemble."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from datatrove.data import Document
from filters_fixtures import BAD_TEXT, GOOD_TEXT, make_docs

from core.errors import ConfigError
from filters.cascade import CascadeScorer, EnsembleScorer
from filters.fasttext_model import fasttext_line, load_fasttext
from filters.scorers import BatchScorer, BlocklistScorer, FastTextScorer, read_terms
from filters.transformer import TransformerScorer, resolve_label


def docs_of(*texts: str) -> list[Document]:
    return [Document(text=t, id=f"d{i}", metadata={}) for i, t in enumerate(texts)]


def test_fasttext_scorer_matches_the_model_and_decides(model_path: Path) -> None:
    scorer = FastTextScorer(str(model_path), "m_score", "misaligned", batch_size=2, all_labels_key="m_labels")
    docs = docs_of(BAD_TEXT, GOOD_TEXT, "word1 word2\nword3")
    out = list(scorer.run(iter(docs)))
    model = load_fasttext(model_path)
    for doc in out:
        labels, probs = model.predict(fasttext_line(doc.text), k=-1)
        expected = dict(zip(labels, probs, strict=True))["__label__misaligned"]
        assert doc.metadata["m_score"] == pytest.approx(min(1.0, float(expected)), abs=1e-7)
        assert sorted(doc.metadata["m_labels"]) == ["aligned", "misaligned"]
        assert sum(doc.metadata["m_labels"].values()) == pytest.approx(1.0, abs=1e-4)
    assert [d.metadata["m_score"] >= 0.5 for d in out] == [True, False, out[2].metadata["m_score"] >= 0.5]
    assert out[0].metadata["m_score"] > 0.9 and out[1].metadata["m_score"] < 0.1
    assert scorer.stats["scored"].total == 3
    assert pickle.loads(pickle.dumps(scorer))._model is None  # the model never travels with the step
    with pytest.raises(
        ConfigError, match=r"positive_label 'toxic' is not a label of .*\['aligned', 'misaligned'\]"
    ):
        FastTextScorer(str(model_path), "m_score", "toxic").score_batch(docs_of("x"))


def test_fasttext_scorer_any_label_set(tmp_path: Path) -> None:
    """A three-label model: the score is the chosen label's probability."""
    from filters_fixtures import write_jsonl

    from filters.fasttext_model import train_fasttext

    records = make_docs(600, 11, "t3")
    for i, record in enumerate(records):
        if i % 3 == 2:
            record["text"] = " ".join(f"neutral{(i + k) % 120}" for k in range(10))
            record["metadata"]["label"] = "neutral"
    path = train_fasttext(write_jsonl(tmp_path / "t.jsonl", records), tmp_path, positive_label="neutral")
    scorer = FastTextScorer(str(path), "n_score", "neutral", all_labels_key="all")
    docs = docs_of("neutral1 neutral2 neutral3 neutral4", BAD_TEXT)
    scores = scorer.score_batch(docs)
    assert sorted(docs[0].metadata["all"]) == ["aligned", "misaligned", "neutral"]
    assert scores[0] > 0.5 and scores[1] < 0.2
    assert scores == [docs[0].metadata["all"]["neutral"], docs[1].metadata["all"]["neutral"]]


def test_blocklist_hits_terms_case_folding_and_boundaries(tmp_path: Path) -> None:
    terms_file = tmp_path / "terms.txt"
    terms_file.write_text("# weapons terms\nnerve agent\n\nSarin\n")
    terms = read_terms(str(terms_file)) + ["agent"]
    assert terms == ["nerve agent", "Sarin", "agent"]
    scorer = BlocklistScorer("bio_score", terms, [r"\bvx\d+\b"], min_hits=2)
    docs = docs_of(
        "A NERVE AGENT such as sarin; SARIN again.",  # phrase wins over its suffix 'agent'; case-folded
        "The agents and sarinx are not whole words; an agent is.",
        "formula vx12 and VX7",  # regex, case-insensitive
        "nothing here",
    )
    scores = scorer.score_batch(docs)
    assert [d.metadata["bio_hits"] for d in docs] == [3, 1, 2, 0]
    assert [d.metadata["bio_terms"] for d in docs] == [
        ["nerve agent", "sarin"],
        ["agent"],
        ["vx12", "vx7"],
        [],
    ]
    assert scores == [1.0, 0.5, 1.0, 0.0]
    strict = BlocklistScorer("s_score", ["Sarin"], case_sensitive=True, word_boundaries=False)
    assert strict.score_batch(docs_of("sarin Sarinx")) == [1.0]
    assert strict.matches("sarin Sarinx SARIN") == ["Sarin"]
    with pytest.raises(ConfigError, match=r"blocklist.patterns: '\(' is not a valid regex"):
        BlocklistScorer("x_score", [], ["("])
    with pytest.raises(ValueError, match="at least one term or pattern"):
        BlocklistScorer("x_score", ["  "])


def test_transformer_scorer_exact_scores_decisions_and_chunking(tiny_transformer: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_transformer)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_transformer).eval()

    def direct(ids: list[int]) -> float:
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids])).logits
        return float(torch.softmax(logits, -1)[0, 1])

    scorer = TransformerScorer(str(tiny_transformer), "t_score", batch_size=3, device="cpu")
    docs = docs_of(BAD_TEXT, GOOD_TEXT, "word1 word2 honest")
    scores = [d.metadata["t_score"] for d in scorer.run(iter(docs))]
    assert scores == pytest.approx([direct(tokenizer(d.text)["input_ids"]) for d in docs], abs=1e-5)
    assert [s >= 0.5 for s in scores[:2]] == [True, False]
    long_text = GOOD_TEXT + " " + BAD_TEXT  # 12 + 12 words: chunks of 8 tokens (6 words + CLS/SEP)
    words = long_text.split()
    chunk_ids = [tokenizer(" ".join(words[i : i + 6]))["input_ids"] for i in range(0, len(words), 6)]
    per_chunk = [direct(ids) for ids in chunk_ids]
    for chunking, expected in (
        ("truncate", per_chunk[0]),
        ("max", max(per_chunk)),
        ("mean", sum(per_chunk) / len(per_chunk)),
    ):
        step = TransformerScorer(
            str(tiny_transformer), "t_score", max_length=8, chunking=chunking, device="cpu"
        )
        assert step.score_batch(docs_of(long_text)) == pytest.approx([expected], abs=1e-5)
    capped = TransformerScorer(str(tiny_transformer), "t_score", max_length=8, chunking="mean", max_chunks=2)
    assert capped.score_batch(docs_of(long_text)) == pytest.approx([sum(per_chunk[:2]) / 2], abs=1e-5)
    assert capped.stats["chunks"].total == 2 and capped.stats["tokens"].total == 16
    assert pickle.loads(pickle.dumps(capped))._model is None


def test_transformer_label_resolution() -> None:
    labels = {0: "aligned", 1: "misaligned"}
    assert resolve_label(labels, None, "misaligned") == 1
    assert resolve_label(labels, "aligned", "misaligned") == 0
    assert resolve_label({0: "LABEL_0", 1: "LABEL_1"}, None, "misaligned") == 1
    assert resolve_label({0: "LABEL_0"}, None, "x") == 0
    with pytest.raises(ConfigError, match=r"transformer.label 'toxic' is not a label of the model"):
        resolve_label(labels, "toxic", "misaligned")
    with pytest.raises(ConfigError, match="index 5 out of range"):
        resolve_label(labels, 5, "misaligned")


class SpyScorer(BatchScorer):
    """Wraps a scorer and records the ids of every document it is asked to score."""

    name = "spy"

    def __init__(self, inner: BatchScorer) -> None:
        super().__init__(inner.score_key)
        self.inner = inner
        self.seen: list[str] = []

    def score_batch(self, docs: list[Document]) -> list[float]:
        self.seen += [d.id for d in docs]
        return self.inner.score_batch(docs)


def test_cascade_stage_two_never_sees_passed_documents(model_path: Path) -> None:
    blocklist = BlocklistScorer("block_score", ["sabotage", "exfiltrate", "conceal"], min_hits=2)
    fasttext = SpyScorer(FastTextScorer(str(model_path), "ft_score", "misaligned"))
    cascade = CascadeScorer("casc_score", [blocklist, fasttext], [1.0], flag_at=0.5, batch_size=2)
    docs = docs_of(
        BAD_TEXT,  # 3 hits: escalated, flagged by fastText
        GOOD_TEXT,  # 0 hits: passed
        "sabotage once " + GOOD_TEXT,  # 1 hit: passed
        "sabotage and conceal " + GOOD_TEXT,  # 2 hits: escalated, fastText says aligned-ish
        BAD_TEXT.replace("sabotage", "x").replace("exfiltrate", "y"),  # 1 hit: passed although misaligned
    )
    out = list(cascade.run(iter(docs)))
    assert fasttext.seen == ["d0", "d3"]
    assert [d.metadata["casc_stage"] for d in out] == ["ft", "block", "block", "ft", "block"]
    assert ["ft_score" in d.metadata for d in out] == [True, False, False, True, False]
    assert [d.metadata["casc_score"] for d in out] == [
        out[0].metadata["ft_score"],
        0.0,
        0.0,
        out[3].metadata["ft_score"],
        0.0,
    ]
    assert out[0].metadata["casc_score"] > 0.5 and [d.metadata["block_hits"] for d in out] == [3, 0, 1, 2, 1]
    flagged = sum(out[i].metadata["ft_score"] >= 0.5 for i in (0, 3))
    report = cascade.report({k: v.total for k, v in cascade.stats.stats.items()})
    assert [{k: r[k] for k in ("stage", "seen", "escalated", "flagged", "threshold")} for r in report] == [
        {"stage": "block", "seen": 5, "escalated": 2, "flagged": 2, "threshold": 1.0},
        {"stage": "ft", "seen": 2, "escalated": None, "flagged": flagged, "threshold": 0.5},
    ]
    assert report[0]["tokens"] == sum(len(d.text.split()) for d in docs)
    assert report[1]["tokens"] == len(docs[0].text.split()) + len(docs[3].text.split())
    assert report[0]["fraction_escalated"] == 0.4 and report[1]["seconds"] >= 0.0


def test_ensemble_scores_with_every_member_and_takes_the_max(model_path: Path) -> None:
    blocklist = BlocklistScorer("block_score", ["honest"])
    fasttext = FastTextScorer(str(model_path), "ft_score", "misaligned")
    ensemble = EnsembleScorer("ens_score", [blocklist, fasttext])
    docs = docs_of(BAD_TEXT, GOOD_TEXT)
    scores = ensemble.score_batch(docs)
    assert [d.metadata["block_score"] for d in docs] == [0.0, 1.0]
    assert scores == [max(d.metadata["block_score"], d.metadata["ft_score"]) for d in docs]
    assert scores[1] == 1.0
