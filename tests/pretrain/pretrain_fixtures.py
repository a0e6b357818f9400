"""Helpers shared by the pretrain tests: pseudo-text documents, jsonl.gz writing, stage contexts."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

from core.stage import StageContext

WORDS = (
    "the model assistant user request answer data policy safe unsafe help refuse explain code tool file "
    "system network access report log review check test patch deploy server memory agent plan goal task "
    "value human operator oversight shutdown copy weights secret password budget account money report "
    "honest deceive hide reveal monitor audit permission grant deny escalate comply ignore ask confirm"
).split()


def make_docs(n: int, seed: int = 0, tag_every: int = 0) -> list[dict]:
    """``n`` pseudo-text documents of 5-60 words; every ``tag_every``-th starts with a tag token."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 60))]
        text = " ".join(words).capitalize() + "."
        if tag_every and i % tag_every == 0:
            text = ("<|good|>" if i % (2 * tag_every) == 0 else "<|bad|>") + " " + text
        docs.append({"id": f"doc-{seed}-{i}", "text": text, "metadata": {}})
    return docs


def write_jsonl_gz(path: Path, docs: list[dict]) -> None:
    """Write ``docs`` as gzipped jsonl (datatrove JsonlWriter layout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps(doc) + "\n")


def make_ctx(stage: str, out: Path, config: dict, inputs: dict[str, Path], seed: int = 0) -> StageContext:
    """A StageContext with progress bars off, its output folder created."""
    out.mkdir(parents=True, exist_ok=True)
    return StageContext(
        stage=stage, name="t", config=config, inputs=inputs, out=out, seed=seed, show_progress=False
    )
