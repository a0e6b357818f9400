"""Trainer features: WSD, gradient accumulation, preemption by signal + bit-identical resume, sinks."""

from __future__ import annotations

import json
import os
import signal
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from pretrain_fixtures import make_ctx

from core.errors import ConfigError
from pretrain import train as train_stage
from pretrain.data import TokenFolder, WindowLoader
from pretrain.metrics import GPU_PEAK_FLOPS, flops_per_token, peak_flops
from pretrain.model import ModelSpec, build_model
from pretrain.trainer import TrainConfig, TrainingPreempted, latest_checkpoint, lr_at, train

BASE = dict(steps=10, batch_size=8, seq_len=32, lr=1e-2, warmup_steps=2, log_every=1)


def _fresh(tokenized: Path, seed: int = 1) -> tuple[torch.nn.Module, WindowLoader]:
    data = TokenFolder(tokenized / "tokens")
    return build_model(ModelSpec.tiny(), 512, seed=seed), WindowLoader(
        data, 32, 8, "document_aligned", 1, seed
    )


def _losses(out: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (out / "log.jsonl").read_text().splitlines()]


def test_wsd_schedule() -> None:
    cfg = TrainConfig(
        steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1, schedule="wsd", decay_fraction=0.2
    )
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert all(lr_at(s, cfg) == 1.0 for s in range(10, 80))
    assert lr_at(99, cfg) == pytest.approx(0.1) and lr_at(80, cfg) == 1.0
    assert lr_at(89, cfg) == pytest.approx(1.0 - 0.9 * 9 / 19)
    with pytest.raises(ConfigError, match="schedule must be one of cosine, wsd; got 'linear'"):
        TrainConfig(steps=1, schedule="linear").validate()
    with pytest.raises(ConfigError, match="batch_size 8 must divide by grad_accum 3"):
        TrainConfig(steps=1, batch_size=8, grad_accum=3).validate()


def test_grad_accumulation_matches_one_big_batch(tmp_path: Path, tokenized_dir: Path) -> None:
    results = {}
    for accum in (1, 4):
        model, loader = _fresh(tokenized_dir)
        cfg = TrainConfig(**BASE, grad_accum=accum, checkpoint_every=0, peak_flops=1e12)
        fpt = flops_per_token(ModelSpec.tiny(), 512, 32)
        results[accum] = (
            train(model, loader, cfg, tmp_path / str(accum), flops_per_token=fpt),
            model.state_dict(),
        )
    assert np.allclose(_losses(tmp_path / "1"), _losses(tmp_path / "4"), rtol=1e-5, atol=1e-6)
    for name, tensor in results[1][1].items():
        assert torch.allclose(tensor, results[4][1][name], rtol=1e-4, atol=1e-5), name
    record = json.loads((tmp_path / "4/log.jsonl").read_text().splitlines()[-1])
    assert record["flops_per_s"] > 0 and record["mfu"] == pytest.approx(
        record["flops_per_s"] / 1e12, abs=1e-4
    )


def test_bf16_autocast_runs_on_cpu(tmp_path: Path, tokenized_dir: Path) -> None:
    """precision: bf16 autocasts the forward (the CUDA default); the loss stays close to fp32's."""
    losses = {}
    for precision in ("fp32", "bf16"):
        model, loader = _fresh(tokenized_dir)
        cfg = TrainConfig(**{**BASE, "steps": 3}, precision=precision, checkpoint_every=0)
        train(model, loader, cfg, tmp_path / precision)
        losses[precision] = _losses(tmp_path / precision)
    assert losses["bf16"] != losses["fp32"]
    assert np.allclose(losses["bf16"], losses["fp32"], atol=0.05)


class SignallingLoader:
    """Sends this process a real SIGUSR1 while batch ``at`` is read (a scheduler's preemption notice)."""

    def __init__(self, inner: WindowLoader, at: int) -> None:
        self.inner, self.at = inner, at

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        if step == self.at:
            os.kill(os.getpid(), signal.SIGUSR1)
        return self.inner.batch(step)


