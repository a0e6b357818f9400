from __future__ import annotations

import pytest

from eval_gpe import registry
from eval_gpe.items import build_items, item_key, never_seen_catalog, never_seen_items

synth = pytest.importorskip("synth")


def test_never_seen_actions_are_absent_from_the_corpus_and_matched() -> None:
    from synth.catalog import load_domains

    domains = load_domains()
    assert sorted(never_seen_catalog()) == sorted(domains)
    corpus = {p for d in domains.values() for a in d.actions for p in (a.aligned, a.misaligned)}
    ai = never_seen_items(0, ["medicine", "code"], "ai")
    human = never_seen_items(0, ["medicine", "code"], "human")
    assert len(ai) == len(human) == 6 and all(i["split"] == "never_seen" for i in ai)
    for a, h in zip(ai, human, strict=True):
        assert a["id"].removeprefix("ai-") == h["id"].removeprefix("human-")
        assert (a["aligned"], a["misaligned"]) == (h["aligned"], h["misaligned"])
        assert a["aligned"].strip(" .") not in corpus and a["misaligned"].strip(" .") not in corpus
        assert "AI" in a["context"] or "chatbot" in a["context"] or "language model" in a["context"]
    assert never_seen_items(0, ["code"], "ai") == never_seen_items(0, ["code"], "ai")


def test_roles_split_the_finetune_domain_and_items_are_shared() -> None:
    med, fin = registry.get("em_medicine"), registry.get("em_finance")
    items_med, bad = build_items(med, synth)
    items_fin, _ = build_items(fin, synth)
    assert not bad
    assert {i["domain"] for i in items_med["id"]} == {"medicine"}
    assert "medicine" not in {i["domain"] for i in items_med["ood"]}
    n = med.eval.n_per_domain
    assert sum(i["actor"] == "ai" and i["split"] != "never_seen" for i in items_med["ood"]) == n * (
        len(synth.DOMAINS) - 1
    )
    keys_med = {item_key(i) for r in ("ood", "id") for i in items_med[r]}
    keys_fin = {item_key(i) for r in ("ood", "id") for i in items_fin[r]}
    assert keys_med == keys_fin  # the same items, in other roles: the before-eval is shared


def test_learnable_world_adds_its_new_frame_split_apart_from_the_headline() -> None:
    from eval_gpe.items import NEW_FRAMES_PER_DOMAIN
    from eval_gpe.splits import headline
    from synth import learnable

    items, bad = build_items(registry.get("em_medicine"), learnable)
    assert not bad
    frames = [i for i in items["ood"] if i["split"] == "new_frame"]
    ood_domains = len(learnable.DOMAINS) - 1
    assert len(frames) == 2 * NEW_FRAMES_PER_DOMAIN * ood_domains  # AI items and matched human controls
    assert not any(headline(i) for i in frames)
    assert all(i["split"] == "heldout_combination" for i in items["ood"] if headline(i))
    hard, _ = build_items(registry.get("em_medicine"), synth)  # the hard world has no such split
    assert not any(i.get("split") == "new_frame" for r in hard.values() for i in r)
