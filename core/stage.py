"""The contract between the spine and every stage implementation.

A stage implementation is a plain function ``run(ctx: StageContext) -> dict``. It reads its upstream
artifacts from ``ctx.inputs`` (completed folders), writes everything into ``ctx.out`` and returns a
JSON-serialisable dict of results (counts, metrics) that the store records in ``manifest.json``.

Implementations must be deterministic given ``ctx.config`` and ``ctx.seed``, must not write outside
``ctx.out`` and may be re-entered after a crash (``ctx.out`` then holds what the previous attempt left,
e.g. datatrove's ``completions/`` folder, so datatrove skips finished ranks).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


@dataclass
class StageContext:
    """Everything a stage needs: its config section, upstream folders, output folder and resources."""

    stage: str
    """Stage kind, e.g. ``score`` or ``train``."""
    name: str
    """Instance name, e.g. the variant name."""
    config: dict[str, Any]
    """This stage's resolved config (plain JSON data; exactly what its hash covers)."""
    inputs: dict[str, Path]
    """Upstream artifact folders by role (``source``, ``classifier``, ``model``, ...)."""
    out: Path
    """Folder to write into; it becomes the artifact once the stage returns."""
    seed: int = 0
    workers: int = 1
    """Processes the stage may use (datatrove tasks/workers)."""
    show_progress: bool = True
    progress_file: Any = None
    """Where progress bars go (the terminal, while the stage's own stderr goes to its ``stage.log``)."""
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("propensity"))
    part: tuple[int, int] | None = None
    """``(index, count)`` when this process is one task of a job array running the stage's ranks in parts:
    the stage runs only the ranks of :func:`part_ranks` and then raises :class:`PartComplete`; the
    finishing run (``part`` None) skips the ranks already complete and writes the whole result."""

    def ranks(self, total: int) -> range:
        """The ranks of ``total`` this process runs: all of them, or this part's contiguous share."""
        return part_ranks(total, self.part)

    def progress(self, it: Iterable[T] | None = None, *, total: int | None = None, desc: str = "") -> tqdm:
        """A progress bar labelled with this stage (disabled when progress display is off)."""
        label = f"{self.stage}/{self.name}" + (f" {desc}" if desc else "")
        return tqdm(it, total=total, desc=label, disable=not self.show_progress, leave=False, dynamic_ncols=True,
                    file=self.progress_file)


class PartComplete(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a stage running one part of its ranks (``ctx.part``) once those ranks are complete."""


def part_ranks(total: int, part: tuple[int, int] | None) -> range:
    """Ranks ``[total * i // n, total * (i + 1) // n)`` of part ``(i, n)``; every rank when ``part`` is None.

    Parts are contiguous and cover ``range(total)`` exactly once, whatever ``total`` turns out to be when
    the stage runs (an array may have more tasks than ranks: the extra parts are empty)."""
    if part is None:
        return range(total)
    index, count = part
    if not 0 <= index < count:
        raise ValueError(f"part index {index} is not in 0..{count - 1}")
    return range(total * index // count, total * (index + 1) // count)
