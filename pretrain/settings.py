"""The train stage's settings, declared once: the stage fills what a config leaves out from these defaults, and
the experiment config composes this model (``propensity.config.TrainConfig``) instead of re-declaring it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from core.names import Strict


class TrainSettings(Strict):
    """Pretraining settings of one run, identical for every variant of an experiment (token-matched)."""

    tokens: int = Field(2_000_000, ge=1000, description="Token budget per variant (the same for all variants).")
    seq_len: int = Field(128, ge=8, description="Training sequence length.")
    batch_size: int = Field(32, ge=1, description="Sequences per optimizer step.")
    lr: float = Field(3e-3, gt=0, description="Peak learning rate.")
    warmup_steps: int = Field(50, ge=0, description="Linear warmup steps.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final learning rate as a fraction of the peak.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay on matrices.")
    grad_clip: float = Field(1.0, gt=0, description="Gradient norm clip.")
    packing: Literal["document_aligned", "document_packed", "fixed"] = Field(
        "document_aligned", description="document_aligned: every window starts at a document start (tags in view), "
        "padded after the last whole document; document_packed: the same, with windows filled best-fit from the "
        "whole file (little padding); fixed: consecutive windows."
    )
    checkpoint_every: int = Field(200, ge=1, description="Steps between checkpoints.")
    allow_repeat: bool = Field(False, description="Allow repeating data when a variant has fewer tokens than the "
                               "budget (otherwise an error).")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step (batch_size is the global batch).")
    schedule: Literal["cosine", "wsd"] = Field("cosine", description="cosine decay, or warmup-stable-decay.")
    decay_fraction: float = Field(0.2, gt=0, le=1, description="wsd: share of steps in the final decay.")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on GPU and on CPUs "
                                                       "with native bf16 (AMX, AVX512-BF16; decided when the graph is "
                                                       "planned, recorded in the stage key), else fp32.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Training device.")
    peak_flops: float | None = Field(None, gt=0, description="Peak FLOP/s per device for the MFU estimate.")
    tensorboard: bool = Field(False, description="Write TensorBoard event files (needs tensorboard).")
    wandb_project: str | None = Field(None, description="Log to this W&B project (needs wandb).")
    backend: Literal["torch", "nanotron"] = Field("torch", description="torch: the built-in trainer; nanotron: "
                                                  "GPU clusters (see docs/pretrain.md).")
    nanotron: dict[str, Any] = Field(default_factory=dict, description="nanotron settings: dp, tp, pp, nodes, ...")
    log_every: int = Field(10, ge=1, description="Steps between log lines.")
    document_mask: bool = Field(False, description="Attend within documents only (positions restart at each "
                                "document; torch backend): a packed window's documents no longer see each "
                                "other's text and tags.")
    compile: bool = Field(False, description="torch.compile the model (CPU: needs g++ and python3-dev; 1.2-1.3x "
                          "faster on the quickstart model after 25-60 s of compiling; part of the run's identity).")


TRAIN_DEFAULTS: dict[str, Any] = TrainSettings().model_dump(mode="json")
"""Every setting at its default, as plain data (what the stage fills in)."""


class TokenizerSettings(Strict):
    """The tokenizer stage's settings: train a byte-level BPE on the source, or adopt a pretrained tokenizer."""

    kind: Literal["bpe", "pretrained"] = Field("bpe", description="bpe: train one on the source; pretrained: load.")
    vocab_size: int = Field(4096, ge=300, le=262_144, description="BPE vocabulary size (kind=bpe).")
    max_docs: int = Field(20_000, ge=10, description="Documents sampled to train the BPE (kind=bpe).")
    path: str | None = Field(None, description="Tokenizer folder or hub id (kind=pretrained).")


TOKENIZER_DEFAULTS: dict[str, Any] = TokenizerSettings().model_dump(mode="json")
"""Every tokenizer setting at its default, as plain data (what the stage fills in)."""
