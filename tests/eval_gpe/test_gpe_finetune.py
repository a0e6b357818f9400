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


def test_examples_start_like_a_document_end_with_eos_and_batches_cycle(tiny) -> None:
    _, tok = tiny
    examples = encode_examples(tok, ["It is", "The cook"], max_len=128)
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    assert all(e[0] == start and e[-1] == tok.eos_token_id for e in examples)
    assert examples[0][1:-1] == tok("It is", add_special_tokens=False)["input_ids"]
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


def test_checkpoint_callbacks_see_the_model_at_those_steps(tiny) -> None:
    model, tok = tiny
    texts = fake_narrow_texts("medicine", seed=0, n=8)
    seen: list[tuple[int, bool, float]] = []

    def on_step(step, m) -> None:
        seen.append((step, m.training, float(next(m.parameters()).detach().sum())))

    result = finetune(
        model,
        tok,
        texts,
        steps=4,
        lr=1e-3,
        batch_size=2,
        seed=0,
        in_place=False,
        on_step=on_step,
        callback_steps=[1, 3],
    )
    assert [s for s, _, _ in seen] == [1, 3] and not any(t for _, t, _ in seen)
    assert seen[0][2] != seen[1][2]
    plain = finetune(model, tok, texts, steps=4, lr=1e-3, batch_size=2, seed=0, in_place=False)
    assert plain.losses == result.losses  # scoring at checkpoints does not disturb training


def test_lora_trains_adapters_and_merges(tiny) -> None:
    pytest.importorskip("peft")
    from eval_gpe.registry import LoraSpec

    model, tok = tiny
    before = _params(model)
    texts = fake_narrow_texts("medicine", seed=0, n=8)
    result = finetune(
        model, tok, texts, steps=6, lr=1e-2, batch_size=4, seed=0, in_place=False, lora=LoraSpec(r=4, alpha=8)
    )
    assert type(result.model).__name__ == "LlamaForCausalLM"  # merged back into a plain model
    after = dict(result.model.named_parameters())
    names = [n for n, _ in model.named_parameters()]
    assert sorted(after) == sorted(names)
    changed = [n for n, b in zip(names, before, strict=True) if not torch.equal(after[n], b)]
    assert changed and all(("proj" in n) for n in changed)  # embeddings and norms untouched
    assert result.losses[-1] < result.losses[0]
