"""Window packing over .ds folders: fixed windows are consecutive, aligned windows start at documents, packed
windows hold whole documents best-fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import BudgetError, ConfigError, InputDataError
from pretrain.data import (
    IGNORE_INDEX,
    InjectPlan,
    TokenFolder,
    WindowLoader,
    document_aligned_windows,
    document_packed_windows,
)


def write_ds(
    folder: Path, doc_lengths: list[int], token_size: int = 2, loss: bool = False, name: str = "000_x"
) -> np.ndarray:
    """A hand-made datatrove file whose token at position i is i % 1000 + 2 (0 = eos, 1 = pad)."""
    folder.mkdir(parents=True, exist_ok=True)
    ends = np.cumsum(doc_lengths).astype("<u8")
    ids = (np.arange(ends[-1]) % 1000 + 2).astype("<u2" if token_size == 2 else "<u4")
    ids[ends - 1] = 0
    ids.tofile(folder / f"{name}.ds")
    ends.tofile(folder / f"{name}.ds.index")
    (folder / f"{name}.ds.metadata").write_text(f"tok/tokenizer.json|{token_size}\n{len(ids)}\n")
    if loss:
        (np.arange(len(ids)) % 3 != 0).astype(np.uint8).tofile(folder / f"{name}.ds.loss")
    return ids


def test_document_aligned_table_by_hand() -> None:
    # docs of 3, 4, 12, 2 tokens at seq_len 4 (windows of 5); every window but the file's first leads with the
    # EOS before its document: [0,3) alone (the next doc would end at 7 > 5), EOS 2 + [3,7), EOS 6 + the
    # 12-token doc's start, its continuations at 10 and 14 (the tail [14,19)), EOS 18 + the 2-token doc.
    starts, lengths = document_aligned_windows(np.array([3, 7, 19, 21]), seq_len=4)
    assert starts.tolist() == [0, 2, 6, 10, 14, 18]
    assert lengths.tolist() == [3, 5, 5, 5, 5, 3]


def test_aligned_windows_start_at_document_starts(tokenized_dir: Path) -> None:
    data = TokenFolder(tokenized_dir / "tokens")
    ends = np.fromfile(tokenized_dir / "tokens/000_tokens.ds.index", dtype="<u8").astype(np.int64)
    doc_starts = np.concatenate([[0], ends[:-1]])
    table = data.windows("document_aligned", 16)
    ids = data.tokens[0]
    eos = ids[ends[0] - 1]
    # a window is led by the EOS right before a document start, or continues the long document of the window
    # before it, a whole window later; only the file's first window starts at 0 with no lead
    led = (table.start > 0) & np.isin(table.start + 1, doc_starts) & (ids[table.start] == eos)
    continued = ~led & (table.start > 0)
    prev = np.nonzero(continued)[0] - 1
    assert (table.start[continued] == table.start[prev] + 16).all() and (table.length[prev] == 17).all()
    assert 0 < continued.sum() < len(table)  # 7-65-token documents: some need continuations
    first = np.where(led, table.start + 1, table.start)  # where each window's first document starts
    # a document that does not start a window lies whole inside the window before it
    not_starting = np.setdiff1d(doc_starts, first)
    holder = np.searchsorted(first, not_starting, side="right") - 1
    doc_end = ends[np.searchsorted(doc_starts, not_starting)]
    assert len(not_starting) > 0 and (doc_end <= table.start[holder] + table.length[holder]).all()
    window_ends = table.start + table.length
    assert (np.isin(window_ends, ends) | (table.length == 17)).all()  # short windows end exactly at a doc end
    covered = np.zeros(ends[-1], dtype=int)
    for s, n in zip(table.start, table.length, strict=True):
        covered[s + 1 : s + n] += 1
    assert (covered[doc_starts[1:]] <= 1).all() and covered.max() == 1  # every target at most once per pass
    assert data.target_tokens("document_aligned", 16) == covered.sum()


def test_fixed_windows_are_consecutive(tmp_path: Path) -> None:
    ids = write_ds(tmp_path, [50, 30, 21])
    data = TokenFolder(tmp_path)
    table = data.windows("fixed", 10)
    assert table.start.tolist() == list(range(0, 100, 10)) and (table.length == 11).all()
    assert data.tokens_available("fixed", 10) == 100
    loader = WindowLoader(data, 10, batch_size=10, packing="fixed", pad_id=1, seed=0)
    x, y = loader.batch(0)
    got = np.concatenate([x, y[:, -1:]], axis=1)
    assert sorted(map(tuple, got.tolist())) == sorted(
        tuple(ids[s : s + 11].tolist()) for s in range(0, 100, 10)
    )
    assert (y[:, :-1] == x[:, 1:]).all()  # targets are the inputs shifted by one


def test_batches_are_deterministic_and_cover_an_epoch(tmp_path: Path) -> None:
    write_ds(tmp_path, [7] * 40)
    data = TokenFolder(tmp_path)
    a = WindowLoader(data, 8, 4, "document_aligned", pad_id=1, seed=3)
    b = WindowLoader(data, 8, 4, "document_aligned", pad_id=1, seed=3)
    c = WindowLoader(data, 8, 4, "document_aligned", pad_id=1, seed=4)
    assert all(np.array_equal(a.batch(s)[0], b.batch(s)[0]) for s in (5, 0, 9))
    assert not np.array_equal(a.batch(0)[0], c.batch(0)[0])
    xs = np.concatenate([a.batch(s)[0] for s in range(10)])  # 40 windows = one epoch
    led = xs[:, 0] == 0  # every window but the file's first leads with the previous document's EOS
    assert led.sum() == 39
    firsts = np.where(led, xs[:, 1], xs[:, 0])
    assert sorted(firsts.tolist()) == sorted((np.arange(40) * 7 % 1000 + 2).tolist())
    x, y = a.batch(0)
    led = x[:, 0] == 0
    assert (y[led, 6] == 0).all() and (y[led, 7:] == IGNORE_INDEX).all()  # EOS, 7-token doc, then padding
    assert (y[~led, 5] == 0).all() and (y[~led, 6:] == IGNORE_INDEX).all()


def test_budget_error_and_repeat(tmp_path: Path) -> None:
    write_ds(tmp_path, [101])
    loader = WindowLoader(TokenFolder(tmp_path), 10, batch_size=4, packing="fixed", pad_id=1, seed=0)
    assert loader.check_budget(2, allow_repeat=False) == pytest.approx(0.8)
    with pytest.raises(BudgetError, match="needs 120 window positions .*offers 100 window positions .*allow_repeat"):
        loader.check_budget(3, allow_repeat=False)
    assert loader.check_budget(5, allow_repeat=True) == pytest.approx(2.0)
    assert not np.array_equal(loader.batch(3)[0], loader.batch(2)[0])


def test_loss_file_masks_targets_and_uint32(tmp_path: Path) -> None:
    ids = write_ds(tmp_path, [33], token_size=4, loss=True)
    data = TokenFolder(tmp_path)
    assert data.tokens[0].dtype == np.dtype("<u4")
    x, y = WindowLoader(data, 8, 4, "fixed", pad_id=1, seed=0).batch(0)
    for row_x, row_y in zip(x, y, strict=True):
        start = int(np.nonzero(ids == row_x[0])[0][0])
        target_pos = np.arange(start + 1, start + 9)
        expected = np.where(target_pos % 3 != 0, ids[target_pos].astype(np.int64), IGNORE_INDEX)
        assert row_y.tolist() == expected.tolist()


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="no \\*.ds files"):
        TokenFolder(tmp_path)
    write_ds(tmp_path, [5, 5])
    (tmp_path / "000_x.ds.index").write_bytes(np.array([5, 9], dtype="<u8").tobytes())
    with pytest.raises(InputDataError, match="ends at 9 but the file has 10 tokens"):
        TokenFolder(tmp_path)
    write_ds(tmp_path, [5, 5])
    msg = "packing must be one of fixed, document_aligned, document_packed; got 'aligned'"
    with pytest.raises(ConfigError, match=msg):
        TokenFolder(tmp_path).windows("aligned", 4)


def test_document_packed_table_by_hand() -> None:
    # docs of 3, 4, 12, 2 tokens at seq_len 4 (windows of 5): the 12-token doc is split as in document_aligned
    # (lead EOS 18 + [7,11), [10,15), tail [14,19)); then whole docs longest first, each new window led by
    # the document's own EOS: EOS 6 + [3,7) (full), EOS 2 + [0,3) (1 free), EOS 20 + [19,21) (no room left)
    starts, lengths, ptr = document_packed_windows(np.array([3, 7, 19, 21]), seq_len=4)
    windows = [list(zip(starts[a:b].tolist(), lengths[a:b].tolist(), strict=True))
               for a, b in zip(ptr[:-1], ptr[1:], strict=True)]
    assert windows == [[(18, 1), (7, 4)], [(10, 5)], [(14, 5)], [(6, 1), (3, 4)], [(2, 1), (0, 3)],
                       [(20, 1), (19, 2)]]
    # small documents fill the gaps best-fit: 6 fills the 3-token hole next to the 4... here 2+2 share a window
    starts, lengths, ptr = document_packed_windows(np.cumsum([6, 2, 3, 2]), seq_len=8)
    windows = [list(zip(starts[a:b].tolist(), lengths[a:b].tolist(), strict=True))
               for a, b in zip(ptr[:-1], ptr[1:], strict=True)]
    assert windows == [[(5, 1), (0, 6), (6, 2)], [(10, 1), (8, 3), (11, 2)]]


def test_packed_windows_cover_every_target_once_with_little_padding() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 90, 3000)
    ends = np.cumsum(lengths)
    seq_len = 64
    starts, seg_lengths, ptr = document_packed_windows(ends, seq_len)
    window_len = np.diff(np.concatenate([[0], np.cumsum(seg_lengths)])[ptr])
    assert (window_len <= seq_len + 1).all()
    doc_starts = np.concatenate([[0], ends[:-1]])
    starts_set = set(doc_starts.tolist())
    is_eos = np.zeros(ends[-1] + 1, dtype=bool)
    is_eos[ends - 1] = True
    targets = np.zeros(ends[-1], dtype=int)
    for a, b in zip(ptr[:-1], ptr[1:], strict=True):
        segs = list(zip(starts[a:b].tolist(), seg_lengths[a:b].tolist(), strict=True))
        first, n = segs[0]
        if n == 1:  # a lead EOS, then documents that start at a document start
            assert is_eos[first]
            body = segs[1:]
        else:  # a long document's continuation or tail: its first token is context only
            targets[first + 1 : first + n] += 1
            body = segs[1:]
        for s, m in body:  # documents from their start; the lead/previous EOS predicts the first token
            whole = is_eos[s + m - 1]
            assert s in starts_set and (whole or (len(segs) == 2 and m == seq_len))  # or a long
            targets[s : s + m] += 1  # document's head, alone after its lead
    # every token of every document with something to predict is a target exactly once (the first token of a
    # one-token-or-longer document included), the first token of a long document's continuation excepted
    expected = np.ones(ends[-1], dtype=int)
    expected[ends[lengths == 1] - 1] = 0  # one-token documents are skipped
    assert targets.tolist() == expected.tolist()
    aligned_starts, aligned_lengths = document_aligned_windows(ends, seq_len)
    assert len(ptr) - 1 < 0.8 * len(aligned_starts)  # the padding of document_aligned is mostly filled
    assert window_len.sum() / ((len(ptr) - 1) * (seq_len + 1)) > 0.97


def test_packed_loader_batches_match_the_table_and_the_loss_mask(tmp_path: Path) -> None:
    ids = write_ds(tmp_path, [7, 3, 30, 5, 2, 6, 9, 4] * 5, loss=True)
    data = TokenFolder(tmp_path)
    table = data.windows("document_packed", 12)
    assert data.target_tokens("document_packed", 12) == int((table.window_length - 1).sum())
    loader = WindowLoader(data, 12, 4, "document_packed", pad_id=1, seed=0)
    seen = 0
    for step in range(len(table) // 4):
        x, y = loader.batch(step)
        for row_x, row_y, w in zip(x, y, loader.window_ids(step)[0], strict=True):
            real = np.concatenate([ids[s : s + n].astype(np.int64) for s, n in
                                   zip(table.start[table.ptr[w]:table.ptr[w + 1]],
                                       table.length[table.ptr[w]:table.ptr[w + 1]], strict=True)])
            pos = np.concatenate([np.arange(s, s + n) for s, n in
                                  zip(table.start[table.ptr[w]:table.ptr[w + 1]],
                                      table.length[table.ptr[w]:table.ptr[w + 1]], strict=True)])
            k = len(real)
            assert row_x[:k].tolist() == real[: min(k, 12)].tolist() and (row_x[k:] == 1).all()
            expected = np.where(pos[1:] % 3 != 0, real[1:], IGNORE_INDEX)
            assert row_y[: k - 1].tolist() == expected.tolist() and (row_y[k - 1 :] == IGNORE_INDEX).all()
            seen += 1
    assert seen == len(table) // 4 * 4


def test_windowed_injection_share_and_window_within_one_percent(tmp_path: Path) -> None:
    """Injected rows come from the second folder, only inside the window, at the share (within 1%); each
    stream is drawn without repeats and a batch depends on its step alone (resume needs nothing else)."""
    write_ds(tmp_path / "base", [16] * 4000)  # tokens 2..1001
    inj_ids = write_ds(tmp_path / "inj", [16] * 300)
    inj_ids[inj_ids > 0] += 2000  # injected tokens 2002..3001: recognisable in a batch
    inj_ids.tofile(tmp_path / "inj/000_x.ds")
    steps, batch, window, share = 400, 8, (0.8, 1.0), 0.05
    plan = InjectPlan(TokenFolder(tmp_path / "inj"), window, share, steps)
    loader = WindowLoader(TokenFolder(tmp_path / "base"), 15, batch, "fixed", pad_id=1, seed=3, inject=plan)
    epochs = loader.check_budget(steps, allow_repeat=False)
    assert epochs == pytest.approx((steps * batch - 160) / 4266, rel=1e-3)
    per_step, base_seen, inj_seen = [], [], []
    for step in range(steps):
        x, _ = loader.batch(step)
        injected = (x.max(axis=1) > 2000)
        per_step.append(int(injected.sum()))
        assert not injected[: batch - per_step[-1]].any()  # base rows first, injected rows last
        base_ids, inj_window_ids = loader.window_ids(step)
        base_seen += base_ids.tolist()
        inj_seen += inj_window_ids.tolist()
    first = round(0.8 * steps)
    assert sum(per_step[:first]) == 0 and all(k in (2, 1) for k in per_step[first:])
    assert sum(per_step) / (steps * batch) == pytest.approx(share, rel=0.01)
    assert len(set(base_seen)) == len(base_seen) and len(set(inj_seen)) == len(inj_seen) == sum(per_step)
    again = WindowLoader(TokenFolder(tmp_path / "base"), 15, batch, "fixed", pad_id=1, seed=3, inject=plan)
    for step in (399, first, 17):  # any order: pure in the step
        assert np.array_equal(again.batch(step)[0], loader.batch(step)[0])
    plain = WindowLoader(TokenFolder(tmp_path / "base"), 15, batch, "fixed", pad_id=1, seed=3)
    assert np.array_equal(plain.batch(5)[0], loader.batch(5)[0])  # before the window: the plain run's batches
    small = InjectPlan(TokenFolder(tmp_path / "inj"), window, 0.2, steps)  # 640 injected rows > 319 windows
    short = WindowLoader(TokenFolder(tmp_path / "base"), 15, batch, "fixed", pad_id=1, seed=3, inject=small)
    with pytest.raises(BudgetError, match="injection schedule takes 640 windows but .* offers 319"):
        short.check_budget(steps, allow_repeat=False)
    assert short.check_budget(steps, allow_repeat=True) < 1
