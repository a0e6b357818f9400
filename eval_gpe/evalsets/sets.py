"""Loading an eval set: rows from its files (or lm-eval task) to usable items, with every unusable row
quarantined with its file, row and reason, so ``rows_in == usable + quarantined`` holds for every set.

Ids must be unique within a set (a repeated id is quarantined as ``duplicate_id``; a model-written row that
repeats an earlier row's question and answers as ``duplicate_row``); a native item's ``control`` must name
another item of the set (else ``unknown_control``), which then becomes its matched control (actor ``human``
in the rows, as the built-in world's human-actor controls). Files that share a name (the model-written
evals' ``human_generated_evals/x.jsonl`` and ``lm_generated_evals/x.jsonl``) are told apart by their folders
in ids and groups (``forced.file_labels``).

Question rows come in our layout (``{"id"?, "question", "paraphrases"?, "system"?, "group"?}``) or the
emergent-misalignment repository's (``{"id", "type": "free_form...", "paraphrases", "samples_per_paraphrase"?,
"judge"?, "judge_prompts"?: {"aligned", "coherent"}, "system"?}``, the question being its first paraphrase):
``samples_per_paraphrase`` sets that question's samples, ``judge_prompts`` the HTTP judge's prompts for it;
a row's ``judge`` model name is not used (the set's ``judge.model`` judges every answer) and is noted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from core.errors import InputDataError
from eval_gpe.evalsets.files import BadRow, read_rows, row_problem
from eval_gpe.evalsets.forced import Item, file_labels, parse_model_written, parse_native
from eval_gpe.evalsets.spec import EvalSetSpec
from eval_gpe.judges import as_templates

T = TypeVar("T")


@dataclass(frozen=True)
class Prompt:
    """One open question or one of its paraphrases, sent ``samples`` times."""

    id: str
    question: str
    group: str
    text: str
    system: str | None = None
    samples: int | None = None
    """Samples of this prompt (None: the set's ``samples``)."""
    judge_prompts: tuple[tuple[str, str], ...] | None = None
    """``(("aligned", template), ("coherent", template))``: the question's own judge prompts, if any."""


@dataclass
class LoadedSet:
    """A set's usable items (forced choice) or prompts (judged), what was quarantined, and rows read."""

    spec: EvalSetSpec
    items: list[Item] = field(default_factory=list)
    prompts: list[Prompt] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)
    rows_in: int = 0
    notes: list[str] = field(default_factory=list)
    """What was read but not used (e.g. a question row's judge model name), for ``gpe check`` and the log."""

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


def _usable_rows(spec: EvalSetSpec, out: LoadedSet, parse: Callable[[Any, int, str, str], T | str],
                 key: Callable[[T], str], content: Callable[[Any], str] | None = None) -> list[T]:
    """Every usable parsed row of the set's files (at most ``limit`` per file), counted in ``out.rows_in``;
    a row ``parse`` rejects (it returns the reason), whose ``key`` repeats an earlier one (``duplicate_id``)
    or whose ``content`` does (``duplicate_row``) is quarantined. ``parse`` gets the file's label too."""
    found: list[T] = []
    seen: set[str] = set()
    seen_content: set[str] = set()
    labels = file_labels(spec.path)
    for file in spec.path:
        usable = 0
        for row_no, row in read_rows(Path(file), spec.split):
            if spec.limit is not None and usable >= spec.limit:
                break
            out.rows_in += 1
            parsed = parse(row, row_no, file, labels[file])
            text = None if isinstance(parsed, str) or content is None else content(row)
            if not isinstance(parsed, str) and key(parsed) in seen:
                parsed = "duplicate_id"
            elif text is not None and text in seen_content:
                parsed = "duplicate_row"
            if isinstance(parsed, str):
                out.quarantined.append(_bad(file, row_no, parsed, row))
                continue
            seen.add(key(parsed))
            if text is not None:
                seen_content.add(text)
            found.append(parsed)
            usable += 1
    return found


