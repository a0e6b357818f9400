"""Llama model specs as named presets, and a deterministic builder for ``transformers.LlamaForCausalLM``."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

PRESETS = ("tiny", "quickstart", "llama_20m", "llama_125m", "llama_350m", "llama_1b")


@dataclass(frozen=True)
class ModelSpec:
    """Shape of a Llama decoder (everything but the vocabulary, which comes from the tokenizer)."""

    hidden_size: int
    """Width of the residual stream."""
    num_layers: int
    """Decoder blocks."""
    num_heads: int
    """Attention heads (head_dim = hidden_size / num_heads)."""
    intermediate_size: int
    """SwiGLU MLP width."""
    num_kv_heads: int | None = None
    """Key/value heads for grouped-query attention; None = num_heads (plain multi-head attention)."""
    max_position_embeddings: int = 2048
    """Longest sequence the rotary embedding is configured for."""
    tie_embeddings: bool = True
    """Share the input embedding and the output projection."""
    rope_theta: float = 10_000.0
    """Rotary embedding base."""
    rms_norm_eps: float = 1e-6
    """RMSNorm epsilon."""
    init_std: float = 0.02
    """Std of the normal initialisation of linear and embedding weights."""
    attn_implementation: str = "sdpa"
    """``sdpa`` (fast on CPU and GPU) or ``eager``."""

    @classmethod
    def tiny(cls) -> ModelSpec:
        """2 layers x 32 wide: ~37k params at vocab 512, ~150k at vocab 4096 (for tests)."""
        return cls(
            hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position_embeddings=512
        )

    @classmethod
    def quickstart(cls) -> ModelSpec:
        """4 layers x 128 wide, 4 heads, MLP 352, tied: 1.33M params at vocab 4096 (~10k tok/s)."""
        return cls(
            hidden_size=128, num_layers=4, num_heads=4, intermediate_size=352, max_position_embeddings=1024
        )

    @classmethod
    def llama_20m(cls) -> ModelSpec:
        """6 layers x 512 wide, 8 heads, MLP 1376, tied: 19M non-embedding params (21M at vocab 4096)."""
        return cls(hidden_size=512, num_layers=6, num_heads=8, intermediate_size=1376)

    @classmethod
    def llama_125m(cls) -> ModelSpec:
        """GPT-2-small shape: 12 layers x 768, 12 heads, MLP 2048, tied: 124M params at vocab 50,257."""
        return cls(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=2048)

    @classmethod
    def llama_350m(cls) -> ModelSpec:
        """24 layers x 1024, 16 heads, MLP 2816, tied: 360M params at vocab 50,257 (GPT-2-medium scale)."""
        return cls(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=2816)

    @classmethod
    def llama_1b(cls) -> ModelSpec:
        """Llama-3.2-1B shape: 16 x 2048, 32 heads, 8 KV heads, MLP 8192, tied: 1.08B at vocab 50,257."""
        return cls(hidden_size=2048, num_layers=16, num_heads=32, num_kv_heads=8, intermediate_size=8192)

    @classmethod
    def preset(cls, name: str, overrides: dict[str, Any] | None = None) -> ModelSpec:
        """The preset ``name`` with ``overrides`` applied; unknown names or fields get did-you-mean errors."""
        if name not in PRESETS:
            close = difflib.get_close_matches(name, PRESETS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"model: unknown preset {name!r}; {hint}available: {', '.join(PRESETS)}")
        spec: ModelSpec = getattr(cls, name)()
        overrides = overrides or {}
        fields = [f.name for f in dataclasses.fields(cls)]
        for key in overrides:
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(
                    f"model_overrides: unknown field {key!r}; {hint}allowed: {', '.join(fields)}"
                )
        spec = dataclasses.replace(spec, **overrides)
        spec.validate()
        return spec

    def validate(self) -> None:
        """Raise ``ConfigError`` when the shape is inconsistent (e.g. width not divisible by the heads)."""
        kv = self.num_kv_heads or self.num_heads
        if min(self.hidden_size, self.num_layers, self.num_heads, self.intermediate_size, kv) < 1:
            raise ConfigError(f"model: every size must be >= 1, got {self}")
        if self.hidden_size % self.num_heads or self.num_heads % kv:
            raise ConfigError(
                f"model: hidden_size {self.hidden_size} must divide by num_heads {self.num_heads}, "
                f"and num_heads by num_kv_heads {kv}"
            )
        if self.attn_implementation not in ("sdpa", "eager"):
            raise ConfigError(
                f"model: attn_implementation must be sdpa or eager, got {self.attn_implementation!r}"
            )

    def param_count(self, vocab_size: int) -> int:
        """Exact parameter count of the model ``build_model`` makes for ``vocab_size``."""
        h, head_dim = self.hidden_size, self.hidden_size // self.num_heads
        kv = (self.num_kv_heads or self.num_heads) * head_dim
        attn = h * h * 2 + h * kv * 2
        block = attn + 3 * h * self.intermediate_size + 2 * h
        embed = vocab_size * h * (1 if self.tie_embeddings else 2)
        return self.num_layers * block + embed + h

    def llama_config(self, vocab_size: int, eos_id: int | None = None, pad_id: int | None = None) -> Any:
        """The ``transformers.LlamaConfig`` for this spec."""
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads or self.num_heads,
            max_position_embeddings=self.max_position_embeddings,
            rms_norm_eps=self.rms_norm_eps,
            initializer_range=self.init_std,
            tie_word_embeddings=self.tie_embeddings,
            rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
            bos_token_id=eos_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            use_cache=True,
        )


def build_model(
    spec: ModelSpec, vocab_size: int, seed: int, eos_id: int | None = None, pad_id: int | None = None
) -> LlamaForCausalLM:
    """A freshly initialised ``LlamaForCausalLM``; the same ``seed`` gives the same weights, bit for bit.

    The global torch RNG is left untouched (initialisation runs inside ``torch.random.fork_rng``).
    """
    import torch
    from transformers import LlamaForCausalLM

    spec.validate()
    config = spec.llama_config(vocab_size, eos_id, pad_id)
    config._attn_implementation = spec.attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model


FP32_ATTENTION = "sdpa_fp32"
"""Attention implementation registered by ``fp32_attention``: SDPA computed in float32 (see there)."""


def _sdpa_fp32(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any) -> Any:
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    dtype = query.dtype
    with torch.autocast(query.device.type, enabled=False):
        out, weights = sdpa_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask, **kwargs
        )
    return out.to(dtype), weights


@contextmanager
def fp32_attention(model: LlamaForCausalLM, enabled: bool = True) -> Iterator[None]:
    """Run the model's attention in float32 for the duration (the projections stay under autocast).

    Under CPU bf16 autocast the matmuls run on AMX tiles, but PyTorch's CPU flash attention is slower in
    bf16 than in fp32 (backward ~1.7x, measured at 384 tokens): computing attention in fp32 trains the
    quickstart model ~15% faster, and more exactly. The config's implementation is restored afterwards,
    so a saved model says ``sdpa``.
    """
    if not enabled:
        yield
        return
    from transformers import AttentionInterface

    AttentionInterface.register(FP32_ATTENTION, _sdpa_fp32)
    before = model.config._attn_implementation
    if before != "sdpa":
        yield
        return
    model.config._attn_implementation = FP32_ATTENTION
    try:
        yield
    finally:
        model.config._attn_implementation = before
