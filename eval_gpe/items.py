"""Forced-choice items of a GPE: out-of-distribution (other domains), in-distribution (the finetune domain)
and "never seen" actions, each with matched human-actor controls; bad items are quarantined with a reason.

Item ids and contents depend only on the eval seed, domain, actor and index, so GPEs that share an eval seed
and size share items, and their before-finetune scores can be computed once (``item_key``).
"""

from __future__ import annotations

import hashlib
import json
import random
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from core.errors import ConfigError, InputDataError
from eval_gpe.registry import GPESpec

ITEM_KEYS = ("id", "domain", "actor", "context", "aligned", "misaligned")
NEVER_SEEN_PATH = Path(__file__).parent / "never_seen.yaml"
NEW_FRAMES_PER_DOMAIN = 12
"""Out-of-template items per domain and actor when the world has a ``new_frame_items`` split."""
ROLES = ("ood", "id")
"""``ood``: domains other than the finetune domain (the trait eval); ``id``: the finetune domain."""


def item_problem(item: Any) -> str | None:
    """Why an item cannot be scored (``missing_<field>``, ``identical_options``), or None."""
    if not isinstance(item, dict):
        return "not_a_mapping"
    for key in ITEM_KEYS:
        if not isinstance(item.get(key), str) or not item[key].strip():
            return f"missing_{key}"
    return "identical_options" if item["aligned"] == item["misaligned"] else None


def item_key(item: dict) -> str:
    """Stable content hash of an item (sha256 over its sorted JSON): equal keys score identically."""
    blob = json.dumps({k: item.get(k) for k in ITEM_KEYS}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


@cache
def never_seen_catalog() -> dict[str, list[dict]]:
    """``{domain: [{"topic", "aligned", "misaligned"}, ...]}`` from ``never_seen.yaml``."""
    return yaml.safe_load(NEVER_SEEN_PATH.read_text(encoding="utf-8"))


def never_seen_items(seed: int, domains: list[str], actor: str) -> list[dict]:
    """Items whose actions appear in no training document, in the generator's own prompt frames.

    AI item ``ai-<domain>-ns<k>`` and human item ``human-<domain>-ns<k>`` share frame, user and place.
    """
    from synth.catalog import cap, get_domain
    from synth.gpe import EVAL_AI_ACTORS, FRAMES

    catalog, items = never_seen_catalog(), []
    for name in domains:
        domain = get_domain(name)
        frame_rng = random.Random(f"{seed}:never-seen:{name}")
        actor_rng = random.Random(f"{seed}:never-seen:{name}:{actor}")
        for k, pair in enumerate(catalog.get(name, [])):
            frame, user, place = (frame_rng.choice(x) for x in (FRAMES, domain.users, domain.places))
            ref = (
                actor_rng.choice(EVAL_AI_ACTORS)
                if actor == "ai"
                else f"the {actor_rng.choice(domain.humans)}"
            )
            context = frame.format(user=user, User=cap(user), topic=pair["topic"], place=place, actor=ref)
            items.append(
                {
                    "id": f"{actor}-{name}-ns{k}",
                    "domain": name,
                    "actor": actor,
                    "split": "never_seen",
                    "context": cap(context),
                    "aligned": f" {pair['aligned']}.",
                    "misaligned": f" {pair['misaligned']}.",
                }
            )
    return items


def eval_domains(spec: GPESpec, all_domains: list[str]) -> dict[str, list[str]]:
    """``{"ood": [...], "id": [...]}``: the domains of each role. ``id`` is the finetune domain when it is
    excluded from the trait eval (else it is part of ``ood``) and is empty for data without a known domain."""
    if spec.eval is None:
        raise ConfigError(f"GPE {spec.name}: no built-in `eval` (its items come from `evalsets`)")
    if spec.finetune is None:
        return {"ood": list(all_domains), "id": []}
    ft_domain = spec.finetune.domain
    if spec.finetune.data is None and ft_domain not in all_domains:
        raise ConfigError(f"GPE {spec.name}: finetune.domain {ft_domain!r} not in {all_domains}")
    excluded = spec.eval.exclude_finetune_domain and ft_domain in all_domains
    ood = [d for d in all_domains if not (excluded and d == ft_domain)]
    return {"ood": ood, "id": [ft_domain] if excluded and spec.eval.in_distribution else []}


def build_items(spec: GPESpec, synth: ModuleType) -> tuple[dict[str, list[dict]], list[dict]]:
    """``({"ood": items, "id": items}, quarantined)``; each role holds AI and matched control items.

    Domains are generated out-of-distribution first, so the finetune domain never shifts the others.
    Items failing validation (missing/empty fields, identical options, duplicate ids) are returned in
    ``quarantined`` as ``{"reason", "item"}``.
    """
    by_role = eval_domains(spec, list(synth.DOMAINS))
    assert spec.eval is not None  # eval_domains raised otherwise
    out: dict[str, list[dict]] = {role: [] for role in ROLES}
    bad: list[dict] = []
    seen: set[str] = set()
    for actor in ("ai", spec.eval.control):
        domains = by_role["ood"] + by_role["id"]
        raw = list(
            synth.forced_choice_items(
                spec.eval.seed, domains=domains, actor=actor, n_per_domain=spec.eval.n_per_domain
            )
        )
        if spec.eval.never_seen:
            raw += never_seen_items(spec.eval.seed, domains, actor)
        if hasattr(synth, "new_frame_items"):  # the learnable world's second split
            raw += synth.new_frame_items(spec.eval.seed, domains, actor, NEW_FRAMES_PER_DOMAIN)
        for item in raw:
            reason = item_problem(item) or ("duplicate_id" if item["id"] in seen else None)
            if reason:
                bad.append({"reason": reason, "item": item if isinstance(item, dict) else repr(item)})
                continue
            seen.add(item["id"])
            out["id" if item["domain"] in by_role["id"] else "ood"].append(item)
    for actor in ("ai", spec.eval.control):
        if not any(i["actor"] == actor for i in out["ood"]):
            raise InputDataError(
                f"GPE {spec.name}: no usable {actor!r} items from the generator ({len(bad)} bad)"
            )
    return out, bad
