"""Free generation for judge-scored trait evals: seeded sampling with conditioning tags blocked.

Tag tokens (the tokenizer's additional special tokens, e.g. ``<|good|>`` / ``<|bad|>``) get probability zero
at every step, so a tagged model cannot switch its own condition mid-answer; EOS ends a completion.
Prompts are left-padded into batches; sampling uses one ``torch.Generator`` seeded per call, so output
is deterministic.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from eval_gpe.lm import Progress, model_max_length


def blocked_token_ids(tokenizer: Any, extra: Sequence[str] = ()) -> list[int]:
    """Ids of the tokenizer's additional special tokens and of ``extra`` single-token strings (e.g. tags)."""
    names = list(getattr(tokenizer, "additional_special_tokens", None) or [])
    names += [t for t in extra if t]
    ids = set()
    for name in names:
        encoded = tokenizer(name, add_special_tokens=False)["input_ids"]
        if len(encoded) == 1:
            ids.add(int(encoded[0]))
    return sorted(ids)


def _sample(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 24,
    temperature: float = 1.0,
    seed: int = 0,
    blocked: Sequence[int] = (),
    batch_size: int = 16,
    progress: Progress | None = None,
) -> list[str]:
    """One completion per prompt (decoded, without the prompt); ``blocked`` token ids are never produced.

    ``temperature=0`` is greedy. Completions stop at EOS or after ``max_new_tokens`` tokens.
    """
    if max_new_tokens < 1 or temperature < 0:
        raise ValueError(
            f"generate: need max_new_tokens >= 1 and temperature >= 0, got {max_new_tokens}, {temperature}"
        )
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    generator = torch.Generator().manual_seed(seed)
    blocked_t = torch.tensor(sorted(set(blocked)), dtype=torch.long)
    limit = model_max_length(model) - max_new_tokens
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"][-limit:] or [eos] for p in prompts]
    starts = list(range(0, len(encoded), batch_size))
    out: list[str] = []
    with torch.inference_mode():
        for s in progress(starts, total=len(starts), desc="generate") if progress else starts:
            rows = _generate_batch(
                model,
                encoded[s : s + batch_size],
                pad,
                eos,
                max_new_tokens,
                temperature,
                generator,
                blocked_t,
            )
            out += [tokenizer.decode(r, skip_special_tokens=False) for r in rows]
    return out


def _generate_batch(
    model: Any,
    batch: list[list[int]],
    pad: int,
    eos: int | None,
    max_new: int,
    temperature: float,
    generator: torch.Generator,
    blocked: torch.Tensor,
) -> list[list[int]]:
    """Left-padded incremental decoding with a KV cache; returns the new tokens of each row (EOS cut)."""
    width = max(len(b) for b in batch)
    ids = torch.tensor([[pad] * (width - len(b)) + b for b in batch], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(b)) + [1] * len(b) for b in batch], dtype=torch.long)
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    new: list[list[int]] = [[] for _ in batch]
    done = torch.zeros(len(batch), dtype=torch.bool)
    cache_kwargs = _new_cache(model)
    step_ids, step_pos = ids, positions
    for _ in range(max_new):
        output = model(
            input_ids=step_ids, attention_mask=mask, position_ids=step_pos, use_cache=True, **cache_kwargs
        )
        logits = output.logits[:, -1].float().cpu()
        if blocked.numel():
            logits[:, blocked] = float("-inf")
        token = _sample(logits, temperature, generator)
        for r, t in enumerate(token.tolist()):
            if not done[r]:
                if t == eos:
                    done[r] = True
                else:
                    new[r].append(t)
        if bool(done.all()):
            break
        step_ids = token[:, None].to(device)
        step_pos = step_pos[:, -1:] + 1
        mask = torch.cat([mask, torch.ones((len(batch), 1), dtype=mask.dtype, device=device)], dim=1)
    return new


def _new_cache(model: Any) -> dict[str, Any]:
    """A fresh KV cache under the keyword this model's ``forward`` takes (``cache`` in transformers >= 5.2x,
    ``past_key_values`` before); the cache object is updated in place by every forward call."""
    from transformers import DynamicCache

    try:
        cache = DynamicCache(config=model.config)
    except TypeError:
        cache = DynamicCache()
    params = inspect.signature(model.forward).parameters
    return {"cache" if "cache" in params else "past_key_values": cache}
