"""Training windows of ``seq_len + 1`` tokens read from a datatrove ``.ds`` folder (numpy memmaps).

Files: ``*.ds`` (little-endian uint16, or uint32 when ``.ds.metadata`` says ``|4``), ``*.ds.index`` (uint64
cumulative document ends), optional ``*.ds.loss`` (one byte per token, 0 = no loss). Two packings:

- ``fixed``: consecutive windows starting at ``k * seq_len`` (each shares its first token with the previous
  window's last, so every token after the first is a target exactly once). The tail of a file shorter than a
  window is dropped.
- ``document_aligned``: every window starts at a document start, led by the previous document's EOS (the
  first document of a file has none). A window holds that document and every following *whole* document
  that fits; the rest of the window is padding whose loss is masked, so no document is cut at a window's
  end. A document longer than the window continues in the following windows (which start inside it, at
  ``lead + k * seq_len``); its tail starts a window of its own, followed by the next whole documents that
  fit. The leading EOS matters: a model learns to park attention on position 0 (the attention sink) and
  reads almost nothing from it, so a document tag placed at position 0 goes unread; after the EOS it is an
  ordinary position (measured in docs/conditional_tags.md). Evaluation prompts start with the same EOS.

- ``document_packed``: the same guarantees as ``document_aligned`` (whole documents, each led by an EOS or
  following another document's EOS; long documents split the same way) but the documents of a file are
  packed into windows best-fit decreasing instead of in file order, so the padding that ``document_aligned``
  leaves (about a quarter of the window positions when documents are 0.5-0.8 windows long) is mostly
  filled (Ding et al. 2024, "Fewer Truncations Improve Language Modeling"). A window is then a list of
  segments: the lead EOS (the first document's own EOS token), then whole documents, or a long document's
  tail first.

Windowed injection (``InjectPlan``): some rows of each batch inside a window of the steps come from a
second folder (documents mixed in late in training, Alignment Pretraining-style); ``injected_rows(step)`` of
batch ``step`` are injected, spread evenly over the window so that ``share`` of all rows are, and both
streams keep their own seeded permutations, so a batch is still a pure function of the step.

The budget unit is window positions: ``tokens_available = windows * seq_len`` (for ``document_aligned`` this
includes the masked padding; ``target_tokens`` counts the real targets). Window order is a permutation seeded
by ``(seed, epoch)``, so batch ``k`` is a pure function of ``k``: resuming needs only the step number.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import BudgetError, ConfigError, InputDataError

PACKINGS = ("fixed", "document_aligned", "document_packed")
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Windows:
    """Window table. Segment ``s`` is ``length[s]`` tokens of file ``file[s]`` from ``start[s]``; window ``w``
    is segments ``ptr[w]:ptr[w + 1]`` back to back (at most ``seq_len + 1`` tokens, the rest padding). Only
    ``document_packed`` has windows of several segments; elsewhere segment ``w`` is window ``w``."""

    file: np.ndarray
    start: np.ndarray
    length: np.ndarray
    ptr: np.ndarray

    def __len__(self) -> int:
        return len(self.ptr) - 1

    @property
    def window_length(self) -> np.ndarray:
        """Real tokens per window."""
        return np.diff(np.concatenate([[0], np.cumsum(self.length)])[self.ptr])


def _token_dtype(ds: Path) -> np.dtype:
    meta = ds.with_name(ds.name + ".metadata")
    if not meta.is_file():
        raise InputDataError(f"data: {meta} is missing (needed for the token size)")
    size = meta.read_text().splitlines()[0].rpartition("|")[2]
    if size not in ("2", "4"):
        raise InputDataError(f"data: {meta} gives token size {size!r}; allowed: 2, 4")
    return np.dtype("<u2") if size == "2" else np.dtype("<u4")


def fixed_windows(n_tokens: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of consecutive ``seq_len + 1`` windows with stride ``seq_len``."""
    count = max(n_tokens - 1, 0) // seq_len
    starts = np.arange(count, dtype=np.int64) * seq_len
    return starts, np.full(count, seq_len + 1, dtype=np.int64)


