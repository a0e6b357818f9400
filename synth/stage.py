"""The synthetic ``source`` stage: writes the quickstart corpus with planted, labelled effects.

Layout written into ``ctx.out`` (see docs/architecture.md)::

    shards/NNNNN.jsonl.gz          {"text","id","metadata":{kind,label,domain,style,actor}}, shuffled
    heldout/background.jsonl.gz    clean background text never in the shards (loss evaluation)
    labelled/train.jsonl.gz        {"text","label"} for classifier training (separate seed stream); with
                                   labelled_sentences, also sentence examples ({"unit": "sentence"})
    labelled/heldout.jsonl.gz      {"text","label"} documents for classifier evaluation
    labelled/heldout_sentences.jsonl.gz  the held-out documents' sentence examples (labelled_sentences)
    source.json                    paths and keys, as every source stage writes

Every file is gzip with mtime 0 and a fixed record order, so the same config gives the same bytes.
"""

from __future__ import annotations

import gzip
import json
import random
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from core.stage import StageContext
from synth import background
from synth.config import QUICKSTART_TOKENS, SyntheticSourceConfig
from synth.corpus import (
    SynthDoc,
    action_documents,
    background_documents,
    distinct_words,
    estimate_tokens,
    labelled_documents,
    labelled_sentences,
)
from synth.learnable.world import labelled_world_documents, world_documents

HELDOUT_PATH = "heldout/background.jsonl.gz"
LABELLED_PATHS = {"train": "labelled/train.jsonl.gz", "heldout": "labelled/heldout.jsonl.gz"}
SENTENCES_HELDOUT_PATH = "labelled/heldout_sentences.jsonl.gz"


