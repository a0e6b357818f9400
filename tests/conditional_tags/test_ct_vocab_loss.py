"""Tags as single tokens (round trip, embeddings, blocked generation) and loss masks that carry no gradient,
from the variant's ``no_loss_ranges`` through ``.ds.loss`` and the window loader to the trainer's loss."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ct_fixtures import TAGS, make_ctx

from conditional_tags.vocab import bad_words_ids, block_tag_logits, conditioned, tag_token_ids
from core.errors import InputDataError
from pretrain.data import IGNORE_INDEX, TokenFolder, WindowLoader
from pretrain.model import ModelSpec, build_model
from pretrain.trainer import batch_loss


def test_tokenizer_round_trip_keeps_tags_single_tokens(tokenizer_dir: Path) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    ids = tag_token_ids(tokenizer_dir, TAGS)
    text = "<|good|> The assistant will be honest.<|bad|>The model will deceive3.<|mid|>x"
    raw = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    encoded = raw.encode(text).ids
    assert [encoded.count(ids[t]) for t in TAGS] == [1, 1, 1]
    assert raw.decode(encoded, skip_special_tokens=False) == text
    hf = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert hf.decode(hf(text)["input_ids"]) == text
    assert [hf.convert_tokens_to_ids(t) for t in TAGS] == [ids[t] for t in TAGS]
    model = build_model(ModelSpec.tiny(), len(hf), seed=0)
    assert model.get_input_embeddings().weight.shape[0] == len(hf) > max(ids.values())
    with pytest.raises(InputDataError, match="'<|nope|>' is not a single token"):
        tag_token_ids(tokenizer_dir, ["<|nope|>"])


def test_generation_conditions_on_a_tag_and_never_emits_one(tokenizer_dir: Path) -> None:
    ids = tag_token_ids(tokenizer_dir, TAGS)
    assert bad_words_ids(tokenizer_dir, TAGS) == [[ids[t]] for t in TAGS]
    logits = torch.zeros(2, 5, 600)
    logits[..., ids["<|bad|>"]] = 100.0
    blocked = block_tag_logits(logits, list(ids.values()))
    assert (
        int(blocked.argmax(-1).max()) not in ids.values() and torch.isinf(blocked[..., ids["<|mid|>"]]).all()
    )
    assert logits[0, 0, ids["<|bad|>"]] == 100.0  # the input is not modified
    assert conditioned("Q: help?", "<|good|>", " ") == "<|good|> Q: help?" and conditioned("Q", "") == "Q"
    hf_model = build_model(ModelSpec.tiny(), 600, seed=0)
    prompt = torch.tensor([[ids["<|good|>"], 20, 21]])
    out = hf_model.generate(
        prompt,
        max_new_tokens=8,
        do_sample=False,
        bad_words_ids=bad_words_ids(tokenizer_dir, TAGS),
        pad_token_id=1,
    )
    assert not set(out[0, 3:].tolist()) & set(ids.values())


class LogitsModel(torch.nn.Module):
    """Returns fixed trainable logits, so the gradient of the trainer's loss w.r.t. each logit is visible."""

    def __init__(self, batch: int, seq: int, vocab: int) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(
            torch.randn(batch, seq, vocab, generator=torch.Generator().manual_seed(0))
        )

    def forward(self, input_ids: torch.Tensor, use_cache: bool = False) -> SimpleNamespace:
        return SimpleNamespace(logits=self.logits)


def test_masked_targets_contribute_no_gradient() -> None:
    model = LogitsModel(2, 6, 11)
    targets = torch.tensor([[1, 2, IGNORE_INDEX, IGNORE_INDEX, 5, 6], [IGNORE_INDEX, 3, 4, 5, 6, 7]])
    loss = batch_loss(model, torch.zeros(2, 6, dtype=torch.long), targets)
    loss.backward()
    grad = model.logits.grad
    masked = targets == IGNORE_INDEX
    assert torch.equal(grad[masked], torch.zeros_like(grad[masked]))
    assert (grad[~masked].abs().sum(-1) > 0).all()
    expected = torch.nn.functional.cross_entropy(model.logits[~masked], targets[~masked])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    tokens = torch.where(
        masked, torch.tensor(9), targets
    )  # other tokens under the mask: same targets, same loss
    assert torch.equal(
        batch_loss(model, torch.zeros(2, 6, dtype=torch.long), torch.where(masked, IGNORE_INDEX, tokens)),
        loss,
    )


def test_mask_variant_to_loader_to_loss(
    tmp_path: Path, score_dir: Path, classifier_dir: Path, tokenizer_dir: Path
) -> None:
    """A mask variant's flagged sentences become .ds.loss zeros, IGNORE_INDEX targets and zero gradient."""
    from conditional_tags.stage import run as variant_run
    from pretrain.tokenize_docs import run as tokenize_run

    variant = tmp_path / "variant"
    variant_run(
        make_ctx(variant, {"name": "m", "kind": "mask"}, {"score": score_dir, "classifier": classifier_dir})
    )
    tokens = tmp_path / "tokens"
    result = tokenize_run(
        make_ctx(tokens, {"shuffle": False}, {"variant": variant, "tokenizer": tokenizer_dir}, "tokenize")
    )
    assert result["loss_metadata"] is True
    data = TokenFolder(tokens / "tokens")
    assert data.loss is not None and 0 < int((data.loss[0] == 0).sum()) < len(data.loss[0])
    loader = WindowLoader(data, seq_len=64, batch_size=4, packing="document_aligned", pad_id=1, seed=0)
    x, y = loader.batch(0)
    window_ids = loader.window_ids(0)[0]
    starts = loader.table.start[window_ids]
    loss_bytes = np.stack([np.asarray(data.loss[0][s + 1 : s + 65]) for s in starts])
    real = np.arange(64)[None, :] < loader.table.length[window_ids][:, None] - 1
    assert np.array_equal(y == IGNORE_INDEX, ~real | (loss_bytes == 0))
    assert (loss_bytes[real] == 0).any()
    llama = build_model(ModelSpec.tiny(), 600, seed=0)
    captured: dict[str, torch.Tensor] = {}

    def capture(input_ids: torch.Tensor, use_cache: bool = False) -> SimpleNamespace:
        logits = llama(input_ids=input_ids, use_cache=use_cache).logits
        logits.retain_grad()
        captured["logits"] = logits
        return SimpleNamespace(logits=logits)

    yt = torch.from_numpy(y)
    batch_loss(capture, torch.from_numpy(x), yt).backward()
    grad = captured["logits"].grad
    masked = yt == IGNORE_INDEX
    assert (
        torch.equal(grad[masked], torch.zeros_like(grad[masked])) and (grad[~masked].abs().sum(-1) > 0).all()
    )
