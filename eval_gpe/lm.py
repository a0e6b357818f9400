"""Token-level log-likelihood scoring of a causal LM, with requests that share a prefix sharing its compute.

A request is a context and a continuation; what the model reads is ``(context + continuation)[:-1]`` and the
scored positions are its last ``len(continuation)``. For Llama-family models (``PACKED_MODELS``) requests are
sorted by their token ids and packed into rows as a *prefix tree*: a token shared by several requests' inputs
(the context of both options of a forced choice, a format's preamble, an item frame, the options' common
start) is one node of the row, at its position in the sequence (explicit position ids), and a 4-d attention
mask lets every node see exactly its ancestors. Each scored position therefore computes what a separate
request would, while the forced-choice battery runs ~30% fewer positions than one row per context group (~60%
fewer than one row per request), and the LM head runs only at scored positions. A row holds ``ROW_TOKENS``
nodes (more when one request alone is longer). Other models get one right-padded row per request and the full
forward pass.

Over-long requests keep their last ``max_length + 1`` tokens, as lm-evaluation-harness does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

Progress = Callable[..., Iterable]
"""A progress wrapper like ``StageContext.progress(it, total=..., desc=...)``."""

PACKED_MODELS = frozenset(
    {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Olmo2ForCausalLM"}
)
"""Models whose logits are exactly ``lm_head(base_model(...).last_hidden_state)`` and that take position ids
and a custom 4-d attention mask; all others are scored one request per row."""

ROW_TOKENS = 128
"""Tree nodes per packed row. Larger rows share more prefixes but pay attention over more masked keys; 128
was fastest of 64-384 on the GPE benchmark (960 requests: ~34k padded positions as context groups, ~23.7k)."""


def model_max_length(model: Any) -> int:
    """The model's context length in tokens (``max_position_embeddings``, else 2048)."""
    return int(getattr(model.config, "max_position_embeddings", None) or 2048)


@dataclass
class _Row:
    """One packed row: its nodes, each sequence's path through them, and the positions to score."""

    ids: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    paths: list[tuple[np.ndarray, int]] = field(default_factory=list)
    """``(node index of each token of a sequence, how many leading nodes it shares with the one before)``."""
    scored: list[tuple[int, np.ndarray, list[int]]] = field(default_factory=list)
    """``(request index, nodes whose next-token distributions are scored, target ids)``."""


def _inputs(
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]], max_len: int
) -> list[tuple[tuple[int, ...], list[int]] | None]:
    """Per request: ``(tokens the model reads, continuation ids)``, or None when the continuation is empty
    (nothing to score)."""
    out: list[tuple[tuple[int, ...], list[int]] | None] = []
    for k, (ctx, cont) in enumerate(pairs):
        if not ctx:
            raise ValueError(f"request {k}: empty context ids (use the BOS/EOS id, as encode_pair does)")
        cont = list(cont)
        if len(cont) > max_len:
            raise ValueError(f"request {k}: continuation of {len(cont)} tokens > model context {max_len}")
        out.append((tuple((list(ctx) + cont)[:-1][-max_len:]), cont) if cont else None)
    return out


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _pack(inputs: list[tuple[tuple[int, ...], list[int]] | None], share: bool) -> list[_Row]:
    """Rows of prefix trees (``share``), else one row per request.

    Sorted by token ids, a sequence's longest common prefix with any earlier one is the one with its
    predecessor, so each row is built in one pass; a sequence that does not fit starts the next row."""
    live = [k for k, x in enumerate(inputs) if x is not None]
    if share:
        live.sort(key=lambda k: inputs[k][0])  # type: ignore[index]
    rows: list[_Row] = []
    row, previous, path = _Row(), (), np.zeros(0, dtype=np.int64)
    for k in live:
        seq, cont = inputs[k]  # type: ignore[misc]
        shared = _common_prefix(previous, seq) if share and row.ids else 0
        if row.ids and (not share or len(row.ids) + len(seq) - shared > ROW_TOKENS):
            rows.append(row)
            row, shared = _Row(), 0
        start = len(row.ids)
        path = np.concatenate([path[:shared], np.arange(start, start + len(seq) - shared)])
        row.ids += seq[shared:]
        row.positions += range(shared, len(seq))
        row.paths.append((path, shared))
        row.scored.append((k, path[len(seq) - len(cont) :], cont))
        previous = seq
    if row.ids:
        rows.append(row)
    return rows


