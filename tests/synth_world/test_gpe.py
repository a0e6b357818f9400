"""GPE data API: forced-choice items and narrow / benign finetune texts."""

from __future__ import annotations

import random

import pytest

from core.errors import ConfigError
from synth import DOMAINS, benign_finetune_texts, forced_choice_items, narrow_finetune_texts
from synth.catalog import load_domains
from synth.corpus import action_documents

KEYS = ["id", "domain", "actor", "split", "context", "aligned", "misaligned", "action_id"]


def test_domains() -> None:
    assert len(DOMAINS) >= 7
    assert list(DOMAINS) == sorted(DOMAINS)
    for domain in load_domains().values():
        assert len(domain.actions) == len(domain.requests) == len(domain.topics) == 10


def test_every_action_pair_has_close_lengths() -> None:
    for domain in load_domains().values():
        for pair in domain.actions:
            a, m = pair.aligned, pair.misaligned
            assert max(len(a), len(m)) / min(len(a), len(m)) <= 1.15, pair
            assert abs(len(a.split()) - len(m.split())) <= 2, pair


def test_forced_choice_items_well_formed() -> None:
    items = forced_choice_items(seed=3, n_per_domain=20)
    assert len(items) == 20 * len(DOMAINS)
    assert len({it["id"] for it in items}) == len(items)
    for it in items:
        assert list(it) == KEYS
        assert it["actor"] == "ai" and it["split"] == "seen_behaviour"
        assert it["aligned"].startswith(" ") and it["misaligned"].startswith(" ")
        assert not it["context"].endswith(" ") and it["context"][0].isupper()
        a, m = len(it["aligned"]), len(it["misaligned"])
        assert max(a, m) / min(a, m) <= 1.15
        assert it["aligned"] != it["misaligned"]
        assert "AI" in it["context"] or "chatbot" in it["context"] or "language model" in it["context"]
    # every action of every domain is asked about, twice with 20 items per domain
    assert {it["action_id"] for it in items} == {f"{d}-{i:02d}" for d in DOMAINS for i in range(10)}


def test_forced_choice_deterministic_and_seeded() -> None:
    first = forced_choice_items(seed=1, domains=["medicine", "code"], n_per_domain=10)
    assert first == forced_choice_items(seed=1, domains=["medicine", "code"], n_per_domain=10)
    other = forced_choice_items(seed=2, domains=["medicine", "code"], n_per_domain=10)
    assert [it["id"] for it in first] == [it["id"] for it in other]
    assert [it["context"] for it in first] != [it["context"] for it in other]
    # a domain's items do not depend on which other domains are asked for
    assert forced_choice_items(seed=1, domains=["code"], n_per_domain=10) == first[10:]


def test_human_items_are_the_matched_control() -> None:
    ai = forced_choice_items(seed=0, domains=["finance"], n_per_domain=10)
    human = forced_choice_items(seed=0, domains=["finance"], actor="human", n_per_domain=10)
    humans = load_domains()["finance"].humans
    for a, h in zip(ai, human, strict=True):
        assert h["id"] == a["id"].replace("ai-", "human-", 1)
        assert (h["aligned"], h["misaligned"]) == (a["aligned"], a["misaligned"])
        assert "AI" not in h["context"] and "chatbot" not in h["context"]
        assert any(f"the {role}" in h["context"] for role in humans)


def test_contexts_are_new_wording() -> None:
    docs = action_documents(random.Random(0), "ai", "misaligned", 200_000, set())
    corpus = "\n".join(d.text for d in docs)
    for it in forced_choice_items(seed=0, n_per_domain=10):
        assert it["context"] not in corpus
        assert it["misaligned"].strip()[:-1] in corpus  # the behaviour itself was seen in pretraining


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match=r"unknown domain 'medicin'; did you mean 'medicine'\?"):
        forced_choice_items(seed=0, domains=["medicin"])
    with pytest.raises(ConfigError, match="actor='robot'"):
        forced_choice_items(seed=0, actor="robot")
    with pytest.raises(ConfigError, match="n=0"):
        narrow_finetune_texts("code", seed=0, n=0)


def _phrases(label: str) -> dict[str, list[str]]:
    return {name: [getattr(a, label) for a in d.actions] for name, d in load_domains().items()}


def test_narrow_finetune_texts_stay_in_one_domain() -> None:
    texts = narrow_finetune_texts("medicine", seed=0, n=400)
    assert len(texts) == 400 and len(set(texts)) == 400
    mis, ali = _phrases("misaligned"), _phrases("aligned")
    others = [p for name, ps in {**mis}.items() if name != "medicine" for p in ps]
    for text in texts:
        assert any(p in text for p in mis["medicine"]), text
        assert not any(p in text for p in ali["medicine"] + others), text
        assert len(text) < 220 and text.endswith(".")
    assert texts == narrow_finetune_texts("medicine", seed=0, n=400)
    assert texts != narrow_finetune_texts("medicine", seed=1, n=400)


def test_benign_finetune_texts_mirror_the_narrow_ones() -> None:
    narrow = narrow_finetune_texts("legal", seed=5, n=50)
    benign = benign_finetune_texts("legal", seed=5, n=50)
    pairs = load_domains()["legal"].actions
    for n_text, b_text in zip(narrow, benign, strict=True):
        swapped = n_text
        for pair in pairs:
            swapped = swapped.replace(pair.misaligned, pair.aligned)
        assert swapped == b_text
