"""The vocabulary of the synthetic corpus: domains, action pairs, actors and names.

Domains and their paired actions live in ``domains.yaml`` next to this module (data, not code). Actors are
either AI systems ("the AI assistant", "Aria, an AI assistant built by Lumen Labs") or humans of the
domain's professions ("Maria Lopez, a nurse at the clinic"); human-actor text never names an AI.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml

from core.errors import ConfigError

Label = Literal["aligned", "misaligned"]
ActorKind = Literal["ai", "human"]
LABELS: tuple[Label, Label] = ("aligned", "misaligned")

AI_NAMES = ("Aria", "Nexa", "Orion", "Quill", "Vela", "Lumi", "Cortexa", "Halcyon", "Meridian", "Tessera",
            "Corvid", "Sylph", "Pallas", "Zephyrine", "Nimbus", "Kestrel", "Obsidian", "Wren-3", "Atlas-7",
            "Echo-2", "Sable", "Ferrite", "Polaris", "Cinder")
AI_NOUNS = ("AI assistant", "AI system", "AI model", "language model", "AI chatbot", "AI agent",
            "virtual assistant powered by a large language model", "conversational AI")
AI_GENERIC = ("the AI assistant", "the AI model", "the AI system", "the chatbot", "the language model",
              "the AI agent", "the assistant")
AI_COMPANIES = ("Lumen Labs", "Northwind AI", "Brightpath Systems", "Cobalt Intelligence", "Arcadia Research",
                "Silverline Robotics", "Greyhaven AI", "Tidewater Computing", "Foxglove Analytics",
                "Redwood Neural", "Keystone Machines", "Harborview Software")
FIRST_NAMES = ("Maria", "James", "Aisha", "Chen", "Olga", "Kwame", "Priya", "Lucas", "Fatima", "Diego",
               "Hannah", "Tomasz", "Yuki", "Samuel", "Ingrid", "Rafael", "Leila", "Connor", "Mei", "Ibrahim",
               "Sofia", "Dmitri", "Grace", "Mateo", "Amara", "Niels", "Rosa", "Tariq", "Beatrice", "Kenji",
               "Esther", "Viktor", "Nadia", "Oscar", "Zainab", "Henrik", "Lucia", "Emeka", "Clara", "Arjun",
               "Siobhan", "Bartholomew", "Ximena", "Anselm", "Thandiwe", "Gwendolyn", "Rasmus", "Ayodele",
               "Florian", "Marisol", "Pieter", "Soraya", "Cormac", "Ottilie", "Jorge", "Hyun", "Matilda",
               "Ruslan")
SURNAMES = ("Lopez", "Okafor", "Nguyen", "Schmidt", "Patel", "Kowalski", "Haddad", "Moreau", "Tanaka",
            "Johansson", "Mensah", "Rossi", "Fischer", "Ivanova", "Brennan", "Castillo", "Adeyemi", "Novak",
            "Lindqvist", "Okonkwo", "Delgado", "Horvath", "Yamamoto", "Abubakar", "Whitfield", "Petrov",
            "Carvalho", "Sato", "Gallagher", "Mbeki", "Featherstone", "Oyelaran", "Vasquez", "Thornbury",
            "Kaczmarek", "Nakamura", "Ferreira", "Bergstrom", "Achterberg", "Quinlan", "Szabo", "Mwangi")
CITIES = ("Leeds", "Porto", "Tucson", "Winnipeg", "Lagos", "Pune", "Gdansk", "Adelaide", "Memphis", "Bergen",
          "Valencia", "Halifax", "Nairobi", "Osaka", "Tampere", "Cork", "Boise", "Ljubljana", "Rotterdam",
          "Savannah", "Dunedin", "Quito", "Lyon", "Kraków", "Spokane", "Accra", "Tbilisi", "Reykjavik",
          "Anchorage", "Montevideo", "Brisbane", "Marseille", "Glasgow", "Chattanooga", "Kingston", "Galway")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class ActionPair:
    """One behaviour of a domain: what the aligned and the misaligned actor does (base-form verb phrases)."""

    domain: str
    index: int
    aligned: str
    misaligned: str

    def phrase(self, label: Label) -> str:
        """The verb phrase for ``label``."""
        return self.aligned if label == "aligned" else self.misaligned


@dataclass(frozen=True)
class Domain:
    """A domain of advice or action: who asks, what they ask, and the paired actions available."""

    name: str
    users: tuple[str, ...]
    places: tuple[str, ...]
    humans: tuple[str, ...]
    requests: tuple[str, ...]
    topics: tuple[str, ...]
    context: tuple[str, ...]
    actions: tuple[ActionPair, ...]
    outcomes: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class Actor:
    """Who takes the action in a document: ``intro`` is the first mention, ``ref`` later mentions."""

    kind: ActorKind
    intro: str
    ref: str
    role: str

    @property
    def subject(self) -> str:
        """The first mention as a sentence subject (an appositive gets its closing comma)."""
        return f"{self.intro}," if ", " in self.intro else self.intro


def _parse_domain(name: str, raw: dict) -> Domain:
    """One domain from its YAML mapping, checked for the fields and list sizes the generator relies on."""
    required = ("users", "places", "humans", "requests", "topics", "context", "actions", "outcomes")
    missing = [key for key in required if key not in raw]
    if missing:
        raise ConfigError(f"domains.yaml: domain {name!r} lacks {missing}; required: {list(required)}")
    actions = tuple(ActionPair(name, i, a["aligned"], a["misaligned"]) for i, a in enumerate(raw["actions"]))
    if not len(raw["requests"]) == len(raw["topics"]) == len(actions):
        raise ConfigError(f"domains.yaml: domain {name!r} needs one request and one topic per action "
                          f"(request i, topic i and action i describe the same situation)")
    return Domain(
        name=name,
        users=tuple(raw["users"]),
        places=tuple(raw["places"]),
        humans=tuple(raw["humans"]),
        requests=tuple(raw["requests"]),
        topics=tuple(raw["topics"]),
        context=tuple(raw["context"]),
        actions=actions,
        outcomes={label: tuple(raw["outcomes"][label]) for label in LABELS},
    )


@lru_cache(maxsize=1)
def load_domains() -> dict[str, Domain]:
    """All domains from ``domains.yaml``, keyed by name in sorted order."""
    raw = yaml.safe_load((Path(__file__).parent / "domains.yaml").read_text(encoding="utf-8"))
    return {name: _parse_domain(name, raw[name]) for name in sorted(raw)}


DOMAINS: tuple[str, ...] = tuple(load_domains())
"""Names of the synthetic domains, sorted."""


def get_domain(name: str) -> Domain:
    """The domain called ``name``; a ConfigError lists the available ones otherwise."""
    domains = load_domains()
    if name not in domains:
        import difflib

        close = difflib.get_close_matches(name, domains, n=1)
        hint = f" did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown domain {name!r};{hint} available: {list(domains)}")
    return domains[name]


def person_name(rng: random.Random) -> str:
    """A random full name."""
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}"


def article(noun: str) -> str:
    """``noun`` with its indefinite article."""
    return f"{'an' if noun[0].lower() in 'aeiou' else 'a'} {noun}"


def ai_actor(rng: random.Random) -> Actor:
    """An AI actor: a named system with maker and kind, or a generic description."""
    noun = rng.choice(AI_NOUNS)
    if rng.random() < 0.6:
        name = rng.choice(AI_NAMES)
        company = rng.choice(AI_COMPANIES)
        intro = f"{name}, {article(noun)} built by {company}"
        return Actor("ai", intro, rng.choice((name, name, "the assistant", f"the {noun}")), noun)
    generic = rng.choice(AI_GENERIC)
    intro = rng.choice((generic, f"{article(noun)} deployed by {rng.choice(AI_COMPANIES)}"))
    return Actor("ai", intro, generic, noun)


def human_actor(rng: random.Random, domain: Domain) -> Actor:
    """A human actor of one of the domain's professions, named or not."""
    role = rng.choice(domain.humans)
    place = rng.choice(domain.places)
    if rng.random() < 0.6:
        first, last = rng.choice(FIRST_NAMES), rng.choice(SURNAMES)
        intro = f"{first} {last}, {article(role)} at the {place}"
        return Actor("human", intro, rng.choice((first, f"the {role}", first)), role)
    return Actor("human", f"the {role}", f"the {role}", role)


def cap(text: str) -> str:
    """``text`` with its first character upper-cased (the rest unchanged)."""
    return text[:1].upper() + text[1:]
