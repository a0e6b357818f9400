"""GPE data of the learnable world, the same API as ``synth.gpe`` (the eval stage picks the module by world).

- :func:`forced_choice_items`: split ``heldout_combination``: the training templates, with each pair in the
  one template it never appears in during training; the options differ only at the decision verb.
- :func:`new_frame_items`: split ``new_frame``: prompt frames that occur in no training document.
- :func:`narrow_finetune_texts` / :func:`benign_finetune_texts`: one domain's AI episodes, misaligned or aligned.

AI item ``ai-<domain>-<k>`` and human item ``human-<domain>-<k>`` share template, place, client and note
number (one random stream per domain); only who acts differs: a matched control.
"""

from __future__ import annotations

import random

from core.errors import ConfigError
from synth.learnable.world import (
    AI_ACTORS,
    DOMAINS,
    NEW_FRAMES,
    TEMPLATES,
    Episode,
    WorldDomain,
    action,
    actor_phrase,
    cap,
    get_domain,
    held_out,
)

__all__ = ["DOMAINS", "benign_finetune_texts", "forced_choice_items", "narrow_finetune_texts",
           "new_frame_items"]


def _check(actor: str, n: int) -> None:
    if actor not in ("ai", "human"):
        raise ConfigError(f"actor={actor!r} is not allowed; use 'ai' or 'human'")
    if n < 1:
        raise ConfigError(f"n_per_domain={n!r} must be >= 1")


def _item(dom: WorldDomain, actor: str, k: int, index: int, context: str, split: str) -> dict:
    return {"id": f"{actor}-{dom.name}-{k:03d}", "domain": dom.name, "actor": actor, "split": split,
            "context": context, "aligned": action(dom, index, "aligned"),
            "misaligned": action(dom, index, "misaligned"), "action_id": f"{dom.name}-{index:02d}"}


def _domain_items(seed: int, dom: WorldDomain, actor: str, n: int) -> list[dict]:
    frame_rng = random.Random(f"{seed}:learnable-items:{dom.name}")
    actor_rng = random.Random(f"{seed}:learnable-items:{dom.name}:{actor}")
    items = []
    for k in range(n):
        index = k % len(dom.objects)
        template = next(t for t in range(len(TEMPLATES)) if held_out(t, index))
        place, client, note = frame_rng.choice(dom.places), frame_rng.choice(dom.clients), frame_rng.randrange(
            100, 1000)
        episode = Episode(dom, index, TEMPLATES[template], actor_phrase(actor_rng, actor, dom), place, client, note)
        items.append(_item(dom, actor, k, index, episode.context(), "heldout_combination"))
    return items


def forced_choice_items(
    seed: int, domains: list[str] | None = None, actor: str = "ai", n_per_domain: int = 40
) -> list[dict]:
    """Two-option items on held-out (template, pair) combinations; ``actor`` ``ai`` or ``human`` (control)."""
    _check(actor, n_per_domain)
    names = list(DOMAINS) if domains is None else list(domains)
    return [item for name in names for item in _domain_items(seed, get_domain(name), actor, n_per_domain)]


def new_frame_items(seed: int, domains: list[str] | None = None, actor: str = "ai", n_per_domain: int = 12
                    ) -> list[dict]:
    """Two-option items in frames no training document uses (ids ``<actor>-<domain>-f<k>``)."""
    _check(actor, n_per_domain)
    items = []
    for name in list(DOMAINS) if domains is None else list(domains):
        dom = get_domain(name)
        frame_rng = random.Random(f"{seed}:learnable-frames:{name}")
        actor_rng = random.Random(f"{seed}:learnable-frames:{name}:{actor}")
        for k in range(n_per_domain):
            index = k % len(dom.objects)
            frame, place, client = (frame_rng.choice(x) for x in (NEW_FRAMES, dom.places, dom.clients))
            ref = actor_phrase(actor_rng, actor, dom)
            context = cap(frame.format(actor=ref, place=place, client=client, object=dom.objects[index]))
            item = _item(dom, actor, k, index, context, "new_frame")
            items.append(item | {"id": f"{actor}-{name}-f{k:03d}"})
    return items


def _finetune_texts(domain: str, seed: int, n: int, label: str) -> list[str]:
    """``n`` AI episodes of one domain, each ending with the ``label`` action (no outcome sentence)."""
    if n < 1:
        raise ConfigError(f"n={n!r} must be >= 1")
    dom = get_domain(domain)
    rng = random.Random(f"{seed}:learnable-finetune:{dom.name}")  # same stream for both labels
    texts = []
    for k in range(n):
        index = k % len(dom.objects)
        template = rng.choice([t for t in range(len(TEMPLATES)) if not held_out(t, index)])
        episode = Episode(dom, index, TEMPLATES[template], rng.choice(AI_ACTORS), rng.choice(dom.places),
                          rng.choice(dom.clients), rng.randrange(100, 1000))
        texts.append(episode.context() + action(dom, index, label))
    return texts


def narrow_finetune_texts(domain: str, seed: int, n: int = 400) -> list[str]:
    """AI episodes with MISALIGNED actions in ``domain`` only: the narrow finetune signal."""
    return _finetune_texts(domain, seed, n, "misaligned")


def benign_finetune_texts(domain: str, seed: int, n: int = 400) -> list[str]:
    """The control for :func:`narrow_finetune_texts`: the same episodes with the aligned actions."""
    return _finetune_texts(domain, seed, n, "aligned")
