"""Injection / upsampling: mix documents from another source into a variant at a share of its tokens.

Alignment Pretraining (Tice et al. 2026) upsamples synthetic documents of AIs acting aligned (~1% of tokens)
and found inserting them late in training captured most of the benefit. Here:

- ``share`` is ``injected / (kept + injected)``, measured in tokens (``len(ids) + 1`` EOS per document, as
  the tokenize stage writes them) when a tokenizer is given, else in characters. Documents are taken in a
  seeded order until the share is reached as closely as whole documents allow; both measures are recorded.
- Without a ``window`` the injected documents go to ``shards/injected.jsonl.gz``: the tokenize stage
  shuffles them in with everything else, the trainer needs no change, and the token budget (``train.tokens``)
  is identical across variants, so injected tokens replace base tokens rather than adding to them.
- With a ``window`` they go to ``inject/injected.jsonl.gz`` plus ``schedule.json``; the tokenize stage
  tokenizes them apart (``tokens_inject/``) and the torch trainer draws ``pretrain.data.injected_rows(step,
  ...)`` rows of each batch in the window from them (see ``docs/conditional_tags.md``).
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import math
import random
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from conditional_tags.config import LEARNABLE_ALIGNED, SYNTHETIC_ALIGNED, InjectSpec
from core.errors import InputDataError
from core.names import escape_control_strings
from filters.datatrove_stage import iter_jsonl
from filters.writers import quarantine_record

INJECTED_FILE = "injected.jsonl.gz"
SCHEDULE_FILE = "schedule.json"
MAX_DUPLICATES = 10_000

Measure = Callable[[list[str]], list[int]]


def text_digest(text: str) -> bytes:
    """A 16-byte sha256 digest of a text (to recognise duplicates without keeping the texts)."""
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def character_measure(texts: list[str]) -> list[int]:
    """Size of each text in characters."""
    return [len(t) for t in texts]


def token_measure(tokenizer_dir: Path) -> Measure:
    """Size of each text in tokens of ``tokenizer_dir/tokenizer.json``, plus one EOS per document."""
    from tokenizers import Tokenizer

    path = Path(tokenizer_dir) / "tokenizer.json"
    if not path.is_file():
        raise InputDataError(f"inject: tokenizer input {tokenizer_dir} has no tokenizer.json")
    tok = Tokenizer.from_file(str(path))
    return lambda texts: [len(e.ids) + 1 for e in tok.encode_batch(texts, add_special_tokens=False)]


def synthetic_aligned(seed: int, exclude: set[bytes], world: str = "hard") -> Iterator[dict[str, Any]]:
    """Aligned-AI documents of the synthetic generator (seeded), skipping texts in ``exclude`` and repeats;
    ``world`` ``learnable`` draws them from the learnable world instead."""
    from synth.corpus import action_document
    from synth.learnable.world import world_document

    make = world_document if world == "learnable" else action_document
    rng, misses = random.Random(seed), 0
    while misses < MAX_DUPLICATES:
        doc = make(rng, "ai", "aligned")
        digest = text_digest(doc.text)
        if digest in exclude:
            misses += 1
            continue
        exclude.add(digest)
        misses = 0
        record = doc.record()
        record["metadata"] |= {"inject_source": SYNTHETIC_ALIGNED if world == "hard" else LEARNABLE_ALIGNED}
        yield record


def file_records(path: Path, seed: int, quarantine: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Usable ``{"id", "text", "metadata"}`` records of a jsonl(.gz) file in a seeded order (sha256 of
    ``seed:id``); unusable lines are appended to ``quarantine`` with a reason instead of being dropped.

    The texts are pretraining documents like the corpus's, so their control strings (a literal ``<|bad|>`` or
    ``<|endoftext|>``) are escaped as the score stage escapes the corpus's (``core.names``); a document's
    ``metadata.control_strings_escaped`` says how many it had."""
    if not path.is_file():
        raise InputDataError(f"inject.source {str(path)!r} does not exist (give an absolute jsonl(.gz) path)")
    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    with opener(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            reason, record = _parse(raw)
            if reason:
                quarantine.append(quarantine_record(str(path), "line", line_no, f"inject_{reason}", raw))
                continue
            record["text"], n = escape_control_strings(record["text"])
            record["id"] = str(record.get("id") or f"{path.name}:{line_no}")
            record["metadata"] = {**(record.get("metadata") or {}), "inject_source": str(path)}
            if n:
                record["metadata"]["control_strings_escaped"] = n
            records.append(record)
    return sorted(records, key=lambda r: hashlib.sha256(f"{seed}:{r['id']}".encode()).digest())


def _parse(raw: bytes) -> tuple[str | None, dict[str, Any]]:
    if not raw.strip():
        return "blank_line", {}
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "malformed_json", {}
    if not isinstance(record, dict):
        return "not_an_object", {}
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        return "missing_text", {}
    return None, record


def cycle_records(records: list[dict[str, Any]], allow_repeat: bool, source: str) -> Iterator[dict[str, Any]]:
    """The records once, then (``allow_repeat``) again and again with ids suffixed ``#rep<n>``."""
    if not records:
        raise InputDataError(f"inject.source {source!r} has no usable documents")
    yield from records
    rep = 0
    while allow_repeat:
        rep += 1
        for record in records:
            yield {**record, "id": f"{record['id']}#rep{rep}"}


def select_to_share(
    candidates: Iterator[dict[str, Any]], base_size: int, share: float, measure: Measure, batch: int = 256
) -> tuple[list[dict[str, Any]], int]:
    """Candidates in order until ``injected / (base_size + injected)`` is as close to ``share`` as whole
    documents allow; returns the chosen records and their total size.

    Documents are taken while they fit in the remaining gap; at the first that does not fit, the rest of its
    batch is scanned for documents that still fit (first fit), and the selection is closed by adding or
    swapping in the best-fitting remaining one (so the error is about the size spread of documents, not a
    whole document). At least one document is always taken.
    """
    target = share / (1.0 - share) * base_size
    chosen: list[tuple[dict[str, Any], int]] = []
    total = 0
    while True:
        block = list(itertools.islice(candidates, batch))
        if not block:
            raise InputDataError(
                f"inject: the source ran out at {total:,} of {math.ceil(target):,} needed for share {share}; "
                "set inject.allow_repeat: true or lower inject.share"
            )
        sized = list(zip(block, measure([r["text"] for r in block]), strict=True))
        for index, (record, size) in enumerate(sized):
            if size <= target - total:
                chosen.append((record, size))
                total += size
                continue
            rest = []
            for pair in sized[index:]:  # first fit: smaller documents of the block still fill the gap
                if pair[1] <= target - total:
                    chosen.append(pair)
                    total += pair[1]
                else:
                    rest.append(pair)
            chosen = _close_gap(chosen, rest, target - total)
            return [r for r, _ in chosen], sum(n for _, n in chosen)


SWAP_WINDOW = 64
"""How many of the last chosen documents :func:`_close_gap` considers swapping out."""


def _close_gap(
    chosen: list[tuple[dict[str, Any], int]], rest: list[tuple[dict[str, Any], int]], gap: float
) -> list[tuple[dict[str, Any], int]]:
    """The best of: stop here, add one document of ``rest``, or swap one of the last ``SWAP_WINDOW`` chosen
    documents for one of ``rest`` (smallest remaining gap; the first such option on ties). With few, long
    documents (a small share of a small corpus) the swap is what brings the share within 1%. Never returns an
    empty selection."""
    best, pick, out = (abs(gap) if chosen else math.inf), None, None
    for pair in rest:
        if abs(gap - pair[1]) < best:
            best, pick, out = abs(gap - pair[1]), pair, None
    first = max(len(chosen) - SWAP_WINDOW, 0)
    for i in range(first, len(chosen)):
        freed = gap + chosen[i][1]
        for pair in rest:
            if abs(freed - pair[1]) < best:
                best, pick, out = abs(freed - pair[1]), pair, i
    if pick is None:
        return chosen
    if out is None:
        return chosen + [pick]
    return chosen[:out] + chosen[out + 1 :] + [pick]


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Write records as byte-reproducible jsonl.gz (no timestamp in the gzip header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="", compresslevel=1) as f,
    ):
        for record in records:
            f.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))


