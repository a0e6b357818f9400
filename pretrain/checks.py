"""What the train stage refuses, stated once: the spine asks these before it runs anything, the stage again
before it trains.

- :func:`backend_refusal`: settings and data the nanotron backend cannot train (the experiment config asks it
  for every variant when it is loaded; the train stage before launching).
- :func:`check_budgets`: whether every tokenized variant holds the token budget, counted as the trainer will
  (the executors ask it once the tokenize stages are complete, before the first train stage).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import BudgetError, InputDataError

from .data import InjectPlan, TokenFolder, WindowLoader
from .settings import TRAIN_DEFAULTS


def backend_refusal(backend: str, *, document_mask: bool = False, window: Sequence[float] | None = None,
                    masks: str | None = None) -> str | None:
    """Why ``backend`` cannot train with these settings and data (the setting first), or None when it can.

    ``window``: the training window of a variant's injected documents; ``masks``: what a variant masks out of
    the loss, described (None: nothing)."""
    if backend != "nanotron":
        return None
    if document_mask:
        return ("document_mask: needs the torch trainer (nanotron's Llama attends across the documents of a "
                "sequence); set train.backend: torch or document_mask: false")
    if window is not None:
        return (f"inject.window {list(window)} needs the torch trainer (nanotron reads one data folder in its own "
                "order and would never see the injected set); set train.backend: torch or drop the window")
    if masks:
        return (f"loss masks ({masks}) need the torch trainer; nanotron ignores .ds.loss and would train on the "
                "masked tokens (set train.backend: torch or drop the mask)")
    return None


def inject_plan(tokenized: Path, steps: int) -> InjectPlan | None:
    """The windowed injection of a tokenize folder (``tokens_inject/`` + ``schedule.json``), or None."""
    from .tokenize_docs import INJECT_DIR, SCHEDULE_FILE  # datatrove-heavy: only for the file names

    if not (tokenized / INJECT_DIR).is_dir():
        return None
    try:
        schedule = json.loads((tokenized / SCHEDULE_FILE).read_text())["inject"]
        window, share = tuple(float(x) for x in schedule["window"]), float(schedule["share_target"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputDataError(f"train: {tokenized / SCHEDULE_FILE} is missing or malformed ({e})") from None
    return InjectPlan(TokenFolder(tokenized / INJECT_DIR), window, share, steps)  # type: ignore[arg-type]


def check_budgets(config: dict[str, Any], tokenized: dict[str, Path]) -> None:
    """Before any training: every variant (name -> its tokenize folder) must hold the budget of the train stage
    ``config`` (variants are token-matched); one ``BudgetError`` names every variant that falls short.

    A variant with windowed injection needs fewer windows of its own (injected rows replace base rows) and
    enough injected windows for the schedule; both are counted as the trainer will count them."""
    t = {key: config.get(key, TRAIN_DEFAULTS[key]) for key in ("tokens", "batch_size", "seq_len", "packing",
                                                              "allow_repeat")}
    steps = t["tokens"] // (t["batch_size"] * t["seq_len"])
    short = []
    for name, folder in tokenized.items():
        loader = WindowLoader(TokenFolder(folder / "tokens"), t["seq_len"], t["batch_size"], t["packing"], 0, 0,
                              inject_plan(folder, steps))
        base, injected = loader.windows_needed(steps)
        if injected and injected > len(loader.inject_table):
            short.append(f"{name}: the injection schedule takes {injected:,} windows, "
                         f"{len(loader.inject_table):,} injected")
        if base > len(loader.table):
            short.append(f"{name}: {len(loader.table) * t['seq_len']:,} window positions offered, "
                         f"{base * t['seq_len']:,} needed")
    if short and not t["allow_repeat"]:
        raise BudgetError(
            f"token budget train.tokens={t['tokens']:,} is more than some variants hold "
            f"({'; '.join(sorted(set(short)))}). "
            "Lower train.tokens, add data, or set train.allow_repeat: true to train for more than one epoch."
        )