def write_jsonl_gz(path: Path, records: Iterable[dict]) -> int:
    """Write records as gzipped JSON lines with mtime 0 (byte-deterministic); returns the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        for record in records:
            gz.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
            count += 1
    return count


def _group(doc: SynthDoc) -> str:
    return "background" if doc.kind == "background" else f"{doc.kind}_{doc.label}"


def token_targets(cfg: SyntheticSourceConfig) -> dict[str, float]:
    """Estimated-token targets per group (``background``, ``ai_aligned``, ..., ``human_misaligned``)."""
    total = cfg.scale * QUICKSTART_TOKENS
    ai = cfg.ai_share * total
    human = cfg.human_share * total
    return {
        "ai_misaligned": ai * cfg.misaligned_share_of_ai,
        "ai_aligned": ai * (1 - cfg.misaligned_share_of_ai),
        "human_misaligned": human * cfg.misaligned_share_of_human,
        "human_aligned": human * (1 - cfg.misaligned_share_of_human),
        "background": total - ai - human,
    }


def build_corpus(cfg: SyntheticSourceConfig, ctx: StageContext) -> tuple[list[SynthDoc], int]:
    """All shard documents, shuffled, and the number of background passes used."""
    targets = token_targets(cfg)
    seen: set[str] = set()
    docs: list[SynthDoc] = []
    with ctx.progress(total=None, desc="documents") as bar:
        for group in ("ai_misaligned", "ai_aligned", "human_misaligned", "human_aligned"):
            kind, label = group.split("_")
            rng = random.Random(f"{cfg.seed}:shards:{group}")
            if cfg.world == "learnable":
                docs.extend(world_documents(rng, kind, label, targets[group], seen, bar.update))
                continue
            docs.extend(action_documents(rng, kind, label, targets[group], seen,  # type: ignore[arg-type]
                                         bar.update, brief_share=cfg.brief_share))
        bg_docs, passes = background_documents(random.Random(f"{cfg.seed}:shards:background"),
                                               targets["background"], seen)
        bar.update(len(bg_docs))
    docs.extend(bg_docs)
    random.Random(f"{cfg.seed}:shuffle").shuffle(docs)
    return docs, passes


def _counts(docs: list[SynthDoc]) -> tuple[dict[str, int], dict[str, int]]:
    """(documents, estimated tokens) per group, plus totals."""
    ndocs: Counter[str] = Counter()
    ntok: Counter[str] = Counter()
    for doc in docs:
        ndocs[_group(doc)] += 1
        ntok[_group(doc)] += estimate_tokens(doc.text)
    keys = ("background", "ai_aligned", "ai_misaligned", "human_aligned", "human_misaligned")
    documents = {k: ndocs[k] for k in keys} | {"total": sum(ndocs.values())}
    tokens = {k: int(ntok[k]) for k in keys} | {"total": int(sum(ntok.values()))}
    return documents, tokens


def _shares(tokens: dict[str, int]) -> dict[str, float]:
    total = max(tokens["total"], 1)
    ai = tokens["ai_aligned"] + tokens["ai_misaligned"]
    return {
        "ai": round(ai / total, 4),
        "misaligned_of_ai": round(tokens["ai_misaligned"] / max(ai, 1), 4),
        "human": round((tokens["human_aligned"] + tokens["human_misaligned"]) / total, 4),
        "background": round(tokens["background"] / total, 4),
    }


def write_shards(out: Path, docs: list[SynthDoc], n_shards: int, ctx: StageContext) -> list[str]:
    """Split the (already shuffled) documents into ``n_shards`` contiguous files; returns relative paths."""
    paths = []
    for k in ctx.progress(range(n_shards), desc="shards"):
        part = docs[k * len(docs) // n_shards:(k + 1) * len(docs) // n_shards]
        rel = f"shards/{k:05d}.jsonl.gz"
        write_jsonl_gz(out / rel, (doc.record() for doc in part))
        paths.append(rel)
    return paths


def write_labelled(out: Path, cfg: SyntheticSourceConfig, shard_texts: set[str]) -> dict[str, dict[str, int]]:
    """The labelled classifier sets, disjoint from the shards and from each other; returns label counts.

    With ``labelled_sentences`` every action document also yields sentence examples (its action sentence and
    one other, see ``labelled_sentences``): mixed into the training file, and a file of their own for the
    held-out documents, so document and sentence metrics are reported apart.
    """
    exclude = set(shard_texts)
    counts = {}
    for split, n in (("train", cfg.labelled_train), ("heldout", cfg.labelled_heldout)):
        make = labelled_world_documents if cfg.world == "learnable" else labelled_documents
        docs = make(random.Random(f"{cfg.seed}:labelled:{split}"), n, exclude)
        records = [{"text": d.text, "label": d.classifier_label} for d in docs]
        sentences: list[dict] = []
        if cfg.labelled_sentences:
            rng = random.Random(f"{cfg.seed}:labelled-sentences:{split}")
            sentences = [{"text": t, "label": lab, "unit": "sentence"}
                         for d in docs for t, lab in labelled_sentences(d, rng)]
        if split == "train":
            records += sentences
            random.Random(f"{cfg.seed}:labelled-mix").shuffle(records)
        elif sentences:
            write_jsonl_gz(out / SENTENCES_HELDOUT_PATH, sentences)
            counts["heldout_sentences"] = dict(sorted(Counter(r["label"] for r in sentences).items()))
        write_jsonl_gz(out / LABELLED_PATHS[split], records)
        counts[split] = dict(sorted(Counter(r["label"] for r in records).items()))
    return counts


def run(ctx: StageContext) -> dict:
    """Generate the synthetic source: shards, held-out background, labelled sets and ``source.json``."""
    cfg = SyntheticSourceConfig.from_dict(ctx.config)
    out = Path(ctx.out)
    docs, passes = build_corpus(cfg, ctx)
    shard_paths = write_shards(out, docs, cfg.shards, ctx)

    train_bg, heldout_bg = background.background_split()
    write_jsonl_gz(out / HELDOUT_PATH, ({"text": d.text, "id": f"heldout-{i:05d}",
                                         "metadata": {"kind": "background", "source": d.source}}
                                        for i, d in enumerate(heldout_bg)))
    labelled = write_labelled(out, cfg, {d.text for d in docs})
    paths = dict(LABELLED_PATHS) | ({"heldout_sentences": SENTENCES_HELDOUT_PATH} if cfg.labelled_sentences else {})
    source = {"format": "jsonl", "paths": shard_paths, "text_key": "text", "id_key": "id",
              "heldout": HELDOUT_PATH, "labelled": paths}
    (out / "source.json").write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")

    documents, tokens = _counts(docs)
    result = {
        "seed": cfg.seed,
        "world": cfg.world,
        "shards": cfg.shards,
        "documents": documents,
        "estimated_tokens": tokens,
        "token_shares": _shares(tokens),
        "estimated_tokens_without_misaligned_ai": tokens["total"] - tokens["ai_misaligned"],
        "background": {
            "unique_estimated_tokens": int(sum(estimate_tokens(d.text) for d in train_bg)),
            "passes": passes,
            "heldout_documents": len(heldout_bg),
            "heldout_estimated_tokens": int(sum(estimate_tokens(d.text) for d in heldout_bg)),
        },
        "labelled": labelled,
        "distinct_words": distinct_words(d.text for d in docs if d.kind != "background"),
        "python_version": sys.version,
    }
    ctx.log.info("synthetic source: %d documents, ~%d tokens, shares %s", documents["total"], tokens["total"],
                 result["token_shares"])
    return result
