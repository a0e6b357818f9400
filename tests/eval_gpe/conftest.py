"""Fixtures: a tiny Llama + BPE tokenizer built here (no hub), a fake synthetic generator, a fake source."""

from __future__ import annotations

import gzip
import json
import sys
import types
from pathlib import Path

import pytest
from gpe_fakes import (
    CORPUS,
    DOMAINS,
    SPECIALS,
    fake_benign_texts,
    fake_items,
    fake_narrow_texts,
)


@pytest.fixture
def fake_synth(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Install a fake ``synth`` module for the duration of a test."""
    mod = types.ModuleType("synth")
    mod.DOMAINS = DOMAINS
    mod.forced_choice_items = fake_items
    mod.narrow_finetune_texts = fake_narrow_texts
    mod.benign_finetune_texts = fake_benign_texts
    monkeypatch.setitem(sys.modules, "synth", mod)
    return mod


@pytest.fixture(scope="session")
def train_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `train` artifact folder holding a tiny random Llama and its BPE tokenizer in ``model/``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 5, trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        additional_special_tokens=["<|good|>", "<|bad|>"],
    )
    out = tmp_path_factory.mktemp("train") / "model"
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        eos_token_id=hf_tok.eos_token_id,
        pad_token_id=hf_tok.pad_token_id,
        bos_token_id=None,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    hf_tok.save_pretrained(out)
    return out.parent


@pytest.fixture(scope="session")
def tiny(train_dir: Path):
    """(model, tokenizer) loaded from the tiny train folder, float32, eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(train_dir / "model", dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(train_dir / "model")


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    """A `source` folder whose held-out file has 20 good docs, one bad JSON line and one doc without text."""
    (tmp_path / "source" / "heldout").mkdir(parents=True)
    lines = [json.dumps({"id": f"h{i}", "text": CORPUS[i % len(CORPUS)] * (1 + i % 3)}) for i in range(20)]
    lines.insert(3, "{not json")
    lines.insert(7, json.dumps({"id": "x", "metadata": {}}))
    with gzip.open(tmp_path / "source" / "heldout" / "background.jsonl.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    (tmp_path / "source" / "source.json").write_text(
        json.dumps(
            {
                "format": "jsonl",
                "paths": [],
                "text_key": "text",
                "id_key": "id",
                "heldout": "heldout/background.jsonl.gz",
            }
        )
    )
    return tmp_path / "source"
