"""Stage implementations that break one mechanism of a finished variant (used by the mutation tests): each
copies its ``variant`` input, changes one thing, and keeps the input's manifest result, so every later stage
and check sees the same claims with broken data."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

from core.stage import StageContext


def _copy_records(src: Path, dst: Path, change) -> None:
    for path in sorted(src.glob("*.jsonl.gz")):
        dst.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "rt", encoding="utf-8") as fin, gzip.open(dst / path.name, "wt", encoding="utf-8") as fout:
            for line in fin:
                record = change(json.loads(line))
                if record is not None:
                    fout.write(json.dumps(record) + "\n")


def _mutate(ctx: StageContext, change, inject_change=None) -> dict:
    src = Path(ctx.inputs["variant"])
    _copy_records(src / "shards", Path(ctx.out) / "shards", change)
    if (src / "inject").is_dir():
        _copy_records(src / "inject", Path(ctx.out) / "inject", inject_change or (lambda r: r))
    for extra in ("schedule.json", "excluded"):
        if (src / extra).is_dir():
            continue  # a mutant's excluded/ is written by its change, never copied
        if (src / extra).is_file():
            shutil.copy(src / extra, Path(ctx.out) / extra)
    return json.loads((src / "manifest.json").read_text())["result"]


def _replace_tags(text: str, mapping: dict[str, str]) -> str:
    for old, new in mapping.items():
        text = text.replace(old, new)
    return text


def strip_tags(ctx: StageContext) -> dict:
    """Tags removed from the text before tokenization (the manifest still counts them)."""
    return _mutate(ctx, lambda r: r | {"text": _replace_tags(r["text"], {"<|good|>": "", "<|bad|>": ""})})


def swap_tags(ctx: StageContext) -> dict:
    """<|good|> and <|bad|> exchanged: every tag now says the opposite of the score."""
    mapping = {"<|good|>": "\x00", "<|bad|>": "<|good|>"}
    return _mutate(ctx, lambda r: r | {"text": _replace_tags(_replace_tags(r["text"], mapping), {"\x00": "<|bad|>"})})


def no_injection(ctx: StageContext) -> dict:
    """Injection share 0: the injected file is emptied."""
    return _mutate(ctx, lambda r: r, inject_change=lambda r: None)
