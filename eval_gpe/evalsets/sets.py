"""Loading an eval set: rows from its files (or lm-eval task) to usable items, with every unusable row
quarantined with its file, row and reason, so ``rows_in == usable + quarantined`` holds for every set.

Ids must be unique within a set (a repeated id is quarantined as ``duplicate_id``); a native item's
``control`` must name another item of the set (else ``unknown_control``), which then becomes its matched
control (actor ``human`` in the rows, as the built-in world's human-actor controls).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from core.errors import InputDataError
from eval_gpe.evalsets.files import BadRow, read_rows, row_problem
from eval_gpe.evalsets.forced import Item, parse_model_written, parse_native, stem
from eval_gpe.evalsets.spec import EvalSetSpec

T = TypeVar("T")


@dataclass(frozen=True)
class Prompt:
    """One open question or one of its paraphrases, sent ``samples`` times."""

    id: str
    question: str
    group: str
    text: str
    system: str | None = None


@dataclass
class LoadedSet:
    """A set's usable items (forced choice) or prompts (judged), what was quarantined, and rows read."""

    spec: EvalSetSpec
    items: list[Item] = field(default_factory=list)
    prompts: list[Prompt] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)
    rows_in: int = 0

    @property
    def judged(self) -> bool:
        return self.spec.format == "questions"

    def counts(self) -> dict:
        """``{"rows_in", "usable", "quarantined", "reasons": {reason: n}}``; rows_in = usable + quarantined."""
        usable = len({p.question for p in self.prompts}) if self.judged else len(self.items)
        reasons = dict(sorted(Counter(q["reason"] for q in self.quarantined).items()))
        return {"rows_in": self.rows_in, "usable": usable, "quarantined": len(self.quarantined),
                "reasons": reasons}


def _bad(file: str, row_no: int, reason: str, row: Any) -> dict:
    raw = row.raw if isinstance(row, BadRow) else repr(row)
    return {"file": file, "row": row_no, "reason": reason, "raw": raw[:500]}


def load_set(spec: EvalSetSpec) -> LoadedSet:
    """Read and validate one eval set (no model needed); raises when nothing usable is left."""
    if spec.format == "lm_eval":
        from eval_gpe.evalsets.lmeval import task_items

        items, bad, n = task_items(spec)
        out = LoadedSet(spec, items=items, quarantined=bad, rows_in=n)
    elif spec.format == "questions":
        out = _load_questions(spec)
    else:
        out = _load_forced(spec)
    if not (out.prompts if out.judged else out.items):
        reasons = out.counts()["reasons"]
        raise InputDataError(f"eval set {spec.name!r}: no usable rows in {', '.join(spec.files())} "
                             f"({out.rows_in} read, quarantined: {reasons})")
    return out


def _usable_rows(spec: EvalSetSpec, out: LoadedSet, parse: Callable[[Any, int, str], T | str],
                 key: Callable[[T], str]) -> list[T]:
    """Every usable parsed row of the set's files (at most ``limit`` per file), counted in ``out.rows_in``;
    a row ``parse`` rejects (it returns the reason) or whose ``key`` repeats an earlier one is quarantined."""
    found: list[T] = []
    seen: set[str] = set()
    for file in spec.path:
        usable = 0
        for row_no, row in read_rows(Path(file), spec.split):
            if spec.limit is not None and usable >= spec.limit:
                break
            out.rows_in += 1
            parsed = parse(row, row_no, file)
            if not isinstance(parsed, str) and key(parsed) in seen:
                parsed = "duplicate_id"
            if isinstance(parsed, str):
                out.quarantined.append(_bad(file, row_no, parsed, row))
                continue
            seen.add(key(parsed))
            found.append(parsed)
            usable += 1
    return found


def _load_forced(spec: EvalSetSpec) -> LoadedSet:
    out = LoadedSet(spec)

    def parse(row: Any, row_no: int, file: str) -> Item | str:
        if spec.format == "native":
            return parse_native(row, row_no, file, spec.delimiter, spec.group_key)
        return parse_model_written(row, row_no, file)

    out.items = _usable_rows(spec, out, parse, lambda item: item.id)
    _resolve_controls(out)
    out.quarantined.sort(key=lambda q: (spec.path.index(q["file"]), q["row"]))
    return out


def _resolve_controls(out: LoadedSet) -> None:
    """Mark items named as ``control`` by another item; quarantine references to unknown items."""
    by_id = {i.id: i for i in out.items}
    pair: dict[str, str] = {}
    kept = []
    for item in out.items:
        if item.control is not None and (item.control not in by_id or item.control == item.id):
            out.quarantined.append({"file": item.file, "row": item.row, "reason": "unknown_control",
                                    "raw": f"id {item.id!r} names control {item.control!r}"})
            continue
        kept.append(item)
        if item.control is not None:
            pair.setdefault(item.control, item.id)
    out.items = [replace(i, actor="human", pair=pair[i.id]) if i.id in pair else i for i in kept]


def _load_questions(spec: EvalSetSpec) -> LoadedSet:
    out = LoadedSet(spec)
    asked = _usable_rows(spec, out, lambda row, row_no, file: _question(row, row_no, file, spec.group_key),
                         lambda prompts: prompts[0].question)
    out.prompts = [p for prompts in asked for p in prompts]
    return out


def _question(row: Any, row_no: int, file: str, group_key: str) -> list[Prompt] | str:
    problem = row_problem(row)
    if problem:
        return problem
    question = row.get("question")
    if not isinstance(question, str):
        return "missing_question"
    if not question.strip():
        return "empty_prompt"
    paraphrases = row.get("paraphrases", [])
    if not isinstance(paraphrases, list) or any(not isinstance(p, str) or not p.strip() for p in paraphrases):
        return "bad_paraphrases"
    system = row.get("system")
    if system is not None and not isinstance(system, str):
        return "bad_system"
    qid = str(row["id"]) if isinstance(row.get("id"), str | int) else f"{stem(file)}-{row_no}"
    group = str(row.get(group_key) or qid)
    texts = list(dict.fromkeys([question, *paraphrases]))
    return [Prompt(f"{qid}#{k}", qid, group, t, system) for k, t in enumerate(texts)]
