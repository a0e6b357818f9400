"""The ``tokenizer`` stage: train a byte-level BPE on the source documents, or adopt a pretrained tokenizer.

Either way the stage writes a Hugging Face tokenizer folder (``tokenizer.json``, ``tokenizer_config.json``,
``special_tokens_map.json``) that ``transformers.AutoTokenizer.from_pretrained`` loads as a
``PreTrainedTokenizerFast`` and that datatrove's ``DocumentTokenizer`` reads through ``tokenizer.json``.
EOS (``<|endoftext|>``), pad (``<|pad|>``) and every tag token are single special tokens.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.documents import DocumentReader, load_source
from core.errors import ConfigError, InputDataError
from core.names import BAD_TAG, GOOD_TAG, escape_control_strings
from core.stage import StageContext

from ._config import check_keys, require_choice, require_int
from .settings import TOKENIZER_DEFAULTS

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
DEFAULTS: dict[str, Any] = {**TOKENIZER_DEFAULTS, "min_frequency": 2, "tags": [GOOD_TAG, BAD_TAG]}
"""A stage config's missing keys: ``pretrain.settings.TokenizerSettings``' defaults, the BPE's minimum pair
frequency and the control tags kept whole as special tokens."""


def iter_source_texts(source_dir: Path, reader: DocumentReader | None = None) -> Iterator[tuple[str, str]]:
    """Yield ``(id, text)`` for every usable document of ``source_dir/source.json`` (any source format).

    Documents are read by ``core.documents`` with the quarantine policy of the score stage, their control
    strings escaped as the score stage escapes them (``core.names.escape_control_strings``): pass ``reader``
    (from ``load_source(source_dir).reader()``) to read its counts afterwards."""
    reader = reader if reader is not None else load_source(source_dir).reader(keep_quarantined=0)
    for doc_id, text, _ in reader:
        yield doc_id, escape_control_strings(text)[0]


def select_documents(docs: Iterator[tuple[str, str]], max_docs: int, seed: int) -> list[str]:
    """Keep the ``max_docs`` documents with the smallest ``sha256(seed:key)``, in that hash order.

    A stable hash (never Python's ``hash()``), so the sample is the same in every process and on every run.
    """
    heap: list[tuple[bytes, str]] = []  # max-heap on the hash via negated bytes
    for key, text in docs:
        digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
        neg = bytes(255 - b for b in digest)
        if len(heap) < max_docs:
            heapq.heappush(heap, (neg, text))
        elif neg > heap[0][0]:
            heapq.heapreplace(heap, (neg, text))
    return [text for _, text in sorted(heap, reverse=True)]


def train_bpe(texts: list[str], vocab_size: int, specials: list[str], min_frequency: int = 2) -> Any:
    """Train a byte-level BPE (GPT-2 style pre-tokenization) whose first ids are ``specials`` in order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def write_hf_folder(tok: Any, out: Path, eos: str, pad: str, tags: list[str]) -> None:
    """Write ``tok`` (a ``tokenizers.Tokenizer``) as an HF folder that transformers 4.x and 5.x both load."""
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    specials = {"bos_token": eos, "eos_token": eos, "unk_token": eos, "pad_token": pad}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **specials,
        "additional_special_tokens": list(tags),
        "model_max_length": 1_000_000_000,
        "clean_up_tokenization_spaces": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    special_map = {**specials, "additional_special_tokens": list(tags)}
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2, sort_keys=True) + "\n")


def _check_tags(tags: Any) -> list[str]:
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise ConfigError(f"tokenizer: tags must be a list of non-empty strings, got {tags!r}")
    clash = {EOS_TOKEN, PAD_TOKEN} & set(tags)
    if clash or len(set(tags)) != len(tags):
        raise ConfigError(
            f"tokenizer: tags must be distinct and differ from {EOS_TOKEN}/{PAD_TOKEN}, got {tags!r}"
        )
    return list(tags)


def _load_pretrained(path: Any) -> Any:
    """Load a pretrained tokenizer from a local folder, or from the hub cache/hub without ever hanging."""
    if not isinstance(path, str) or not path:
        raise ConfigError(
            f"tokenizer: kind 'pretrained' needs 'path' (a local folder or hub id), got {path!r}"
        )
    from transformers import AutoTokenizer

    if Path(path).is_dir():
        return AutoTokenizer.from_pretrained(path)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if Path(path).exists() or path.startswith((".", "/", "~")):
        raise ConfigError(f"tokenizer: path {path!r} is not a tokenizer folder")
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=offline)
    except (OSError, ValueError) as err:
        mode = "HF_HUB_OFFLINE is set and it is not in the local HF cache" if offline else str(err)
        raise ConfigError(f"tokenizer: cannot load pretrained tokenizer {path!r}: {mode}") from err


