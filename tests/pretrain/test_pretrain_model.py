"""Model presets: exact parameter counts, did-you-mean errors, seeded initialisation."""

from __future__ import annotations

import pytest
import torch

from core.errors import ConfigError
from pretrain.model import PRESETS, ModelSpec, build_model


@pytest.mark.parametrize(
    ("name", "vocab", "params"),
    [
        ("tiny", 512, 37_024),
        ("quickstart", 4096, 1_328_256),
        ("llama_20m", 4096, 21_076_480),
        ("llama_125m", 50_257, 123_551_232),
        ("llama_350m", 50_257, 359_794_688),
        ("llama_1b", 50_257, 1_076_072_448),
    ],
)
def test_preset_parameter_counts(name: str, vocab: int, params: int) -> None:
    spec = ModelSpec.preset(name)
    assert spec.param_count(vocab) == params
    if name in ("tiny", "quickstart"):
        model = build_model(spec, vocab, seed=0)
        assert sum(p.numel() for p in model.parameters()) == params
        assert model.config.tie_word_embeddings and model.config.vocab_size == vocab


def test_overrides_and_errors() -> None:
    spec = ModelSpec.preset("tiny", {"num_layers": 3, "tie_embeddings": False})
    assert spec.num_layers == 3 and spec.param_count(100) == sum(
        p.numel() for p in build_model(spec, 100, 0).parameters()
    )
    with pytest.raises(
        ConfigError, match="unknown preset 'quickstrat'; did you mean 'quickstart'\\? available: "
    ):
        ModelSpec.preset("quickstrat")
    with pytest.raises(ConfigError, match="unknown field 'num_layer'; did you mean 'num_layers'"):
        ModelSpec.preset("tiny", {"num_layer": 3})
    with pytest.raises(ConfigError, match="must divide by num_heads 3"):
        ModelSpec.preset("tiny", {"num_heads": 3})
    assert set(PRESETS) == {"tiny", "quickstart", "llama_20m", "llama_125m", "llama_350m", "llama_1b"}


def test_seeded_init_is_bit_identical_and_leaves_global_rng() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = (build_model(ModelSpec.tiny(), 64, seed=s) for s in (1, 1, 2))
    assert torch.equal(torch.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.embed_tokens.weight"], sc["model.embed_tokens.weight"])
    assert a.config._attn_implementation == "sdpa"


def test_large_preset_counts_match_transformers_on_meta_device() -> None:
    """param_count of the 1B GQA preset equals what transformers builds (on the meta device: no memory)."""
    from transformers import LlamaForCausalLM

    spec = ModelSpec.preset("llama_1b")
    with torch.device("meta"):
        model = LlamaForCausalLM(spec.llama_config(50_257, eos_id=0, pad_id=1))
    assert sum(p.numel() for p in model.parameters()) == spec.param_count(50_257) == 1_076_072_448
    assert model.config.num_key_value_heads == 8
