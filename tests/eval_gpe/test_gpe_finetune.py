from __future__ import annotations

import copy

import pytest
import torch
from gpe_fakes import fake_narrow_texts

from eval_gpe.finetune import batch_order, encode_examples, finetune


def _params(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_finetune_changes_model_deterministically(tiny) -> None:
    model, tok = tiny
    before = _params(model)
    texts = fake_narrow_texts("medicine", seed=0, n=20)
    runs = [
        finetune(model, tok, texts, steps=5, lr=1e-3, batch_size=4, seed=3, in_place=False) for _ in range(2)
    ]
    # the input model is untouched with in_place=False
    assert all(torch.equal(a, b) for a, b in zip(before, _params(model), strict=True))
    first, second = (_params(r.model) for r in runs)
    assert any(not torch.equal(a, b) for a, b in zip(before, first, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))  # bit-identical
    assert runs[0].losses == runs[1].losses and len(runs[0].losses) == 5
    assert not runs[0].model.training
    other = finetune(model, tok, texts, steps=5, lr=1e-3, batch_size=4, seed=4, in_place=False)
    assert other.losses != runs[0].losses


def test_finetune_learns_the_narrow_texts(tiny) -> None:
    model, tok = tiny
    texts = fake_narrow_texts("medicine", seed=0, n=8)
    result = finetune(copy.deepcopy(model), tok, texts, steps=12, lr=1e-2, batch_size=4, seed=0)
    assert result.losses[-1] < result.losses[0] - 1.0


def test_examples_end_with_eos_and_batches_cycle(tiny) -> None:
    _, tok = tiny
    examples = encode_examples(tok, ["It is", "The cook"], max_len=128)
    assert all(e[-1] == tok.eos_token_id for e in examples)
    assert examples[0][:-1] == tok("It is", add_special_tokens=False)["input_ids"]
    order = batch_order(5, batch_size=2, steps=6, seed=0)
    assert len(order) == 6 and all(len(b) == 2 for b in order)
    flat = sum(order, [])
    assert sorted(flat[:5]) == list(range(5)) and sorted(flat[5:10]) == list(range(5))  # epochs
    assert order == batch_order(5, batch_size=2, steps=6, seed=0)


def test_finetune_rejects_bad_input(tiny) -> None:
    model, tok = tiny
    with pytest.raises(ValueError, match="text 1 is empty"):
        finetune(model, tok, ["ok", "  "], steps=1, lr=1e-3, batch_size=1, seed=0, in_place=False)
    with pytest.raises(ValueError, match="steps >= 1"):
        finetune(model, tok, ["ok"], steps=0, lr=1e-3, batch_size=1, seed=0, in_place=False)