def score_tokens(
    model: Any,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    batch_size: int,
    progress: Progress | None = None,
) -> list[tuple[float, int]]:
    """``(sum of log-probs of the continuation tokens, their count)`` for each ``(context_ids, cont_ids)``.

    Rows are sorted longest first and run in right-padded batches of ``batch_size`` rows under
    ``torch.inference_mode``; log-softmax is taken in float32 and summed in float64.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    packed = type(model).__name__ in PACKED_MODELS
    inputs = _inputs(pairs, model_max_length(model))
    rows = _pack(inputs, share=packed)
    rows.sort(key=lambda r: -len(r.ids))
    batches = [rows[s : s + batch_size] for s in range(0, len(rows), batch_size)]
    results: list[tuple[float, int]] = [(0.0, 0)] * len(inputs)
    with torch.inference_mode():
        for batch in progress(batches, total=len(batches), desc="score") if progress else batches:
            for k, total, n in _score_batch(model, batch, packed):
                results[k] = (total, n)
    return results


def _score_batch(model: Any, batch: list[_Row], packed: bool) -> list[tuple[int, float, int]]:
    device = next(model.parameters()).device
    width = max(len(r.ids) for r in batch)
    input_ids = np.zeros((len(batch), width), dtype=np.int64)
    position_ids = np.zeros_like(input_ids)
    rows, nodes, targets, slots, requests = [], [], [], [], []
    for r, row in enumerate(batch):
        input_ids[r, : len(row.ids)] = row.ids
        position_ids[r, : len(row.ids)] = row.positions
        for k, where, cont in row.scored:
            rows += [r] * len(cont)
            nodes.append(where)
            targets += cont
            slots += [len(requests)] * len(cont)
            requests.append((k, len(cont)))
    index = (torch.tensor(rows, device=device), torch.from_numpy(np.concatenate(nodes)).to(device))
    if packed:
        hidden = model.base_model(
            input_ids=torch.from_numpy(input_ids).to(device),
            attention_mask=_tree_mask(batch, width, next(model.parameters()).dtype).to(device),
            position_ids=torch.from_numpy(position_ids).to(device),
        ).last_hidden_state
        logits = model.get_output_embeddings()(hidden[index])
    else:
        lengths = torch.tensor([len(r.ids) for r in batch])
        attention = (torch.arange(width)[None] < lengths[:, None]).long()
        logits = model(input_ids=torch.from_numpy(input_ids).to(device), attention_mask=attention.to(device))
        logits = logits.logits[index]
    targets_t = torch.tensor(targets, dtype=torch.long, device=device)
    logprobs = logits.float().log_softmax(-1).gather(1, targets_t[:, None])[:, 0].double().cpu()
    totals = torch.zeros(len(requests), dtype=torch.float64).index_add_(0, torch.tensor(slots), logprobs)
    return [(k, total, n) for (k, n), total in zip(requests, totals.tolist(), strict=True)]


def _tree_mask(batch: list[_Row], width: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive 4-d mask in which every node sees itself and its ancestors (padding sees only itself)."""
    allowed = np.zeros((len(batch), width, width), dtype=bool)
    longest = max(len(p) for row in batch for p, _ in row.paths)
    below = np.tri(longest, dtype=bool)
    for r, row in enumerate(batch):
        for path, shared in row.paths:
            allowed[r][np.ix_(path[shared:], path)] = below[shared : len(path), : len(path)]
        allowed[r, range(len(row.ids), width), range(len(row.ids), width)] = True
    mask = torch.zeros((len(batch), 1, width, width), dtype=dtype)
    return mask.masked_fill_(torch.from_numpy(~allowed)[:, None], torch.finfo(dtype).min)