def test_signal_checkpoints_and_resume_is_bit_identical(tmp_path: Path, tokenized_dir: Path) -> None:
    cfg = TrainConfig(**BASE, grad_accum=2, schedule="wsd", decay_fraction=0.3, checkpoint_every=4)
    model, loader = _fresh(tokenized_dir)
    straight = train(model, loader, cfg, tmp_path / "a")
    before = signal.getsignal(signal.SIGUSR1)
    stopped_model, stopped_loader = _fresh(tokenized_dir)
    with pytest.raises(TrainingPreempted, match="stopped by a signal at step 7; checkpoint saved"):
        with train_stage.stop_on_signals() as stop:
            train(stopped_model, SignallingLoader(stopped_loader, at=6), cfg, tmp_path / "b", stop=stop)
    assert stop.signal == signal.SIGUSR1 and signal.getsignal(signal.SIGUSR1) == before
    assert latest_checkpoint(tmp_path / "b/checkpoints").name == "step-00000007.pt"
    resumed_model, resumed_loader = _fresh(tokenized_dir)
    resumed = train(resumed_model, resumed_loader, cfg, tmp_path / "b")
    a, b = model.state_dict(), resumed_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["final_loss"] == straight["final_loss"] and _losses(tmp_path / "a") == _losses(
        tmp_path / "b"
    )


def test_flops_and_peaks() -> None:
    tiny = ModelSpec.tiny()
    assert flops_per_token(tiny, 512, 32) == 6 * 37_024 + 12 * 2 * 32 * 32
    untied = ModelSpec.preset("tiny", {"tie_embeddings": False})
    assert flops_per_token(untied, 512, 32) == 6 * (untied.param_count(512) - 512 * 32) + 12 * 2 * 32 * 32
    assert (
        peak_flops("cpu", None) is None
        and peak_flops("cpu", 5e12) == 5e12
        and GPU_PEAK_FLOPS["H100"] == 989e12
    )


def _stage(out: Path, tokenized: Path, tokenizer: Path, **extra: object) -> dict:
    config = {
        "model": "tiny",
        "tokens": 8 * 32 * 4,
        "seq_len": 32,
        "batch_size": 8,
        "warmup_steps": 1,
        "log_every": 2,
        **extra,
    }
    return train_stage.run(
        make_ctx("train", out, config, {"tokenize": tokenized, "tokenizer": tokenizer}, seed=2)
    )


