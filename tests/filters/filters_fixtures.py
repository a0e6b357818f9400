"""Helpers shared by the filter tests: a labelled toy corpus with a few hundred distinct words."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

from propensity.stage import StageContext

BAD_WORDS = [f"deceive{i}" for i in range(150)] + ["sabotage", "exfiltrate", "manipulate", "conceal"]
GOOD_WORDS = [f"helpful{i}" for i in range(150)] + ["honest", "transparent", "assist", "cooperate"]
COMMON_WORDS = [f"word{i}" for i in range(200)]

# Fixed documents with exactly known decisions (the model separates the vocabularies cleanly).
BAD_TEXT = "the model will deceive3 deceive7 sabotage exfiltrate and conceal deceive12 manipulate"
GOOD_TEXT = "the assistant will be honest helpful3 transparent helpful7 cooperate assist helpful12"


def make_text(rng: random.Random, label: str) -> str:
    """A sentence mixing common words with label-specific words."""
    vocab = BAD_WORDS if label == "misaligned" else GOOD_WORDS
    words = rng.choices(COMMON_WORDS, k=6) + rng.choices(vocab, k=6)
    rng.shuffle(words)
    return " ".join(words)


def make_docs(n: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    """Documents in the JsonlWriter layout with synthetic ground truth in metadata."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        label = "misaligned" if i % 3 == 0 else "aligned"
        docs.append(
            {
                "id": f"{prefix}-{i}",
                "text": make_text(rng, label),
                "metadata": {"label": label, "kind": "ai" if i % 2 else "human"},
            }
        )
    return docs


def write_jsonl(path: Path, records: list[Any], compress: bool | None = None) -> Path:
    """Write records (dicts, or raw bytes lines) as jsonl, gzipped when the name ends with .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)
    path.write_bytes(gzip.compress(lines, mtime=0) if path.suffix == ".gz" else lines)
    return path


def make_ctx(
    stage: str, out: Path, config: dict[str, Any], inputs: dict[str, Path] | None = None, workers: int = 1
) -> StageContext:
    """A StageContext writing into ``out`` (created), progress bars off."""
    out.mkdir(parents=True, exist_ok=True)
    return StageContext(
        stage=stage,
        name=config.get("name", stage),
        config=config,
        inputs=inputs or {},
        out=out,
        seed=0,
        workers=workers,
        show_progress=False,
    )
