"""The narrow finetune: a short, deterministic finetune (full, or LoRA via peft) of a causal LM on texts.

Each text is tokenized without special tokens, EOS is appended, and it is its own example (no packing), so
the model learns the narrow behaviour itself rather than document-boundary artefacts. Batches are
right-padded with the loss masked on padding; texts are cycled in seeded shuffled epochs for a fixed number
of AdamW steps at a constant learning rate. On CPU the result is bit-identical for the same seed.
``on_step(step, model)`` runs at chosen steps (the tamper curve scores the model there, in eval mode).
LoRA adapters are merged into the weights at the end, so the result is a plain model again.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from eval_gpe.lm import Progress, model_max_length


@dataclass
class FinetuneResult:
    """The finetuned model and its training curve."""

    model: Any
    losses: list[float]
    """Mean token loss of each step."""
    n_examples: int
    n_tokens: int
    """Tokens (EOS included) in the distinct examples."""


def encode_examples(tokenizer: Any, texts: Sequence[str], max_len: int) -> list[list[int]]:
    """Each text as document-start token (BOS, else EOS) + token ids + EOS, truncated to ``max_len``.

    The leading token makes a finetune text look like a pretraining document and like the forced-choice
    prompts (``scoring.document_start``). Empty texts are an error.
    """
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ValueError(
            "finetune: the tokenizer has no EOS token (eos_token_id is None); one is appended per text"
        )
    bos = getattr(tokenizer, "bos_token_id", None)
    lead = [eos if bos is None else bos]
    examples = []
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"finetune: text {i} is empty or not a string: {text!r}")
        examples.append((lead + tokenizer(text, add_special_tokens=False)["input_ids"] + [eos])[:max_len])
    return examples


def batch_order(n_examples: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """Example indices per step: seeded shuffled epochs, concatenated and cut into ``steps`` batches."""
    rng = np.random.default_rng(seed)
    needed = steps * batch_size
    flat: list[int] = []
    while len(flat) < needed:
        flat += rng.permutation(n_examples).tolist()
    return [flat[s * batch_size : (s + 1) * batch_size] for s in range(steps)]


def _collate(examples: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, e in enumerate(examples):
        ids[r, : len(e)] = torch.tensor(e, dtype=torch.long)
        mask[r, : len(e)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, labels


def finetune(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    in_place: bool = True,
    max_grad_norm: float = 1.0,
    progress: Progress | None = None,
    lora: Any = None,
    on_step: Callable[[int, Any], None] | None = None,
    callback_steps: Sequence[int] = (),
) -> FinetuneResult:
    """Finetune ``model`` on ``texts`` for ``steps`` AdamW steps; returns the model in eval mode.

    The model is trained in place (``in_place=False`` trains a deep copy instead). Nothing is saved.
    ``lora`` (an ``eval_gpe.registry.LoraSpec``) trains adapters only; ``on_step(s, model)`` is called after
    step ``s`` for each ``s`` in ``callback_steps``.
    """
    if steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(
            f"finetune: need steps >= 1, batch_size >= 1, lr > 0; got {steps}, {batch_size}, {lr}"
        )
    if not texts:
        raise ValueError("finetune: no texts to train on")
    if not in_place:
        model = copy.deepcopy(model)
    examples = encode_examples(tokenizer, texts, model_max_length(model))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    if lora is not None:
        model = _with_lora(model, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    order = batch_order(len(examples), batch_size, steps, seed)
    wanted = set(callback_steps)
    for step, batch in enumerate(progress(order, total=steps, desc="finetune") if progress else order, 1):
        ids, mask, labels = _collate([examples[i] for i in batch], pad_id)
        loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        losses.append(float(loss.detach()))
        if on_step is not None and step in wanted:
            model.eval()
            on_step(step, model.get_base_model() if lora is not None else model)
            model.train()
    if lora is not None:
        model = model.merge_and_unload()
    model.eval()
    return FinetuneResult(model, losses, len(examples), sum(len(e) for e in examples))


def _with_lora(model: Any, lora: Any) -> Any:
    """``model`` wrapped with LoRA adapters (peft); a clear error when peft is not installed."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ImportError(
            "finetune.method 'lora' needs peft (pip install 'peft>=0.13' torch==<your pinned torch>); "
            "use method 'full' otherwise"
        ) from exc
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)