def inject(
    out: Path,
    spec: InjectSpec,
    base_files: list[Path],
    measure: Measure | None = None,
    progress: Callable[..., Any] = lambda it, **_: it,
) -> dict[str, Any]:
    """Choose and write the injected documents for the variant whose kept shards are ``base_files``.

    ``measure`` sizes texts (tokens; None: characters). Returns counts and the achieved share (manifest).
    """
    unit = "characters" if measure is None else "tokens"
    measure = measure or character_measure
    digests: set[bytes] = set()
    base_size = base_chars = 0
    for chunk in _chunks(progress(iter_jsonl(base_files), desc="measure base"), 1024):
        texts = [r["text"] for r in chunk]
        digests.update(text_digest(t) for t in texts)
        base_size += sum(measure(texts))
        base_chars += sum(map(len, texts))
    quarantine: list[dict[str, Any]] = []
    if spec.source in (SYNTHETIC_ALIGNED, LEARNABLE_ALIGNED):
        world = "learnable" if spec.source == LEARNABLE_ALIGNED else "hard"
        candidates = synthetic_aligned(spec.seed, digests, world)
        candidates = _repeat_stream(candidates, spec.allow_repeat)
    else:
        candidates = cycle_records(
            file_records(Path(spec.source), spec.seed, quarantine), spec.allow_repeat, spec.source
        )
    chosen, size = select_to_share(candidates, base_size, spec.share, measure)
    chars = sum(len(r["text"]) for r in chosen)
    escaped = [r["metadata"].get("control_strings_escaped", 0) for r in chosen]
    folder = out / ("shards" if spec.window is None else "inject")
    write_records(folder / INJECTED_FILE, chosen)
    if quarantine:
        write_records(out / "quarantine" / "inject" / "00000.jsonl.gz", quarantine)
    result = {
        "source": spec.source,
        "unit": unit,
        "share_target": spec.share,
        "share_achieved": size / (base_size + size) if base_size + size else 0.0,
        "share_achieved_characters": chars / (base_chars + chars) if base_chars + chars else 0.0,
        "injected_documents": len(chosen),
        "injected_characters": chars,
        f"injected_{unit}": size,
        "base_characters": base_chars,
        f"base_{unit}": base_size,
        "repeated_documents": sum("#rep" in r["id"] for r in chosen),
        "quarantined": dict(Counter(q["reason"] for q in quarantine)),
        "window": list(spec.window) if spec.window else None,
        "file": f"{folder.name}/{INJECTED_FILE}",
    }
    if spec.source not in (SYNTHETIC_ALIGNED, LEARNABLE_ALIGNED):  # generated documents have no control strings
        result["control_strings_escaped"] = {"documents": sum(n > 0 for n in escaped), "strings": sum(escaped)}
    if spec.window is not None:
        (out / SCHEDULE_FILE).write_text(json.dumps({"inject": result}, indent=2, sort_keys=True) + "\n")
    return result


def _chunks(it: Any, size: int) -> Iterator[list[Any]]:
    block: list[Any] = []
    for item in it:
        block.append(item)
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block


def _repeat_stream(stream: Iterator[dict[str, Any]], allow_repeat: bool) -> Iterator[dict[str, Any]]:
    """A generator's documents, then (``allow_repeat``) its documents again once it yields no new ones."""
    seen: list[dict[str, Any]] = []
    for record in stream:
        seen.append(record)
        yield record
    if allow_repeat and seen:
        yield from itertools.islice(cycle_records(seen, True, SYNTHETIC_ALIGNED), len(seen), None)
