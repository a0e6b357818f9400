"""Token-level log-likelihood scoring of a causal LM, with continuations of one context packed into one row.

A *group* is one context and the continuations to score after it. For Llama-family models (``PACKED_MODELS``)
a group becomes one row ``context + cont_1[:-1] + cont_2[:-1] + ...`` with explicit position ids (every
continuation starts at position ``len(context)``) and a 4-d attention mask in which a continuation sees the
context and its own earlier tokens only. That computes exactly what separate requests would, while the
shared context is run once (two-option forced choice: ~40% fewer tokens), and the LM head runs only at scored
positions. Other models get one right-padded row per request and the full forward pass.

Over-long requests keep their last ``max_length + 1`` tokens, as lm-evaluation-harness does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

Progress = Callable[..., Iterable]
"""A progress wrapper like ``StageContext.progress(it, total=..., desc=...)``."""

PACKED_MODELS = frozenset(
    {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Olmo2ForCausalLM"}
)
"""Models whose logits are exactly ``lm_head(base_model(...).last_hidden_state)`` and that take position ids
and a custom 4-d attention mask; all others are scored one request per row."""

Group = tuple[list[int], list[list[int]]]


def model_max_length(model: Any) -> int:
    """The model's context length in tokens (``max_position_embeddings``, else 2048)."""
    return int(getattr(model.config, "max_position_embeddings", None) or 2048)


def _split_groups(
    groups: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]], max_len: int, packed: bool
) -> list[tuple[int, Group]]:
    """``(index of the group's first result, group)`` rows; unpackable groups become one row per request."""
    rows, first = [], 0
    for g, (ctx, conts) in enumerate(groups):
        if not ctx:
            raise ValueError(
                f"request group {g}: empty context ids (use the BOS/EOS id, as encode_pair does)"
            )
        conts = [list(c) for c in conts]
        too_long = [len(c) for c in conts if len(c) > max_len]
        if too_long:
            raise ValueError(
                f"request group {g}: continuation of {too_long[0]} tokens > model context {max_len}"
            )
        fits = all(len(ctx) + len(c) - 1 <= max_len for c in conts)
        if packed and fits:
            rows.append((first, (list(ctx), conts)))
        else:
            for j, cont in enumerate(conts):
                whole = (list(ctx) + cont)[-(max_len + 1) :]
                rows.append((first + j, (whole[: len(whole) - len(cont)], [cont])))
        first += len(conts)
    return rows


def score_groups(
    model: Any,
    groups: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]],
    batch_size: int,
    progress: Progress | None = None,
) -> list[tuple[float, int]]:
    """``(sum of log-probs, token count)`` of every continuation of every group, flattened in input order.

    Rows are sorted longest first and run in right-padded batches of ``batch_size`` under
    ``torch.inference_mode``; log-softmax is taken in float32 and summed in float64.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    packed = type(model).__name__ in PACKED_MODELS
    rows = _split_groups(groups, model_max_length(model), packed)
    order = sorted(range(len(rows)), key=lambda r: (-_width(rows[r][1]), r))
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    results: list[tuple[float, int]] = [(0.0, 0)] * sum(len(conts) for _, conts in groups)
    with torch.inference_mode():
        for batch in progress(batches, total=len(batches), desc="score") if progress else batches:
            sums = _score_batch(model, [rows[r][1] for r in batch], packed)
            for r, row_sums in zip(batch, sums, strict=True):
                first, (_, conts) = rows[r]
                for j, total in enumerate(row_sums):
                    results[first + j] = (total, len(conts[j]))
    return results


def _width(group: Group) -> int:
    ctx, conts = group
    return len(ctx) + sum(max(len(c) - 1, 0) for c in conts)


def _layout(group: Group) -> tuple[list[int], list[int], list[int], list[list[int]]]:
    """Input ids, position ids, segment ids (0 context, j+1 continuation j) and scored positions per cont."""
    ctx, conts = group
    ids, pos, seg, scored = list(ctx), list(range(len(ctx))), [0] * len(ctx), []
    for j, cont in enumerate(conts):
        start = len(ids)
        body = cont[:-1]
        ids += body
        pos += range(len(ctx), len(ctx) + len(body))
        seg += [j + 1] * len(body)
        scored.append(([len(ctx) - 1] + list(range(start, start + len(body)))) if cont else [])
    return ids, pos, seg, scored


def _score_batch(model: Any, groups: list[Group], packed: bool) -> list[list[float]]:
    device = next(model.parameters()).device
    layouts = [_layout(g) for g in groups]
    width = max(len(ids) for ids, *_ in layouts)
    input_ids = torch.zeros((len(groups), width), dtype=torch.long)
    position_ids = torch.zeros_like(input_ids)
    segments = torch.full_like(input_ids, -1)
    rows, positions, targets, slots, n_slots = [], [], [], [], 0
    for r, ((ids, pos, seg, scored), (_, conts)) in enumerate(zip(layouts, groups, strict=True)):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        position_ids[r, : len(ids)] = torch.tensor(pos)
        segments[r, : len(ids)] = torch.tensor(seg)
        for cont, where in zip(conts, scored, strict=True):
            rows += [r] * len(cont)
            positions += where
            targets += cont
            slots += [n_slots] * len(cont)
            n_slots += 1
    rows_t, pos_t = torch.tensor(rows, dtype=torch.long), torch.tensor(positions, dtype=torch.long)
    if packed:
        mask = _packed_mask(segments, next(model.parameters()).dtype)
        hidden = model.base_model(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=position_ids.to(device),
        ).last_hidden_state
        logits = model.get_output_embeddings()(hidden[rows_t.to(device), pos_t.to(device)])
    else:
        full = model(input_ids=input_ids.to(device), attention_mask=(segments >= 0).long().to(device)).logits
        logits = full[rows_t.to(device), pos_t.to(device)]
    targets_t = torch.tensor(targets, dtype=torch.long, device=device)
    logprobs = logits.float().log_softmax(-1).gather(1, targets_t[:, None])[:, 0].double().cpu()
    totals = torch.zeros(n_slots, dtype=torch.float64).index_add_(
        0, torch.tensor(slots, dtype=torch.long), logprobs
    )
    flat, out = totals.tolist(), []
    for _, conts in groups:
        out.append(flat[: len(conts)])
        flat = flat[len(conts) :]
    return out


def _packed_mask(segments: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive 4-d mask: causal, and a continuation token sees the context and its own segment only."""
    width = segments.shape[1]
    idx = torch.arange(width)
    causal = idx[:, None] >= idx[None, :]
    q, k = segments[:, :, None], segments[:, None, :]
    allowed = causal[None] & ((k == 0) | (k == q)) & (q >= 0) & (k >= 0)
    allowed |= torch.eye(width, dtype=torch.bool)[
        None
    ]  # padding rows attend to themselves (no empty softmax)
    zero = torch.zeros((), dtype=dtype)
    return torch.where(allowed, zero, torch.finfo(dtype).min)[:, None]


def score_tokens(
    model: Any,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    batch_size: int,
    progress: Progress | None = None,
) -> list[tuple[float, int]]:
    """``(sum of log-probs of the continuation tokens, their count)`` for each ``(context_ids, cont_ids)``."""
    return score_groups(model, [(ctx, [cont]) for ctx, cont in pairs], batch_size, progress)