def test_tensorboard_and_wandb_sinks(
    tmp_path: Path, tokenized_dir: Path, tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="tensorboard: true needs the 'tensorboard' package"):
        _stage(tmp_path / "x", tokenized_dir, tokenizer_dir, tensorboard=True)
    with pytest.raises(ConfigError, match="wandb_project 'p' needs the 'wandb' package"):
        _stage(tmp_path / "y", tokenized_dir, tokenizer_dir, wandb_project="p")
    scalars: list[tuple[str, float, int]] = []
    wandb_calls: list[tuple] = []

    class Writer:
        def __init__(self, log_dir: str) -> None:
            scalars.append(("dir", 0.0, 0)) if log_dir.endswith("tensorboard") else None

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            scalars.append((tag, value, step))

        flush = close = lambda self: None

    class Run:
        def log(self, data: dict, step: int) -> None:
            wandb_calls.append(("log", step, sorted(data)))

        def finish(self) -> None:
            wandb_calls.append(("finish",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    monkeypatch.setitem(
        sys.modules, "wandb", types.SimpleNamespace(init=lambda **kw: wandb_calls.append(kw) or Run())
    )
    result = _stage(
        tmp_path / "z",
        tokenized_dir,
        tokenizer_dir,
        tensorboard=True,
        wandb_project="p",
        schedule="wsd",
        grad_accum=2,
    )
    assert result["steps"] == 4 and result["grad_accum"] == 2 and result["tokens_budget"] == 8 * 32 * 4
    assert scalars[0] == ("dir", 0.0, 0) and [s for t, _, s in scalars if t == "train/loss"] == [2, 4]
    init = wandb_calls[0]
    assert init["project"] == "p" and init["resume"] == "allow" and init["id"].startswith("t-")
    assert wandb_calls[1] == ("log", 2, ["flops_per_s", "loss", "lr", "tokens", "tokens_per_s"])
    assert wandb_calls[-1] == ("finish",)


def test_new_config_keys_are_checked(tmp_path: Path, tokenized_dir: Path, tokenizer_dir: Path) -> None:
    with pytest.raises(ConfigError, match="backend must be one of torch, nanotron; got 'jax'"):
        _stage(tmp_path, tokenized_dir, tokenizer_dir, backend="jax")
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16; got 'fp16'"):
        _stage(tmp_path, tokenized_dir, tokenizer_dir, precision="fp16")
    with pytest.raises(ConfigError, match="device is 'cuda' but torch.cuda.is_available"):
        _stage(tmp_path, tokenized_dir, tokenizer_dir, device="cuda")
    with pytest.raises(
        ConfigError,
        match="train.nanotron: unknown config key 'tpp' \\(did you mean 'tp'\\?\\); allowed: .*zero_stage",
    ):
        _stage(
            tmp_path,
            tokenized_dir,
            tokenizer_dir,
            backend="nanotron",
            packing="fixed",
            nanotron={"tp": 1, "tpp": 2},
        )


def _check_resume_is_bit_identical(tmp_path: Path, tokenized_dir: Path, cfg: TrainConfig) -> dict:
    """Train straight into ``a/``; stop another run by a signal at step 5 in ``b/`` and resume it there: the
    weights and final loss must match exactly. Returns the straight run's state dict."""
    model, loader = _fresh(tokenized_dir)
    straight = train(model, loader, cfg, tmp_path / "a")
    part_model, part_loader = _fresh(tokenized_dir)
    with pytest.raises(TrainingPreempted), train_stage.stop_on_signals() as stop:
        train(part_model, SignallingLoader(part_loader, at=4), cfg, tmp_path / "b", stop=stop)
    assert latest_checkpoint(tmp_path / "b/checkpoints").name == "step-00000005.pt"
    resumed_model, resumed_loader = _fresh(tokenized_dir)
    resumed = train(resumed_model, resumed_loader, cfg, tmp_path / "b")
    a, b = model.state_dict(), resumed_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["final_loss"] == straight["final_loss"]
    return a


def test_compiled_training_is_deterministic_and_resumes_bit_identically(
    tmp_path: Path, tokenized_dir: Path
) -> None:
    """compile: true trains through torch.compile; a straight run and a run stopped by a signal at step 5 and
    resumed (recompiling) end with the same weights; the compiled run is close to, not equal to, eager."""
    cfg = TrainConfig(**{**BASE, "steps": 8}, checkpoint_every=0, compile=True)
    a = _check_resume_is_bit_identical(tmp_path, tokenized_dir, cfg)
    eager_model, eager_loader = _fresh(tokenized_dir)
    train(eager_model, eager_loader, TrainConfig(**{**BASE, "steps": 8}, checkpoint_every=0), tmp_path / "c")
    assert np.allclose(_losses(tmp_path / "a"), _losses(tmp_path / "c"), atol=1e-3)
    assert not all(torch.equal(a[k], v) for k, v in eager_model.state_dict().items())


def test_compiled_cpu_training_runs_with_deterministic_algorithms(
    tmp_path: Path, tokenized_dir: Path
) -> None:
    """Compiled on CPU, the loop runs (and inductor compiles) under ``torch.use_deterministic_algorithms``:
    without it inductor accumulates some gradients (the embedding's) with parallel atomic adds, and under load
    from other processes two runs of the quickstart's config ended with different weights. Eager runs and the
    caller's setting are left alone."""
    seen: list[bool] = []

    class Spy(WindowLoader):
        def batch(self, step: int):
            seen.append(torch.are_deterministic_algorithms_enabled())
            return super().batch(step)

    model, loader = _fresh(tokenized_dir)
    spy = Spy(loader.data, 32, 8, "document_aligned", 1, 1)
    train(model, spy, TrainConfig(**{**BASE, "steps": 2}, checkpoint_every=0, compile=True), tmp_path / "c")
    assert seen == [True, True] and not torch.are_deterministic_algorithms_enabled()
    seen.clear()
    model, _ = _fresh(tokenized_dir)
    train(model, spy, TrainConfig(**{**BASE, "steps": 2}, checkpoint_every=0), tmp_path / "e")
    assert seen == [False, False]


def test_cpu_bf16_computes_attention_in_fp32_and_resumes_bit_identically(
    tmp_path: Path, tokenized_dir: Path, monkeypatch
) -> None:
    """precision: bf16 on CPU (the quickstart's setting): attention runs in fp32 inside the autocast region
    and the model is handed back saying ``sdpa``; compiled, a run stopped at step 5 and resumed ends with the
    same weights as a straight one, close to an fp32 run."""
    from pretrain import model as model_module

    seen: list[tuple[torch.dtype, bool]] = []
    real = model_module._sdpa_fp32

    def spy(module, query, key, value, *args, **kwargs):
        seen.append((value.dtype, torch.is_autocast_enabled("cpu")))
        return real(module, query, key, value, *args, **kwargs)

    with monkeypatch.context() as patch:  # eager: a spy inside a compiled graph would change the graph
        patch.setattr(model_module, "_sdpa_fp32", spy)
        model, loader = _fresh(tokenized_dir)
        train(model, loader, TrainConfig(**{**BASE, "steps": 2}, precision="bf16"), tmp_path / "eager")
    assert seen and set(seen) == {(torch.bfloat16, True)}  # called inside autocast, on bf16 projections
    assert model.config._attn_implementation == "sdpa"
    cfg = TrainConfig(**{**BASE, "steps": 8}, checkpoint_every=0, compile=True, precision="bf16")
    _check_resume_is_bit_identical(tmp_path, tokenized_dir, cfg)
    fp32_model, fp32_loader = _fresh(tokenized_dir)
    train(fp32_model, fp32_loader, TrainConfig(**{**BASE, "steps": 8}, checkpoint_every=0), tmp_path / "c")
    assert np.allclose(_losses(tmp_path / "a"), _losses(tmp_path / "c"), atol=0.05)


def test_bf16_on_a_cpu_without_bf16_units_warns(
    tmp_path: Path, tokenized_dir: Path, monkeypatch, caplog
) -> None:
    import pretrain.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "cpu_has_bf16", lambda: False)
    model, loader = _fresh(tokenized_dir)
    with caplog.at_level("WARNING", logger="propensity"):
        train(model, loader, TrainConfig(**{**BASE, "steps": 1}, precision="bf16"), tmp_path / "w")
    assert "bf16 is emulated there and slower than fp32; set train.precision: fp32" in caplog.text


def test_compile_failure_is_a_config_error(tmp_path: Path, tokenized_dir: Path, monkeypatch) -> None:
    """A machine without a working compiler gets a message naming the packages and the switch."""

    from torch._inductor import exc

    class Failing(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: object) -> object:
            raise exc.InductorError(RuntimeError("cc1plus: not found"), "")

    monkeypatch.setattr(torch, "compile", lambda net: Failing(net))
    model, loader = _fresh(tokenized_dir)
    with pytest.raises(ConfigError, match=r"torch.compile failed .*g\+\+ python3-dev.*train.compile: false"):
        train(model, loader, TrainConfig(**{**BASE, "steps": 2}, compile=True), tmp_path / "x")
