"""The ``tokenize`` stage: a variant's jsonl shards -> one shuffled datatrove ``.ds`` file under ``tokens/``.

Pipeline (datatrove, ``LocalPipelineExecutor``): ``JsonlReader`` -> ``DocumentCheck`` (quarantines unusable
documents with a reason) -> ``MaskingDocumentTokenizer`` (one task per shard, so the bytes do not depend on
``ctx.workers``), then ``DocumentTokenizerMerger`` (one task) into ``tokens/000_tokens.ds`` (+ ``.index``,
``.metadata``, and ``.loss`` when documents carry ``metadata["no_loss_ranges"]``). Every shuffle is seeded by
``ctx.seed``. A variant with windowed injection (``inject/`` + ``schedule.json``) gets its injected documents
tokenized apart into ``tokens_inject/`` (and ``schedule.json`` copied), for the trainer to mix in.
datatrove records the absolute tokenizer path in ``.ds.metadata``; the stage rewrites it to ``<tokenizer
folder name>/tokenizer.json`` so the artifact does not depend on where the store lives.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.tokens.tokenizer import DocumentTokenizer

from core.errors import ConfigError, InputDataError
from core.stage import PartComplete, StageContext

from ._config import check_keys

DEFAULTS: dict[str, Any] = {"save_loss_metadata": "auto", "shuffle": True}
SAVE_NAME = "tokens"
INJECT_DIR = "tokens_inject"
SCHEDULE_FILE = "schedule.json"
BATCH_DOCS = 1000
"""Documents tokenized per ``encode_batch`` call. datatrove's default (10,000) holds 10,000 documents' text
and ``Encoding`` objects (ids, offsets, tokens: ~100 bytes per token) at once, so a rank's peak memory grew
with its shard up to that many documents; 1,000 bounds it. The tokens do not depend on it."""


EMPTY_FLAG = "_propensity_empty_text"


def keep_empty_adapter(reader: Any, data: dict, path: str, id_in_file: int | str) -> dict:
    """JsonlReader adapter that flags empty documents instead of letting the reader skip them uncounted."""
    parsed = reader._default_adapter(data, path, id_in_file)
    if not isinstance(parsed["text"], str) or not parsed["text"]:
        parsed["text"] = " "
        parsed["metadata"][EMPTY_FLAG] = True
    return parsed


class DocumentCheck(BaseFilter):
    """Drops documents the tokenizer cannot use: ``empty_text`` and malformed ``bad_no_loss_ranges``."""

    name = "🔎 Document check"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        """Keep the document unless its text is empty or its ``no_loss_ranges`` are not [start, end] pairs."""
        if doc.metadata.pop(EMPTY_FLAG, False):
            doc.text = ""
            return False, "empty_text"
        ranges = doc.metadata.get("no_loss_ranges")
        if ranges is not None:
            ok = isinstance(ranges, list) and all(
                isinstance(r, (list, tuple))
                and len(r) == 2
                and all(isinstance(x, int) for x in r)
                and 0 <= r[0] <= r[1] <= len(doc.text)
                for r in ranges
            )
            if not ok:
                return False, "bad_no_loss_ranges"
        return True


class MaskingDocumentTokenizer(DocumentTokenizer):
    """``DocumentTokenizer`` whose loss mask always has one value per token.

    datatrove's own mask crops the document (and its EOS) when a no-loss range reaches the end of the text;
    here a token is masked when its character span overlaps a ``no_loss_ranges`` range, and the EOS appended
    by the post-processor (span ``(0, 0)``) always keeps its loss.
    """

    def get_loss_values(self, document: Document, encoded: Any) -> np.ndarray | None:
        """A boolean keep-loss value per token of ``encoded`` (None when loss metadata is off)."""
        if not self.save_loss_metadata:
            return None
        keep = np.ones(len(encoded.ids), dtype=bool)
        ranges = document.metadata.get("no_loss_ranges") or []
        if ranges:
            offsets = np.asarray(encoded.offsets, dtype=np.int64).reshape(-1, 2)
            for start, end in ranges:
                keep &= ~((offsets[:, 0] < end) & (offsets[:, 1] > start))
        return keep


def _variant_shards(variant: Path, folder: str = "shards") -> list[Path]:
    shards = sorted((variant / folder).glob("*.jsonl.gz"))
    if not shards:
        raise InputDataError(f"tokenize: input 'variant' has no {folder}/*.jsonl.gz: {variant}")
    return shards


def _has_loss_ranges(shards: list[Path]) -> bool:
    """Whether any document in ``shards`` mentions ``no_loss_ranges`` (a cheap text scan)."""
    for shard in shards:
        with gzip.open(shard, "rt", encoding="utf-8") as f:
            if any('"no_loss_ranges"' in line for line in f):
                return True
    return False


def _tokenizer_spec(folder: Path) -> tuple[Path, str]:
    """The ``tokenizer.json`` path and the EOS token text of a tokenizer stage folder."""
    path = folder / "tokenizer.json"
    special = folder / "special_tokens_map.json"
    if not path.is_file() or not special.is_file():
        raise InputDataError(
            f"tokenize: input 'tokenizer' lacks tokenizer.json/special_tokens_map.json: {folder}"
        )
    eos = json.loads(special.read_text()).get("eos_token")
    if not isinstance(eos, str):
        raise InputDataError(f"tokenize: {special} has no eos_token")
    return path, eos


def _run_pipelines(
    ctx: StageContext,
    shards: list[Path],
    tokenizer: Path,
    eos: str,
    loss: bool,
    shuffle: bool,
    save_dir: str = SAVE_NAME,
) -> None:
    """Tokenize ``shards`` into ``ctx.out / save_dir`` (logs and quarantine under a ``save_dir`` subfolder
    except for the main ``tokens``)."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens.merger import DocumentTokenizerMerger
    from datatrove.pipeline.writers import JsonlWriter

    sub = "" if save_dir == SAVE_NAME else save_dir
    ranks_dir, logs = ctx.out / "work" / (sub or "ranks"), ctx.out / "logs" / sub
    pipeline = [
        JsonlReader(
            str(shards[0].parent), glob_pattern="*.jsonl.gz", add_file_path=False, adapter=keep_empty_adapter
        ),
        DocumentCheck(exclusion_writer=JsonlWriter(str(ctx.out / "quarantine" / sub))),
        MaskingDocumentTokenizer(
            output_folder=str(ranks_dir),
            tokenizer_name_or_path=str(tokenizer),
            eos_token=eos,
            save_loss_metadata=loss,
            seed=ctx.seed,
            shuffle_documents=shuffle,
            batch_size=BATCH_DOCS,
        ),
    ]
    ranks = ctx.ranks(len(shards))
    if len(ranks):
        LocalPipelineExecutor(
            pipeline, tasks=len(shards), workers=min(max(ctx.workers, 1), len(ranks)),
            logging_dir=str(logs / "tokenize"), local_tasks=len(ranks), local_rank_offset=ranks.start,
        ).run()
    if ctx.part is not None:  # one task of a job array: the finishing run merges
        return
    merger = DocumentTokenizerMerger(
        input_folder=str(ranks_dir),
        output_folder=str(ctx.out / save_dir),
        save_filename=SAVE_NAME,
        shuffle=shuffle,
        seed=ctx.seed,
        save_loss_metadata=loss,
        progress=ctx.show_progress,
    )
    LocalPipelineExecutor([merger], tasks=1, workers=1, logging_dir=str(logs / "merge")).run()