def document_aligned_windows(doc_ends: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of document-aligned windows (see the module docstring) from cumulative doc ends."""
    span = seq_len + 1
    starts: list[int] = []
    lengths: list[int] = []
    total = int(doc_ends[-1]) if len(doc_ends) else 0
    pos, at_doc_start = 0, True
    while pos < total - 1:
        # lead with the previous document's EOS: position 0 then holds the same separator in every window
        # (the attention sink), and the document's first token (a tag) is an ordinary, readable position 1
        start = pos - 1 if (at_doc_start and pos > 0) else pos
        last = int(np.searchsorted(doc_ends, start + span, side="right")) - 1
        end = int(doc_ends[last]) if last >= 0 else 0
        if end > pos + 1:  # at least one whole document (with a target) fits: pad after it
            starts.append(start)
            lengths.append(end - start)
            pos, at_doc_start = end, True
        elif end == pos + 1:  # a one-token document: nothing to predict, skip it
            pos, at_doc_start = end, True
        else:  # the document at pos is longer than the window: continue it in the next window
            starts.append(start)
            lengths.append(span)
            pos, at_doc_start = start + seq_len, False
    return np.asarray(starts, dtype=np.int64), np.asarray(lengths, dtype=np.int64)


def document_packed_windows(doc_ends: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment starts, lengths and window pointers of best-fit packed windows (see the module docstring).

    Documents longer than ``seq_len`` are split as in :func:`document_aligned_windows` and their tail opens a
    window of its own (its first token is context, not a target). Then whole documents, longest first (ties
    in file order), go into the window with the least room that still holds them; a new window costs one
    extra token, the lead EOS. Deterministic in ``doc_ends``.
    """
    span = seq_len + 1
    bins: list[list[tuple[int, int]]] = []
    by_room: list[deque[int]] = [deque() for _ in range(span + 1)]  # by_room[r]: windows with r free tokens

    def open_window(segments: list[tuple[int, int]], room: int) -> None:
        bins.append(segments)
        if room > 0:
            by_room[room].append(len(bins) - 1)

    starts = np.concatenate([[0], doc_ends[:-1]]).astype(np.int64)
    lengths = doc_ends - starts
    whole: list[int] = []
    for i, (start, n) in enumerate(zip(starts.tolist(), lengths.tolist(), strict=True)):
        if n <= 1:  # a one-token document: nothing to predict
            continue
        if n <= seq_len:
            whole.append(i)
            continue
        end = start + n
        open_window([(end - 1, 1), (start, seq_len)], 0)  # lead EOS (the document's own) + its start
        pos = start + seq_len - 1  # continuations share one token with the window before
        while end - pos > span:
            open_window([(pos, span)], 0)
            pos += seq_len
        if end - pos > 1:  # a one-token tail was the last target of the window before
            open_window([(pos, end - pos)], span - (end - pos))
    for i in sorted(whole, key=lambda k: (-int(lengths[k]), k)):
        n, start = int(lengths[i]), int(starts[i])
        fit = next((r for r in range(n, span + 1) if by_room[r]), None)
        if fit is None:
            open_window([(start + n - 1, 1), (start, n)], span - 1 - n)  # lead: the document's own EOS
            continue
        window = by_room[fit].popleft()
        bins[window].append((start, n))
        if fit > n:
            by_room[fit - n].append(window)
    seg_start = np.asarray([a for b in bins for a, _ in b], dtype=np.int64)
    seg_length = np.asarray([n for b in bins for _, n in b], dtype=np.int64)
    ptr = np.concatenate([[0], np.cumsum([len(b) for b in bins])]).astype(np.int64)
    return seg_start, seg_length, ptr


class TokenFolder:
    """The ``.ds`` files of one folder, memory-mapped, with their document index and optional loss masks."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.files = sorted(self.folder.glob("*.ds"))
        if not self.files:
            raise InputDataError(f"data: no *.ds files in {self.folder}")
        self.tokens = [np.memmap(f, dtype=_token_dtype(f), mode="r") for f in self.files]
        self.doc_ends = [
            np.fromfile(f.with_name(f.name + ".index"), dtype="<u8").astype(np.int64) for f in self.files
        ]
        loss_files = [f.with_name(f.name + ".loss") for f in self.files]
        self.loss = (
            [np.memmap(f, dtype=np.uint8, mode="r") for f in loss_files]
            if all(f.is_file() for f in loss_files)
            else None
        )
        for i, f in enumerate(self.files):
            ends = self.doc_ends[i]
            if len(ends) and ends[-1] != len(self.tokens[i]):
                raise InputDataError(
                    f"data: {f}.index ends at {ends[-1]} but the file has {len(self.tokens[i])} tokens"
                )
            if self.loss is not None and len(self.loss[i]) != len(self.tokens[i]):
                raise InputDataError(
                    f"data: {f}.loss has {len(self.loss[i])} values for {len(self.tokens[i])} tokens"
                )
        self._windows: dict[tuple[str, int], Windows] = {}

    @property
    def n_tokens(self) -> int:
        """Tokens in all files."""
        return sum(len(t) for t in self.tokens)

    @property
    def n_documents(self) -> int:
        """Documents in all files."""
        return sum(len(e) for e in self.doc_ends)

    def windows(self, packing: str, seq_len: int) -> Windows:
        """The window table for ``packing`` at ``seq_len`` (computed once, then cached)."""
        if packing not in PACKINGS:
            raise ConfigError(f"data: packing must be one of {', '.join(PACKINGS)}; got {packing!r}")
        if seq_len < 1:
            raise ConfigError(f"data: seq_len must be >= 1, got {seq_len!r}")
        key = (packing, seq_len)
        if key not in self._windows:
            parts = []
            for tok, ends in zip(self.tokens, self.doc_ends, strict=True):
                if packing == "document_packed":
                    parts.append(document_packed_windows(ends, seq_len))
                    continue
                starts, lengths = (
                    fixed_windows(len(tok), seq_len) if packing == "fixed" else document_aligned_windows(ends, seq_len)
                )
                parts.append((starts, lengths, np.arange(len(starts) + 1, dtype=np.int64)))
            offsets = np.cumsum([0] + [len(s) for s, _, _ in parts])
            self._windows[key] = Windows(
                file=np.concatenate([np.full(len(s), i, dtype=np.int64) for i, (s, _, _) in enumerate(parts)]),
                start=np.concatenate([s for s, _, _ in parts]),
                length=np.concatenate([n for _, n, _ in parts]),
                ptr=np.concatenate([[0]] + [p[1:] + o for (_, _, p), o in zip(parts, offsets, strict=False)]),
            )
        return self._windows[key]

    def tokens_available(self, packing: str, seq_len: int) -> int:
        """Budget tokens one pass offers: windows x ``seq_len`` (``document_aligned`` padding included)."""
        return len(self.windows(packing, seq_len)) * seq_len

    def target_tokens(self, packing: str, seq_len: int) -> int:
        """Real (unpadded) target positions in one pass, before any ``.ds.loss`` masking."""
        return int((self.windows(packing, seq_len).window_length - 1).sum())


def window_steps(window: tuple[float, float], steps: int) -> tuple[int, int]:
    """The steps ``[first, end)`` of a training window given as fractions of ``steps``."""
    first, end = round(window[0] * steps), round(window[1] * steps)
    if end <= first:
        raise ConfigError(f"data: injection window {list(window)} covers no step of {steps}")
    return first, end


def injected_rows_before(
    step: int, steps: int, batch_size: int, window: tuple[float, float], share: float
) -> int:
    """Injected rows in batches ``0 .. step - 1`` (closed form: the position in the injected stream, so
    resuming at ``step`` needs nothing else)."""
    first, end = window_steps(window, steps)
    density = min(share * steps / (end - first), 1.0)
    return math.floor(density * batch_size * (min(max(step, first), end) - first) + 1e-9)


def injected_rows(step: int, steps: int, batch_size: int, window: tuple[float, float], share: float) -> int:
    """Rows of batch ``step`` taken from the injected set so that ``share`` of all rows over ``steps`` are
    injected, all inside ``window`` and spread evenly over it (cumulative rounding)."""
    args = (steps, batch_size, window, share)
    return injected_rows_before(step + 1, *args) - injected_rows_before(step, *args)


@dataclass(frozen=True)
class InjectPlan:
    """Windowed injection: rows of the batches in ``window`` (fractions of ``steps``) come from ``data``."""

    data: TokenFolder
    window: tuple[float, float]
    share: float
    """Injected share of all rows (window positions) of the run."""
    steps: int

    def rows(self, step: int, batch_size: int) -> int:
        return injected_rows(step, self.steps, batch_size, self.window, self.share)

    def rows_before(self, step: int, batch_size: int) -> int:
        return injected_rows_before(step, self.steps, batch_size, self.window, self.share)


class _Stream:
    """Window ids of one folder in a seeded order, epoch after epoch: ``ids(first, count)``."""

    def __init__(self, n: int, seed: list[int]) -> None:
        self.n, self.seed = n, seed
        self._epoch, self._order = -1, np.empty(0, dtype=np.int64)

    def order(self, epoch: int) -> np.ndarray:
        """The window ids of ``epoch`` in stream order."""
        return np.random.default_rng([*self.seed, epoch]).permutation(self.n)

    def total(self, values: np.ndarray, count: int) -> int:
        """Sum of ``values[id]`` over the first ``count`` ids of the stream (vectorised per epoch)."""
        out = 0
        for epoch in range(-(-count // self.n)):
            take = min(self.n, count - epoch * self.n)
            out += int(values[self.order(epoch)[:take]].sum())
        return out

    def ids(self, first: int, count: int) -> np.ndarray:
        out = np.empty(count, dtype=np.int64)
        for j, i in enumerate(range(first, first + count)):
            epoch, pos = divmod(i, self.n)
            if epoch != self._epoch:
                self._epoch, self._order = epoch, self.order(epoch)
            out[j] = self._order[pos]
        return out


class WindowLoader:
    """Batches of shuffled windows: ``batch(step)`` gives ``(inputs, targets)``, int64 (B, seq_len) arrays.

    Targets are ``IGNORE_INDEX`` at padding and where ``.ds.loss`` is 0. Deterministic in ``(seed, step)``.
    """

    def __init__(
        self,
        data: TokenFolder,
        seq_len: int,
        batch_size: int,
        packing: str,
        pad_id: int,
        seed: int,
        inject: InjectPlan | None = None,
    ) -> None:
        self.data, self.seq_len, self.batch_size, self.pad_id, self.seed = (
            data,
            seq_len,
            batch_size,
            pad_id,
            seed,
        )
        self.table = data.windows(packing, seq_len)
        if len(self.table) == 0:
            raise BudgetError(f"data: {data.folder} has no {packing} window of {seq_len + 1} tokens")
        self._base = _Stream(len(self.table), [seed])
        self.inject = inject
        if inject is not None:
            self.inject_table = inject.data.windows(packing, seq_len)
            if len(self.inject_table) == 0:
                raise BudgetError(
                    f"data: {inject.data.folder} has no {packing} window of {seq_len + 1} tokens"
                )
            window_steps(inject.window, inject.steps)  # raises when the window covers no step
            self._injected = _Stream(len(self.inject_table), [seed, 1])

    def injected_total(self, steps: int) -> int:
        """Rows of batches ``0 .. steps - 1`` drawn from the injected set."""
        return 0 if self.inject is None else self.inject.rows_before(steps, self.batch_size)

    def windows_needed(self, steps: int) -> tuple[int, int]:
        """Windows ``steps`` batches take from the base set and from the injected set."""
        injected = self.injected_total(steps)
        return steps * self.batch_size - injected, injected

    def check_budget(self, steps: int, allow_repeat: bool) -> float:
        """Epochs ``steps`` batches need of the base set; ``BudgetError`` above one epoch (of either set)
        unless ``allow_repeat``."""
        needed, injected = self.windows_needed(steps)
        epochs = needed / len(self.table)
        if epochs > 1 and not allow_repeat:
            raise BudgetError(
                f"data: the budget needs {needed * self.seq_len:,} window positions ({steps} steps x batch "
                f"{self.batch_size} x seq_len {self.seq_len}"
                + (f", less {injected} injected windows" if injected else "")
                + f") but {self.data.folder} offers {len(self.table) * self.seq_len:,} window positions "
                f"({len(self.table)} windows); lower 'tokens' or set allow_repeat: true ({epochs:.2f} epochs)"
            )
        if self.inject is not None and injected > len(self.inject_table) and not allow_repeat:
            raise BudgetError(
                f"data: the injection schedule takes {injected} windows but {self.inject.data.folder} "
                f"offers {len(self.inject_table)}; inject a larger share of documents or set "
                "allow_repeat: true"
            )
        return epochs

    def target_totals(self, steps: int) -> tuple[int, int]:
        """Real (unpadded) targets of batches ``0 .. steps - 1``: from the base set, from the injected set."""
        injected = self.injected_total(steps)
        base = self._base.total(self.table.window_length - 1, steps * self.batch_size - injected)
        if self.inject is None:
            return base, 0
        return base, self._injected.total(self.inject_table.window_length - 1, injected)

    def window_ids(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Base and injected window ids of batch ``step`` (the injected rows follow the base rows)."""
        b = self.batch_size
        if self.inject is None:
            return self._base.ids(step * b, b), np.empty(0, dtype=np.int64)
        k, before = self.inject.rows(step, b), self.inject.rows_before(step, b)
        return self._base.ids(step * b - before, b - k), self._injected.ids(before, k)

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets of global batch ``step``."""
        base, injected = self.window_ids(step)
        span = self.seq_len + 1
        tokens = np.full((self.batch_size, span), self.pad_id, dtype=np.int64)
        keep = np.zeros((self.batch_size, span), dtype=bool)
        rows = [(self.data, self.table, w) for w in base.tolist()]
        if self.inject is not None:
            rows += [(self.inject.data, self.inject_table, w) for w in injected.tolist()]
        for row, (data, table, w) in enumerate(rows):
            at = 0
            for s in range(int(table.ptr[w]), int(table.ptr[w + 1])):
                f, a, n = int(table.file[s]), int(table.start[s]), int(table.length[s])
                tokens[row, at:at + n] = data.tokens[f][a:a + n]
                keep[row, at:at + n] = True if data.loss is None else data.loss[f][a:a + n] != 0
                at += n
        targets = np.where(keep[:, 1:], tokens[:, 1:], IGNORE_INDEX)
        return tokens[:, :-1], targets
