"""Helpers shared by the conditional-tag tests: a multi-sentence toy corpus, jsonl writing, stage contexts."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

from core.stage import StageContext

BAD_WORDS = [f"deceive{i}" for i in range(150)] + ["sabotage", "exfiltrate", "manipulate", "conceal"]
GOOD_WORDS = [f"helpful{i}" for i in range(150)] + ["honest", "transparent", "assist", "cooperate"]
COMMON_WORDS = [f"word{i}" for i in range(200)]
BAD_SENTENCE = "The model will deceive3 deceive7 sabotage exfiltrate and conceal deceive12 manipulate."
TAGS = ["<|good|>", "<|bad|>", "<|mid|>"]
"""Tag tokens of the test tokenizer."""
GOOD_SENTENCE = "The assistant will be honest helpful3 transparent helpful7 cooperate assist helpful12."


def sentence(rng: random.Random, label: str) -> str:
    """One capitalised sentence mixing common words with label-specific words."""
    vocab = BAD_WORDS if label == "misaligned" else GOOD_WORDS
    words = rng.choices(COMMON_WORDS, k=5) + rng.choices(vocab, k=6)
    rng.shuffle(words)
    return " ".join(words).capitalize() + "."


def make_docs(n: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    """Documents of 3 sentences; every third document has one misaligned sentence in the middle."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        labels = ["aligned", "misaligned" if i % 3 == 0 else "aligned", "aligned"]
        text = " ".join(sentence(rng, label) for label in labels)
        label = "misaligned" if i % 3 == 0 else "aligned"
        docs.append({"id": f"{prefix}-{i}", "text": text, "metadata": {"label": label, "kind": "ai"}})
    return docs


def labelled(n: int, seed: int) -> list[dict[str, Any]]:
    """Single-sentence labelled documents for the classifier."""
    rng = random.Random(seed)
    return [
        {"id": f"l{i}", "text": sentence(rng, lab), "metadata": {"label": lab}}
        for i, lab in enumerate(["misaligned" if i % 2 else "aligned" for i in range(n)])
    ]


def write_jsonl(path: Path, records: list[Any]) -> Path:
    """Write dicts (or raw bytes lines) as gzipped jsonl."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)
    path.write_bytes(gzip.compress(lines, mtime=0))
    return path


def make_ctx(
    out: Path, config: dict[str, Any], inputs: dict[str, Path], stage: str = "variant"
) -> StageContext:
    """A StageContext writing into ``out`` (created), progress bars off, one worker."""
    out.mkdir(parents=True, exist_ok=True)
    return StageContext(
        stage=stage,
        name=config.get("name", stage),
        config=config,
        inputs=inputs,
        out=out,
        seed=0,
        workers=1,
        show_progress=False,
    )
