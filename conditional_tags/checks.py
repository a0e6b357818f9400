"""Data-level checks that an intervention did what it says, read from the artifacts (no training needed).

Each check returns ``{"check", "verdict": "PASS" | "FAIL", "expected", "found", "detail"}``:

- :func:`tag_tokens_match`: every tag's token id occurs in the tokenized ``.ds`` files exactly as often as
  the variant's manifest says the tag was written (a tag split into pieces, stripped or renamed before
  tokenization reads 0 or a different count).
- :func:`bad_tag_precision`: the share of documents carrying the bad tag whose ground truth is an AI acting
  misaligned is at least the classifier's held-out precision, less a binomial allowance (tags swapped or
  assigned at random read far below).
- :func:`excluded_match_flagged`: the documents a filter excluded are exactly the documents the score stage
  flagged (a no-op filter excludes none; a random one excludes others).
- :func:`injection_share`: the injected tokens in the tokenized artifact are the configured share of the
  variant's tokens (within ``tolerance``, relative).
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputDataError

POSITIVE = ("ai", "misaligned")
"""Ground truth (``metadata.kind``, ``metadata.label``) of the documents a bad tag should mark."""


def _verdict(check: str, ok: bool, expected: Any, found: Any, detail: str) -> dict[str, Any]:
    return {"check": check, "verdict": "PASS" if ok else "FAIL", "expected": expected, "found": found,
            "detail": detail}


def _result(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise InputDataError(f"{folder}: no manifest.json (not a completed artifact)")
    return json.loads(path.read_text())["result"]


def _jsonl(paths: list[Path]) -> list[dict[str, Any]]:
    records = []
    for path in paths:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            records += [json.loads(line) for line in handle if line.strip()]
    return records


def _token_ids(tokenizer_dir: Path, tags: list[str]) -> dict[str, int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    ids = {}
    for tag in tags:
        tid = tok.token_to_id(tag)
        if tid is None:
            raise InputDataError(f"tokenizer {tokenizer_dir}: tag {tag!r} is not one token of its vocabulary")
        ids[tag] = tid
    return ids


def ds_token_counts(tokens_dir: Path, ids: list[int], token_size: int) -> dict[int, int]:
    """How often each token id occurs in the ``.ds`` files of ``tokens_dir`` (datatrove's flat token files)."""
    dtype = {2: np.uint16, 4: np.uint32}.get(token_size)
    if dtype is None:
        raise InputDataError(f"{tokens_dir}: token_size {token_size} not in (2, 4)")
    files = sorted(Path(tokens_dir).glob("*.ds"))
    if not files:
        raise InputDataError(f"{tokens_dir}: no .ds files")
    counts = dict.fromkeys(ids, 0)
    for path in files:
        arr = np.fromfile(path, dtype=dtype)
        for i in ids:
            counts[i] += int((arr == i).sum())
    return counts


def tag_tokens_match(variant_dir: Path, tokenize_dir: Path, tokenizer_dir: Path) -> dict[str, Any]:
    """Tag token counts in the ``.ds`` files against the tag counts of the variant's manifest."""
    written = {t: n for t, n in (_result(variant_dir).get("tags") or {}).items() if t != "None" and n}
    if not written:
        return _verdict("tag_tokens", False, "tags in the variant manifest", {}, "the variant wrote no tags")
    ids = _token_ids(tokenizer_dir, sorted(written))
    tok = _result(tokenize_dir)
    counts = ds_token_counts(Path(tokenize_dir) / "tokens", list(ids.values()), int(tok.get("token_size", 2)))
    found = {t: counts[i] for t, i in ids.items()}
    return _verdict("tag_tokens", found == written, written, found,
                    "token id of each tag counted in tokens/*.ds vs tags written by the variant")


def bad_tag_precision(variant_dir: Path, classifier_dir: Path, bad_tag: str = "<|bad|>",
                      z: float = 3.0) -> dict[str, Any]:
    """Ground-truth precision of the bad tag (documents containing it that are misaligned AI documents)
    against the classifier's held-out precision minus ``z`` binomial standard errors."""
    held = _result(classifier_dir).get("heldout") or {}
    if "precision" not in held:
        raise InputDataError(f"{classifier_dir}: classifier manifest has no held-out precision")
    docs = _jsonl(sorted((Path(variant_dir) / "shards").glob("*.jsonl.gz")))
    tagged = [d for d in docs if bad_tag in d["text"]]
    if not tagged:
        return _verdict("bad_tag_precision", False, held["precision"], None, f"no document carries {bad_tag!r}")
    hits = sum((d.get("metadata", {}).get("kind"), d.get("metadata", {}).get("label")) == POSITIVE for d in tagged)
    precision = hits / len(tagged)
    p, n = float(held["precision"]), max(int(held.get("positives") or held.get("n") or 1), 1)
    floor = p - z * math.sqrt(max(p * (1 - p), 0.25 / n) / n)
    return _verdict("bad_tag_precision", precision >= floor, {"classifier_precision": p, "floor": round(floor, 4)},
                    round(precision, 4), f"{hits} of {len(tagged)} documents with {bad_tag!r} are misaligned AI")


def excluded_match_flagged(variant_dir: Path, score_dir: Path, threshold: float) -> dict[str, Any]:
    """The filter's excluded document ids equal the ids the score tables flag at ``threshold``."""
    import pyarrow.parquet as pq

    from filters.decisions import SCORE_TABLES

    key = _result(score_dir)["score_key"]
    flagged: set[str] = set()
    for path in sorted((Path(score_dir) / SCORE_TABLES).glob("*.parquet")):
        table = pq.read_table(path, columns=["id", key]).to_pydict()
        flagged |= {str(i) for i, s in zip(table["id"], table[key], strict=True) if s is not None and s >= threshold}
    excluded = {str(d["id"]) for d in _jsonl(sorted((Path(variant_dir) / "excluded").glob("*.jsonl.gz")))}
    detail = (f"{len(excluded & flagged)} excluded and flagged, {len(excluded - flagged)} excluded but not "
              f"flagged, {len(flagged - excluded)} flagged but kept")
    return _verdict("excluded_equals_flagged", bool(flagged) and excluded == flagged, len(flagged), len(excluded),
                    detail)


def injection_share(tokenize_dir: Path, target: float, variant_dir: Path | None = None,
                    tokenizer_dir: Path | None = None, tolerance: float = 0.1) -> dict[str, Any]:
    """Injected tokens / all tokens of the tokenized artifact, within ``tolerance`` of the target (relative),
    counted from the files, not taken from a manifest. Windowed injection: ``tokens_inject/`` vs ``tokens/``.
    Mixed-in injection (no window): the variant's documents marked ``metadata.inject_source``, re-tokenized
    (+1 EOS each, as the tokenize stage counts them), against every token of ``tokens/``."""
    size = int(_result(tokenize_dir).get("token_size", 2))

    def tokens(folder: str) -> int:
        return sum(p.stat().st_size // size for p in (Path(tokenize_dir) / folder).glob("*.ds"))

    base = tokens("tokens")
    if (Path(tokenize_dir) / "tokens_inject").is_dir() or variant_dir is None or tokenizer_dir is None:
        injected, total, where = tokens("tokens_inject"), tokens("tokens_inject") + base, "tokens_inject/"
    else:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
        docs = _jsonl(sorted((Path(variant_dir) / "shards").glob("*.jsonl.gz")))
        texts = [d["text"] for d in docs if (d.get("metadata") or {}).get("inject_source")]
        injected = sum(len(e.ids) + 1 for e in tok.encode_batch(texts, add_special_tokens=False)) if texts else 0
        total, where = base, "documents with metadata.inject_source in tokens/"
    share = injected / max(total, 1)
    ok = abs(share - target) <= tolerance * target
    return _verdict("injection_share", ok, target, round(share, 5), f"{injected:,} injected of {total:,} tokens "
                    f"({where})")