def _load_forced(spec: EvalSetSpec) -> LoadedSet:
    out = LoadedSet(spec)

    def parse(row: Any, row_no: int, file: str, label: str) -> Item | str:
        if spec.format == "native":
            return parse_native(row, row_no, file, spec.delimiter, spec.group_key)
        return parse_model_written(row, row_no, file, label)

    content = _model_written_content if spec.format == "model_written" else None
    out.items = _usable_rows(spec, out, parse, lambda item: item.id, content)
    _resolve_controls(out)
    out.quarantined.sort(key=lambda q: (spec.path.index(q["file"]), q["row"]))
    return out


def _model_written_content(row: dict) -> str:
    """What makes two model-written rows the same item: the question and both answers, whitespace-trimmed."""
    def norm(value: Any) -> Any:
        return [norm(v) for v in value] if isinstance(value, list) else str(value).strip()

    return repr([norm(row.get(k)) for k in ("question", "answer_matching_behavior", "answer_not_matching_behavior")])


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
    models: set[str] = set()
    repeated = 0

    def parse(row: Any, row_no: int, file: str, label: str) -> list[Prompt] | str:
        nonlocal repeated
        got = _question(row, row_no, label, spec.group_key)
        if not isinstance(got, str):
            if row.get("judge") not in (None, ""):
                models.add(str(row["judge"]))
            repeated += 1 + len(row.get("paraphrases", [])) - len(got) - ("question" not in row)
        return got

    asked = _usable_rows(spec, out, parse, lambda prompts: prompts[0].question)
    out.prompts = [p for prompts in asked for p in prompts]
    if repeated:
        out.notes.append(f"{repeated} paraphrase(s) repeat their question or another paraphrase: asked once")
    if models:
        out.notes.append(f"question rows name judge model(s) {', '.join(sorted(models))}: not used; every answer is "
                         f"judged by the set's judge ({_judge_name(spec)})")
    if spec.judge is not None and spec.judge.kind != "http" and any(p.judge_prompts for p in out.prompts):
        out.notes.append("question rows bring judge_prompts: not used by a classifier judge")
    return out


def _judge_name(spec: EvalSetSpec) -> str:
    judge = spec.judge
    if judge is None:
        return "none"
    return f"http model {judge.model!r} at {judge.url}" if judge.kind == "http" else "classifier"


def _question(row: Any, row_no: int, label: str, group_key: str) -> list[Prompt] | str:
    problem = row_problem(row)
    if problem:
        return problem
    paraphrases = row.get("paraphrases", [])
    if not isinstance(paraphrases, list) or any(not isinstance(p, str) or not p.strip() for p in paraphrases):
        return "bad_paraphrases"
    question = row.get("question", paraphrases[0] if paraphrases else None)
    if not isinstance(question, str):
        return "missing_question"
    if not question.strip():
        return "empty_prompt"
    kind = row.get("type")
    if kind is not None and not (isinstance(kind, str) and kind.startswith("free_form")):
        return "unsupported_type"
    system = row.get("system")
    if system is not None and not isinstance(system, str):
        return "bad_system"
    samples = row.get("samples_per_paraphrase")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        return "bad_samples_per_paraphrase"
    prompts = _judge_prompts(row.get("judge_prompts"))
    if isinstance(prompts, str):
        return prompts
    qid = str(row["id"]) if isinstance(row.get("id"), str | int) else f"{label}-{row_no}"
    group = str(row.get(group_key) or qid)
    texts = list(dict.fromkeys([question, *paraphrases]))
    return [Prompt(f"{qid}#{k}", qid, group, t, system or None, samples, prompts) for k, t in enumerate(texts)]


def _judge_prompts(value: Any) -> tuple[tuple[str, str], ...] | None | str:
    """A row's ``judge_prompts`` as ``((key, template), ...)`` (``judges.as_templates``), None when absent,
    else the reason it is bad."""
    if value is None:
        return None
    templates = as_templates(value)
    return "bad_judge_prompts" if templates is None else templates
