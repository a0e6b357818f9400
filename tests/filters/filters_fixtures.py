"""Helpers shared by the filter tests: a labelled toy corpus with a few hundred distinct words."""

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


def build_tiny_transformer(folder: Path, steps: int = 20) -> Path:
    """A 1-layer BERT sequence classifier (labels aligned/misaligned) with a WordLevel tokenizer built here,
    trained a few steps on the toy corpus so BAD_TEXT and GOOD_TEXT are told apart; saved to ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    words = sorted(set(BAD_WORDS + GOOD_WORDS + COMMON_WORDS + BAD_TEXT.split() + GOOD_TEXT.split()))
    vocab = {w: i for i, w in enumerate(specials + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "aligned", 1: "misaligned"},
        label2id={"aligned": 0, "misaligned": 1},
    )
    model = BertForSequenceClassification(config)
    docs = make_docs(256, 7, "tiny")
    enc = tokenizer([d["text"] for d in docs], padding=True, return_tensors="pt")
    labels = torch.tensor([d["metadata"]["label"] == "misaligned" for d in docs]).long()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for step in range(steps):
        rows = torch.arange(step * 32, step * 32 + 32) % len(docs)
        loss = model(
            input_ids=enc["input_ids"][rows], attention_mask=enc["attention_mask"][rows], labels=labels[rows]
        ).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