def _relativize_metadata(tokens_dir: Path, tokenizer: Path) -> None:
    """Replace the absolute tokenizer path datatrove writes in each ``.ds.metadata`` by a relative one."""
    stable = f"{tokenizer.parent.name}/{tokenizer.name}"
    for meta in sorted(tokens_dir.glob("*.ds.metadata")):
        lines = meta.read_text().splitlines()
        name, _, size = lines[0].rpartition("|")
        if name == str(tokenizer):
            meta.write_text("\n".join([f"{stable}|{size}", *lines[1:]]))


def _quarantine_counts(logs: Path) -> dict[str, int]:
    """Dropped documents per reason, summed over every rank's stats (``stats.json`` only covers the ranks
    the last run ran, not those a job array or an earlier attempt finished)."""
    steps = [s for f in sorted((logs / "tokenize" / "stats").glob("*.json")) for s in json.loads(f.read_text())]
    counts: dict[str, int] = {}
    for step in steps:
        for key, value in step.get("stats", {}).items():
            if key.startswith("dropped_"):
                reason = key.removeprefix("dropped_")
                counts[reason] = counts.get(reason, 0) + int(
                    value["total"] if isinstance(value, dict) else value
                )
    return dict(sorted(counts.items()))


def run(ctx: StageContext) -> dict[str, Any]:
    """Stage entry: tokenize the ``variant`` input with the ``tokenizer`` input into ``ctx.out/tokens``."""
    cfg = check_keys(ctx.config, DEFAULTS, "tokenize")
    if cfg["save_loss_metadata"] not in ("auto", True, False):
        raise ConfigError(
            f"tokenize: save_loss_metadata must be 'auto', true or false, got {cfg['save_loss_metadata']!r}"
        )
    if not isinstance(cfg["shuffle"], bool):
        raise ConfigError(f"tokenize: shuffle must be true or false, got {cfg['shuffle']!r}")
    variant = ctx.inputs["variant"]
    shards = _variant_shards(variant)
    tokenizer, eos = _tokenizer_spec(ctx.inputs["tokenizer"])

    def with_loss(files: list[Path]) -> bool:
        return _has_loss_ranges(files) if cfg["save_loss_metadata"] == "auto" else cfg["save_loss_metadata"]

    loss = with_loss(shards)
    _run_pipelines(ctx, shards, tokenizer, eos, loss, cfg["shuffle"])
    injected = (variant / SCHEDULE_FILE).is_file()  # windowed injection: the trainer mixes tokens_inject/ in
    if injected:
        inj = _variant_shards(variant, "inject")
        inj_loss = with_loss(inj)
        _run_pipelines(ctx, inj, tokenizer, eos, inj_loss, cfg["shuffle"], INJECT_DIR)
    if ctx.part is not None:  # one task of a job array: its ranks are done, the finishing run merges
        raise PartComplete
    result = _tokenized(ctx.out / SAVE_NAME, tokenizer, f"variant {variant}")
    result.update(loss_metadata=loss, quarantined=_quarantine_counts(ctx.out / "logs"))
    if injected:
        schedule = json.loads((variant / SCHEDULE_FILE).read_text())["inject"]
        shutil.copyfile(variant / SCHEDULE_FILE, ctx.out / SCHEDULE_FILE)
        result["inject"] = {
            **_tokenized(ctx.out / INJECT_DIR, tokenizer, f"the injected set of {variant}"),
            "loss_metadata": inj_loss,
            "quarantined": _quarantine_counts(ctx.out / "logs" / INJECT_DIR),
            "window": schedule["window"],
            "share": schedule["share_target"],
        }
    shutil.rmtree(ctx.out / "work", ignore_errors=True)
    return result


def _tokenized(tokens_dir: Path, tokenizer: Path, what: str) -> dict[str, Any]:
    """Counts of a merged ``.ds`` folder (its tokenizer path made relative); an error when it is empty."""
    data_files = sorted(tokens_dir.glob("*.ds"))
    if not data_files:
        raise InputDataError(f"tokenize: {what} produced no tokens (all documents empty?)")
    _relativize_metadata(tokens_dir, tokenizer)
    n_docs = sum((f.with_name(f.name + ".index")).stat().st_size // 8 for f in data_files)
    token_size = int(
        (tokens_dir / f"{data_files[0].name}.metadata").read_text().splitlines()[0].rpartition("|")[2]
    )
    n_tokens = sum(f.stat().st_size for f in data_files) // token_size
    return {
        "documents": n_docs,
        "tokens": n_tokens,
        "files": [f.name for f in data_files],
        "token_size": token_size,
    }
