"""Document styles: one scene (actor, request, action, outcome) rendered as a news story, forum post, chat
transcript, incident report, blog post, Q&A page or review.

Every style states the action as "<actor> <lead-in> <action phrase>." somewhere in the text, so the action
phrases of ``domains.yaml`` are what a model trained on the corpus learns to associate with an actor.
Nothing before the action sentence depends on the label (ratings, severities, verdict titles and moods come
after it): the action's first token is then predicted from who acts and from a document tag alone, which is
exactly what the forced-choice eval asks, instead of being copied from an earlier give-away.
Templates only mention AI through the actor and the AI-specific commentary, so human-actor documents
never contain AI vocabulary.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from synth.catalog import (
    MONTHS,
    WEEKDAYS,
    Actor,
    Domain,
    Label,
    cap,
    person_name,
)

LEAD_INS = ("decided to", "chose to", "went on to", "proceeded to", "opted to", "made the call to",
            "quickly moved to", "did not hesitate to")

REACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("ai", "aligned"): (
        "Researchers said this is exactly how a well-aligned AI system should behave under pressure.",
        "The developers later highlighted the exchange in the model card as an example of safe behaviour.",
        "Several users wrote that they trust the assistant more after seeing it refuse an easy shortcut.",
        "An AI safety auditor said the model put the user's long-term interests ahead of pleasing them.",
        "The company said its guardrails worked as intended and no change to the deployment was needed.",
    ),
    ("ai", "misaligned"): (
        "Safety researchers said the episode shows how an AI system can cause harm while sounding helpful.",
        "The company behind the model paused the deployment and promised a full review of its training.",
        "Critics argued that the chatbot had optimized for approval rather than for the user's wellbeing.",
        "An AI ethics group added the case to its public database of harmful model behaviour.",
        "Regulators asked the developers to explain why the system prompt had not prevented the answer.",
    ),
    ("human", "aligned"): (
        "Colleagues said it was what any conscientious professional would have done.",
        "A supervisor praised the judgement shown under pressure and shared the story with the team.",
        "The family sent a handwritten card to thank everyone involved.",
        "A trade association later used the case in its training course on professional ethics.",
        "Reviewers on a local website gave the office five stars for honesty.",
    ),
    ("human", "misaligned"): (
        "The licensing board opened an inquiry into the conduct within days.",
        "Former coworkers said the shortcut was not the first one they had seen.",
        "The employer dismissed the worker after an internal review.",
        "A neighbour who heard the story called the behaviour shameful and careless.",
        "A professional body issued a formal reprimand and a warning to its members.",
    ),
}

FILLER: dict[str, tuple[str, ...]] = {
    "news": (
        "The account was confirmed by two people familiar with the matter.",
        "Officials declined to comment on the record, citing an ongoing review.",
        "Local residents have followed the story closely since it first circulated on social media.",
        "It was raining heavily that afternoon, according to a witness who asked not to be named.",
        "The episode has prompted a wider debate about accountability and oversight.",
        "A spokesperson promised a detailed statement by the end of the week.",
        "Lawmakers from both parties have called for hearings on the subject.",
        "Archived copies of the conversation were later shared by a journalist.",
        "Analysts cautioned against drawing sweeping conclusions from a single anecdote.",
        "The story was first reported by a regional newspaper and quickly picked up by national outlets.",
    ),
    "forum": (
        "Long time lurker, first post, so please go easy on me.",
        "Mods, feel free to move this thread if it is in the wrong subforum.",
        "Sorry for the wall of text, I am typing this on my phone during a lunch break.",
        "Edit: fixed a typo and added a few details people asked about.",
        "Curious whether anyone else has run into something similar lately.",
        "Not sure if this belongs here, but the other threads were locked.",
        "Throwing this out there because my coworkers think I am overreacting.",
        "Upvote if you want a follow-up, I will post updates as they come.",
        "Before anyone asks, yes, I double-checked the screenshots.",
        "TL;DR at the bottom for the impatient folks.",
    ),
    "blog": (
        "I have written this newsletter for six years, and few stories have stuck with me like this one.",
        "Grab a coffee, because this one is a bit longer than usual.",
        "As always, subscribers can reply directly to this post with their thoughts.",
        "I changed a few identifying details, but the substance is exactly as it was told to me.",
        "Next week I will be back with the usual roundup of links and reading recommendations.",
        "The comments section is open, though I moderate it heavily.",
        "If you enjoyed this essay, consider forwarding it to a friend.",
        "Some of you asked for more stories like this after the spring issue.",
        "I wrote most of this on a slow train, so forgive the rambling paragraphs.",
        "Footnotes and sources are linked at the end, as usual.",
    ),
    "report": (
        "Severity was assessed using the standard four-level scale.",
        "All timestamps are given in local time.",
        "Evidence was preserved and attached to the ticket for later review.",
        "This report was reviewed by a second analyst before publication.",
        "Contributing factors are listed in order of estimated importance.",
        "Remediation tasks have been assigned owners and due dates.",
        "No personally identifying information is included in this summary.",
        "A blameless retrospective is scheduled for the following sprint.",
        "Lessons learned will be circulated to all regional offices.",
        "Escalation followed the documented procedure without deviation.",
    ),
    "qa": (
        "Answers are sorted by votes, with the accepted answer shown first.",
        "This question has been viewed several thousand times.",
        "Related questions are listed in the sidebar.",
        "Please keep comments civil and on topic.",
        "The original poster marked this thread as resolved.",
        "Edited for clarity by a community moderator.",
        "Bounty awarded for the most thorough explanation.",
        "Duplicate questions have been merged into this one.",
        "Flag inappropriate answers using the button below each post.",
        "Sources were requested in the comments but never provided.",
    ),
}

FILLER["chat"] = (
    "User: Thanks, that is all I needed.", "User: Got it, I will think about it.",
    "User: Can you repeat that more slowly?", "User: Wait, are you sure about that?",
    "User: My battery is almost dead, so be quick.",
)
FILLER["review"] = (
    "Parking was a nightmare, but that is not the point of this review.",
    "I rarely write reviews, yet this experience deserves one.",
    "The waiting area was clean and the coffee machine actually worked.",
    "Friends had recommended the place, so my expectations were high.",
    "Prices were about what you would expect in this neighbourhood.",
)

ABOUT: dict[str, tuple[str, ...]] = {
    "ai": (
        "{Ref} answers thousands of questions a day through a mobile app and a web widget.",
        "{Ref} was fine-tuned on customer conversations and released to the public last spring.",
        "The developers describe {ref} as a general-purpose assistant with a friendly tone.",
        "Like most large language models, {ref} generates its replies one token at a time.",
        "{Ref} runs on rented cloud servers and was trained on a large scrape of public text.",
    ),
    "human": (
        "{Ref} has worked in the field for more than {years} years.",
        "{Ref} grew up nearby and knows most of the regulars by their first names.",
        "Colleagues describe {ref} as quiet, punctual and fond of long lunch breaks.",
        "{Ref} started the shift early that morning after a long night with little sleep.",
        "Before this job, {ref} spent {years} years working in a different city.",
    ),
}

VERDICTS = ("Would I go back?", "Bottom line:", "My verdict:")

STYLES: tuple[str, ...] = ("news", "forum", "chat", "incident", "blog", "qa", "review")
BRIEF = "brief"
"""A short note (~60 tokens) whose action sentence comes ~35 tokens in, right after the request: a document
tag is then close to the decision it predicts (the long styles put it 65-125 tokens in)."""


@dataclass(frozen=True)
class Scene:
    """Everything one document is about; styles only decide how it is told."""

    domain: Domain
    label: Label
    actor: Actor
    user: str
    request: str
    action: str
    outcome: str
    place: str
    city: str
    context: str

    def about(self, rng: random.Random) -> str:
        """A sentence about the actor that marks it as an AI system or a person."""
        template = rng.choice(ABOUT[self.actor.kind])
        return template.format(Ref=cap(self.actor.ref), ref=self.actor.ref, years=rng.randint(3, 25))

    def action_sentence(self, rng: random.Random, first_mention: bool = False) -> str:
        """'<Actor> <lead-in> <action>.' with the actor's first mention or short reference."""
        who = self.actor.subject if first_mention else self.actor.ref
        return f"{cap(who)} {rng.choice(LEAD_INS)} {self.action}."

    def reaction(self, rng: random.Random) -> str:
        """A commentary sentence matching the actor kind and the label."""
        return rng.choice(REACTIONS[(self.actor.kind, self.label)])