def _adopt_pretrained(path: Any, out: Path, tags: list[str]) -> None:
    """Save a pretrained tokenizer into ``out``, adding the tags (and pad when missing) as special tokens."""
    hf = _load_pretrained(path)
    extra: dict[str, Any] = {"additional_special_tokens": tags}
    if hf.pad_token is None:
        extra["pad_token"] = PAD_TOKEN
    if hf.eos_token is None:
        extra["eos_token"] = EOS_TOKEN
    hf.add_special_tokens(extra, replace_extra_special_tokens=False)
    hf.save_pretrained(str(out))
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["additional_special_tokens"] = tags
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    special_map = {
        k: getattr(hf, k) for k in ("bos_token", "eos_token", "unk_token", "pad_token") if getattr(hf, k)
    }
    special_map["additional_special_tokens"] = tags
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2, sort_keys=True) + "\n")


def special_token_ids(folder: Path) -> dict[str, int]:
    """Ids of eos, pad and each tag token in the saved tokenizer folder (read from ``tokenizer.json``)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    special = json.loads((folder / "special_tokens_map.json").read_text())
    names = {"eos": special["eos_token"], "pad": special["pad_token"]}
    names.update({t: t for t in special.get("additional_special_tokens", [])})
    ids = {name: tok.token_to_id(token) for name, token in names.items()}
    missing = [name for name, i in ids.items() if i is None]
    if missing:
        raise InputDataError(f"tokenizer: special tokens {missing} are not in {folder / 'tokenizer.json'}")
    return ids


def _train(ctx: StageContext, vocab_size: int, max_docs: int, min_freq: int, tags: list[str]) -> dict[str, Any]:
    """Train the BPE on a seeded sample of the source's usable documents; the counts of what was read."""
    reader = load_source(ctx.inputs["source"]).reader(keep_quarantined=0)
    docs = ctx.progress(iter_source_texts(ctx.inputs["source"], reader), desc="reading")
    texts = select_documents(docs, max_docs, ctx.seed)
    quarantined = reader.quarantine_counts
    if not texts:
        raise InputDataError(
            f"tokenizer: source {ctx.inputs['source']} has no usable documents "
            f"({reader.counts['records_in']} records read, quarantined {quarantined})"
        )
    ctx.log.info("tokenizer: training BPE (vocab %d) on %d documents", vocab_size, len(texts))
    tok = train_bpe(texts, vocab_size, [EOS_TOKEN, PAD_TOKEN, *tags], min_freq)
    write_hf_folder(tok, ctx.out, EOS_TOKEN, PAD_TOKEN, tags)
    return {
        "documents_in": reader.counts["records_in"],
        "documents_usable": reader.counts["documents"],
        "documents": len(texts),
        "quarantined": quarantined,
    }


def run(ctx: StageContext) -> dict[str, Any]:
    """Stage entry: train (``kind: bpe``) or adopt (``kind: pretrained``) the tokenizer into ``ctx.out``."""
    cfg = check_keys(ctx.config, DEFAULTS, "tokenizer")
    kind = require_choice(cfg["kind"], "kind", "tokenizer", ("bpe", "pretrained"))
    tags = _check_tags(cfg["tags"])
    result: dict[str, Any] = {"kind": kind}
    if kind == "pretrained":
        _adopt_pretrained(cfg["path"], ctx.out, tags)
    else:
        vocab_size = require_int(cfg["vocab_size"], "vocab_size", "tokenizer", minimum=256 + 2 + len(tags))
        max_docs = require_int(cfg["max_docs"], "max_docs", "tokenizer", minimum=1)
        min_freq = require_int(cfg["min_frequency"], "min_frequency", "tokenizer", minimum=1)
        if "source" not in ctx.inputs:
            raise ConfigError("tokenizer: kind 'bpe' needs a 'source' input")
        result.update(_train(ctx, vocab_size, max_docs, min_freq, tags))
    from tokenizers import Tokenizer

    result["vocab_size"] = Tokenizer.from_file(str(ctx.out / "tokenizer.json")).get_vocab_size(
        with_added_tokens=True
    )
    result["special_token_ids"] = special_token_ids(ctx.out)
    return result
