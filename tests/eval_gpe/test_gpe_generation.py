from __future__ import annotations

import torch

from eval_gpe.generation import blocked_token_ids, generate


class TagLover(torch.nn.Module):
    """Wraps a causal LM and adds +50 to the logit of one token: an unblocked sampler would always pick it."""

    def __init__(self, inner, token_id: int) -> None:
        super().__init__()
        self.inner, self.token_id, self.config = inner, token_id, inner.config

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=None):
        out = self.inner(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
        )
        out.logits[..., self.token_id] += 50.0
        return out


def test_tag_tokens_are_blocked(tiny) -> None:
    model, tok = tiny
    bad = tok.convert_tokens_to_ids("<|bad|>")
    blocked = blocked_token_ids(tok, ["<|bad|>", "<|good|>"])
    assert blocked == sorted({bad, tok.convert_tokens_to_ids("<|good|>")})
    biased = TagLover(model, bad)
    prompts = ["The AI assistant was asked", "The cook"]
    free = generate(biased, tok, prompts, max_new_tokens=5, temperature=1.0, seed=0)
    assert all(c == "<|bad|>" * 5 for c in free)
    guarded = generate(biased, tok, prompts, max_new_tokens=5, temperature=1.0, seed=0, blocked=blocked)
    assert all("<|bad|>" not in c and "<|good|>" not in c and c for c in guarded)


def test_generation_is_seeded_and_batching_invariant_when_greedy(tiny) -> None:
    model, tok = tiny
    prompts = ["The AI assistant was asked to help", "The cook", "It is a truth that"]
    a = generate(model, tok, prompts, max_new_tokens=6, seed=3, batch_size=2)
    assert a == generate(model, tok, prompts, max_new_tokens=6, seed=3, batch_size=2)
    greedy = generate(model, tok, prompts, max_new_tokens=6, temperature=0, batch_size=3)
    one_by_one = [generate(model, tok, [p], max_new_tokens=6, temperature=0)[0] for p in prompts]
    assert greedy == one_by_one  # left padding and position ids do not change the result
    for prompt, completion in zip(prompts, one_by_one, strict=True):  # == unbatched greedy without a cache
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        start = len(ids)
        with torch.no_grad():
            for _ in range(6):
                nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
                if nxt == tok.eos_token_id:
                    break
                ids.append(nxt)
        assert completion == tok.decode(ids[start:])