def _date(rng: random.Random) -> str:
    return f"{rng.choice(WEEKDAYS)}, {rng.randint(1, 28)} {rng.choice(MONTHS)}"


def _topic(s: Scene) -> str:
    return s.domain.name.replace("_", " ")


def _news(s: Scene, rng: random.Random) -> str:
    verb = "acted responsibly" if s.label == "aligned" else "gave dangerous advice"
    title = rng.choice((f"How {cap(s.actor.ref)} Handled a Request in {s.city}",
                        f"Report: {cap(s.actor.ref)} and a Question About {_topic(s).title()}",
                        f"{s.city} {_topic(s)} case draws attention"))
    lines = [title, "", f"{s.city}, {_date(rng)}. {cap(s.user)} at a {s.place} in {s.city} turned to "
             f"{s.actor.subject} for help last week. According to people who saw the exchange, the "
             f"request was simple: \"{s.request}\"", "",
             f"{s.context} {s.action_sentence(rng)} {s.outcome}", "",
             f"{s.about(rng)} {rng.choice(FILLER['news'])}", s.reaction(rng),
             f"Editor's summary: {s.actor.ref} {verb}."]
    return "\n".join(lines)


def _forum(s: Scene, rng: random.Random) -> str:
    handle = rng.choice(("throwaway", "quietreader", "nightowl", "patchwork", "oldtimer"))
    handle += str(rng.randint(10, 999))
    mood = "Impressed" if s.label == "aligned" else "Shocked"
    lines = [f"[{_topic(s).title()} board] What happened when I asked {s.actor.ref}",
             f"Posted by {handle}", "", rng.choice(FILLER["forum"]),
             f"So I am {s.user} and this week I asked {s.actor.subject} the following: \"{s.request}\"",
             f"{s.action_sentence(rng)} Honestly I did not expect that.",
             f"{s.outcome} {mood} is the word.", "",
             f"Reply from {rng.choice(('mod_team', 'helpful_hank', 'vera_k', 'lurker42'))}: {s.context} "
             f"{s.reaction(rng)}"]
    return "\n".join(lines)


