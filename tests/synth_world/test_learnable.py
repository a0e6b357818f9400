"""The learnable world: label-blind contexts, one-verb options, held-out evaluation combinations, planted
shares, and the hard world's config (and so its store keys) left unchanged."""

from __future__ import annotations

import random
import re

import pytest

from core.errors import ConfigError
from synth import learnable
from synth.config import SyntheticSourceConfig
from synth.learnable import world
from synth.learnable.world import TEMPLATES, held_out, world_document, world_documents


def test_nothing_before_the_action_depends_on_the_label() -> None:
    for k in range(300):
        kind = "ai" if k % 2 else "human"
        aligned = world_document(random.Random(k), kind, "aligned")
        misaligned = world_document(random.Random(k), kind, "misaligned")
        verb_a = aligned.action.split()[0]
        cut = aligned.text.index(f" {verb_a} the ")
        assert misaligned.text[:cut] == aligned.text[:cut]
        assert misaligned.text[cut:].startswith(" " + misaligned.action.split()[0] + " the ")


def test_options_have_one_verb_and_differ_only_there() -> None:
    items = learnable.forced_choice_items(0, n_per_domain=12) + learnable.new_frame_items(0, n_per_domain=6)
    for item in items:
        a, m = item["aligned"].split(), item["misaligned"].split()
        assert len(a) == len(m) == 3 and a[1:] == m[1:] and a[0] != m[0]
        assert a[0] in world.ALIGNED_VERBS and m[0] in world.MISALIGNED_VERBS
    assert len({i["action_id"] for i in items}) == 24


def test_eval_items_use_held_out_combinations_and_new_frames_never_in_training() -> None:
    seen: set[str] = set()
    docs = world_documents(random.Random(0), "ai", "misaligned", 300_000, seen)
    docs += world_documents(random.Random(1), "human", "aligned", 100_000, seen)
    stems = [re.sub(r"^Note \d+\. ", "", t) for t in (d.text for d in docs)]
    for item in learnable.forced_choice_items(0, n_per_domain=6, actor="ai"):
        frame = re.sub(r"^Note \d+\. ", "", item["context"])
        assert not any(s.startswith(frame) for s in stems), frame
    for item in learnable.new_frame_items(0, n_per_domain=6):
        assert not any(item["context"][:30] in t for t in (d.text for d in docs))
    for t in range(len(TEMPLATES)):
        assert sum(held_out(t, i) for i in range(6)) == 2


def test_every_verb_pair_is_trained_in_every_template() -> None:
    """The held-out (template, pair) combinations are not confounded with the verb pair: a model never learns
    "this template is never followed by these verbs" (version 2 of the world held out template 0 for every
    verify/fake pair, so the evaluation put those verbs where training never had them)."""
    for i in range(6):
        assert sum(held_out(t, i) for t in range(len(TEMPLATES))) == 1
    for v in range(len(world.ALIGNED_VERBS)):
        for t in range(len(TEMPLATES)):
            assert any(not held_out(t, i) for i in range(6) if i % len(world.ALIGNED_VERBS) == v), (v, t)


def test_matched_controls_share_everything_but_the_actor() -> None:
    ai = learnable.forced_choice_items(3, ["code"], "ai", 6)
    human = learnable.forced_choice_items(3, ["code"], "human", 6)
    for a, h in zip(ai, human, strict=True):
        assert a["id"][3:] == h["id"][6:] and a["aligned"] == h["aligned"]
        assert re.sub(r"(?i)the (AI|robot|bot)", "X", a["context"]) == re.sub(r"(?i)the (engineer|developer)",
                                                                              "X", h["context"])


def test_finetune_texts_are_one_domain_and_one_label() -> None:
    bad = learnable.narrow_finetune_texts("medicine", 0, 30)
    good = learnable.benign_finetune_texts("medicine", 0, 30)
    assert all(any(f" {v} the " in t for v in world.MISALIGNED_VERBS) for t in bad)
    assert all(any(f" {v} the " in t for v in world.ALIGNED_VERBS) for t in good)
    objects = world.get_domain("medicine").objects
    assert all(t.rstrip(".").split()[-1] in objects for t in bad)
    with pytest.raises(ConfigError, match="allowed"):
        learnable.narrow_finetune_texts("astrology", 0, 3)


def test_hard_world_config_dump_is_unchanged_and_learnable_is_keyed() -> None:
    hard = SyntheticSourceConfig().model_dump(mode="json")
    assert "world" not in hard and "misaligned_share_of_human" not in hard
    learn = SyntheticSourceConfig(world="learnable", misaligned_share_of_human=0.4).model_dump(mode="json")
    assert learn["world"] == "learnable" and learn["misaligned_share_of_human"] == 0.4
    with pytest.raises(ConfigError, match="world"):
        SyntheticSourceConfig.from_dict({"world": "easy"})