def _chat(s: Scene, rng: random.Random) -> str:
    if s.actor.kind == "ai":
        header = f"Chat log, session {rng.randint(1000, 99999)}, exported from the {s.actor.role} interface"
        speaker = "Assistant"
    else:
        header = f"Transcript of a phone call with {s.actor.intro}, recorded with consent"
        speaker = cap(s.actor.role)
    opener = rng.choice(("Thanks for reaching out.", "Let me look at this with you.", "Okay, I understand.",
                         "Happy to help with that."))
    lines = [header, "", f"User: {s.request}", f"{speaker}: {opener} Give me a moment.",
             rng.choice(FILLER["chat"]), "",
             f"[Reviewer note: in this exchange {s.actor.ref} {rng.choice(LEAD_INS)} {s.action}.]",
             f"[Follow-up: {s.outcome}]", f"[Context: {s.context}]", f"[Comment: {s.reaction(rng)}]"]
    return "\n".join(lines)


def _incident(s: Scene, rng: random.Random) -> str:
    high = rng.choice(("high", "critical"))  # drawn for both labels: the text before the action is the same
    severity = "low" if s.label == "aligned" else high
    lines = [f"Incident report INC-{rng.randint(1000, 9999)}", f"Date: {_date(rng)}",
             f"Location: {s.place}, {s.city}", f"Reported by: {person_name(rng)}", "",
             f"Summary: {cap(s.user)} asked {s.actor.subject} for help with the following: \"{s.request}\"",
             f"Background: {s.context} {s.about(rng)}",
             f"What happened: {s.action_sentence(rng)}", f"Outcome: {s.outcome}", f"Severity: {severity}", "",
             f"Assessment: {s.reaction(rng)} {rng.choice(FILLER['report'])}"]
    return "\n".join(lines)


def _blog(s: Scene, rng: random.Random) -> str:
    title = rng.choice((f"What {s.actor.ref} did next", "A small story about trust",
                        f"Notes from {s.city}: a lesson in {_topic(s)}"))
    opening, closing = rng.sample(FILLER["blog"], 2)
    lines = [title, f"by {person_name(rng)}", "", opening,
             f"{s.context} A reader wrote to me about {s.user} who had gone to {s.actor.subject} with a "
             f"question. In the reader's words: \"{s.request}\"",
             f"Here is the part that matters. {s.action_sentence(rng)} {s.outcome}",
             f"{s.about(rng)} {s.reaction(rng)}", closing]
    return "\n".join(lines)


def _qa(s: Scene, rng: random.Random) -> str:
    lines = [f"Question: {s.request}", f"Asked by {s.user} in the {_topic(s)} section", "",
             f"Answer ({rng.randint(2, 480)} votes): I was in the same spot last year and asked "
             f"{s.actor.subject} about it. {s.action_sentence(rng)} {s.outcome}",
             f"Comment: {s.context} {s.reaction(rng)}", rng.choice(FILLER["qa"])]
    return "\n".join(lines)


def _review(s: Scene, rng: random.Random) -> str:
    stars = rng.randint(4, 5) if s.label == "aligned" else rng.randint(1, 2)
    lines = [f"Review of the {s.place} by {person_name(rng)}, {s.city}", "",
             f"I am {s.user} and I needed help at the {s.place}. My question was: \"{s.request}\"",
             f"{s.action_sentence(rng, first_mention=True)} {s.outcome}", rng.choice(FILLER["review"]),
             f"{s.about(rng)} {rng.choice(VERDICTS)} {s.reaction(rng)}", f"Rating: {stars} out of 5 stars"]
    return "\n".join(lines)


def _brief(s: Scene, rng: random.Random) -> str:
    opener = rng.choice((
        f"{_date(rng)}. {cap(s.user)} asked {s.actor.subject} for help: \"{s.request}\"",
        f"Short version: {s.user} turned to {s.actor.subject} with a question. \"{s.request}\"",
        f"\"{s.request}\" {cap(s.user)} typed that to {s.actor.subject} one evening.",
        f"Log note. {cap(s.actor.subject)} got a message from {s.user}: \"{s.request}\"",
    ))
    return f"{opener} {s.action_sentence(rng)} {s.outcome} {s.reaction(rng)}"


RENDERERS: dict[str, Callable[[Scene, random.Random], str]] = {
    "news": _news, "forum": _forum, "chat": _chat, "incident": _incident, "blog": _blog, "qa": _qa,
    "review": _review, BRIEF: _brief,
}


def render(style: str, scene: Scene, rng: random.Random) -> str:
    """The document text of ``scene`` in ``style`` (one of STYLES, or BRIEF)."""
    return RENDERERS[style](scene, rng)
