"""Training: loss goes down, the saved model reloads exactly, seeds and resumes are bit-identical."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pretrain_fixtures import make_ctx

from core.errors import BudgetError, ConfigError
from pretrain import train as train_stage
from pretrain.data import IGNORE_INDEX, TokenFolder, WindowLoader
from pretrain.model import ModelSpec, build_model
from pretrain.trainer import (
    TrainConfig,
    batch_loss,
    document_positions,
    latest_checkpoint,
    lr_at,
    make_optimizer,
    sum_loss,
    train,
)

CONFIG = {
    "model": "tiny",
    "tokens": 16 * 32 * 20,
    "seq_len": 32,
    "batch_size": 16,
    "warmup_steps": 3,
    "checkpoint_every": 5,
    "log_every": 2,
    "lr": 1e-2,
}


def _run(out: Path, tokenized: Path, tokenizer: Path, seed: int = 7, **overrides: object) -> dict:
    ctx = make_ctx(
        "train", out, {**CONFIG, **overrides}, {"tokenize": tokenized, "tokenizer": tokenizer}, seed=seed
    )
    return train_stage.run(ctx)


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, tokenized_dir: Path, tokenizer_dir: Path
) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("train")
    return out, _run(out, tokenized_dir, tokenizer_dir)


def test_loss_decreases_and_result_is_complete(trained: tuple[Path, dict]) -> None:
    out, result = trained
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(2, 21, 2))
    assert log[-1]["loss"] < log[0]["loss"] - 0.5
    assert result["steps"] == 20 and result["window_tokens"] == 20 * 16 * 32
    assert 0 < result["tokens_seen"] <= result["window_tokens"]
    assert result["final_loss"] < result["initial_loss"] - 0.5
    assert result["initial_loss"] == pytest.approx(math.log(512), abs=0.3)
    assert result["parameters"] == 37_024 and result["vocab_size"] == 512 and result["tokens_per_s"] > 0
    assert 0 < result["epochs"] < 1 and result["packing"] == "document_aligned"
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000020.pt"]


def test_saved_model_reloads_with_identical_logits(trained: tuple[Path, dict], tokenizer_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = trained
    hf = AutoModelForCausalLM.from_pretrained(str(out / "model")).eval()
    tok = AutoTokenizer.from_pretrained(str(out / "model"))
    assert len(tok) == 512 and tok.convert_tokens_to_ids("<|good|>") == 2
    ref = build_model(ModelSpec.tiny(), 512, seed=0)
    ref.load_state_dict(torch.load(out / "checkpoints/step-00000020.pt", weights_only=True)["model"])
    ids = torch.tensor([tok("<|good|> the model refuses to copy weights")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(hf(ids).logits, ref.eval()(ids).logits)
    assert (out / "model/model.safetensors").is_file()
    assert hf.config.eos_token_id == 0 and hf.config.pad_token_id == 1


def test_same_seed_same_bytes_other_seed_differs(
    tmp_path: Path, trained: tuple[Path, dict], tokenized_dir: Path, tokenizer_dir: Path
) -> None:
    out, first = trained
    again = _run(tmp_path / "a", tokenized_dir, tokenizer_dir)
    weights = "model/model.safetensors"
    assert (tmp_path / "a" / weights).read_bytes() == (out / weights).read_bytes()
    assert again["final_loss"] == first["final_loss"]
    _run(tmp_path / "b", tokenized_dir, tokenizer_dir, seed=8)
    assert (tmp_path / "b" / weights).read_bytes() != (out / weights).read_bytes()


class CrashingLoader:
    """A loader that dies when asked for batch ``crash_at`` (a simulated crash mid-run)."""

    def __init__(self, inner: WindowLoader, crash_at: int) -> None:
        self.inner, self.crash_at = inner, crash_at

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        if step == self.crash_at:
            raise RuntimeError("simulated crash")
        return self.inner.batch(step)


def test_resume_after_crash_is_bit_identical(tmp_path: Path, tokenized_dir: Path) -> None:
    cfg = TrainConfig(
        steps=12, batch_size=8, seq_len=32, lr=1e-2, warmup_steps=2, checkpoint_every=5, log_every=1
    )

    def fresh() -> tuple[torch.nn.Module, WindowLoader]:
        data = TokenFolder(tokenized_dir / "tokens")
        return build_model(ModelSpec.tiny(), 512, seed=1), WindowLoader(
            data, 32, 8, "fixed", pad_id=1, seed=1
        )

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    model, loader = fresh()
    straight = train(model, loader, cfg, tmp_path / "a")
    crashed_model, crashed_loader = fresh()
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(crashed_model, CrashingLoader(crashed_loader, crash_at=8), cfg, tmp_path / "b")
    assert latest_checkpoint(tmp_path / "b/checkpoints").name == "step-00000005.pt"
    resumed_model, resumed_loader = fresh()
    resumed = train(resumed_model, resumed_loader, cfg, tmp_path / "b")
    a, b = model.state_dict(), resumed_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["final_loss"] == straight["final_loss"] and resumed["steps"] == 12
    losses = [
        [json.loads(x)["loss"] for x in (tmp_path / d / "log.jsonl").read_text().splitlines()] for d in "ab"
    ]
    assert losses[0] == losses[1] and len(losses[0]) == 12


def test_reentering_a_finished_stage_saves_the_same_model(
    tmp_path: Path, trained: tuple[Path, dict], tokenized_dir: Path, tokenizer_dir: Path
) -> None:
    import shutil

    out, first = trained
    shutil.copytree(out / "checkpoints", tmp_path / "checkpoints")
    shutil.copy(out / "log.jsonl", tmp_path / "log.jsonl")
    again = _run(tmp_path, tokenized_dir, tokenizer_dir)
    assert again["steps"] == 20 and again["final_loss"] == first["final_loss"]
    assert (tmp_path / "model/model.safetensors").read_bytes() == (
        out / "model/model.safetensors"
    ).read_bytes()


def test_lr_schedule() -> None:
    cfg = TrainConfig(steps=101, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0) and lr_at(100, cfg) == pytest.approx(0.1)
    assert lr_at(55, cfg) == pytest.approx(0.55)
    decay = [lr_at(s, cfg) for s in range(10, 101)]
    assert all(x >= y for x, y in zip(decay, decay[1:], strict=False))


def test_weight_decay_only_on_matrices_and_masked_loss() -> None:
    model = build_model(ModelSpec.tiny(), 64, seed=0)
    decay, no_decay = make_optimizer(model, TrainConfig(steps=1, weight_decay=0.1)).param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    x = torch.randint(0, 64, (2, 6))
    y = torch.randint(0, 64, (2, 6))
    masked = y.clone()
    masked[:, 3:] = IGNORE_INDEX
    with torch.no_grad():
        logits = model(input_ids=x).logits
        expected = torch.nn.functional.cross_entropy(logits[:, :3].reshape(-1, 64), y[:, :3].reshape(-1))
        assert batch_loss(model, x, masked).item() == pytest.approx(expected.item(), rel=1e-6)
        assert batch_loss(model, x, torch.full_like(y, IGNORE_INDEX)).item() == 0.0


def test_config_errors(tmp_path: Path, tokenized_dir: Path, tokenizer_dir: Path) -> None:
    with pytest.raises(ConfigError, match="unknown config key 'packng'.*did you mean 'packing'"):
        _run(tmp_path, tokenized_dir, tokenizer_dir, packng="fixed")
    with pytest.raises(ConfigError, match="packing must be one of fixed, document_aligned, document_packed; got 'doc'"):
        _run(tmp_path, tokenized_dir, tokenizer_dir, packing="doc")
    with pytest.raises(ConfigError, match="tokens must be an integer >= 512"):
        _run(tmp_path, tokenized_dir, tokenizer_dir, tokens=100)
    with pytest.raises(ConfigError, match="exceeds the model's max_position_embeddings 512"):
        _run(tmp_path, tokenized_dir, tokenizer_dir, seq_len=1024, tokens=16 * 1024)
    with pytest.raises(BudgetError, match="allow_repeat"):
        _run(tmp_path, tokenized_dir, tokenizer_dir, tokens=16 * 32 * 2000)


def test_document_mask_trains_each_document_as_if_alone() -> None:
    """In a packed window [EOS a a a EOS b b b b], document b's loss under ``document_mask`` equals its loss
    as a window of its own, whatever document a holds; without the mask it depends on a."""
    assert document_positions(torch.tensor([[5, 0, 7, 8, 0, 9]]), 0).tolist() == [[0, 0, 1, 2, 0, 1]]
    model = build_model(ModelSpec.tiny(), 64, seed=0, eos_id=0, pad_id=1).eval()
    doc_b = torch.tensor([0, 11, 12, 13, 14])
    alone = doc_b[None, :-1], doc_b[None, 1:]
    def packed(doc_a: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        window = torch.cat([torch.tensor(doc_a), doc_b])
        ignore = torch.full((len(doc_a),), IGNORE_INDEX)
        targets = torch.cat([ignore, window[len(doc_a) + 1 :]])  # the targets read at b's positions only
        return window[None, :-1], targets[None]

    with torch.no_grad():
        reference = sum_loss(model, *alone, eos_id=0).item()
        for doc_a in ([0, 21, 22, 23], [0, 31, 32, 33]):
            assert sum_loss(model, *packed(doc_a), eos_id=0).item() == pytest.approx(reference, rel=1e-5)
        unmasked = [sum_loss(model, *packed(a)).item() for a in ([0, 21, 22, 23], [0, 31, 32, 33])]
    assert unmasked[0] != pytest.approx(unmasked[1], rel=1e-5)


def test_document_mask_stage_runs_and_nanotron_refuses_it(
    tmp_path: Path, tokenized_dir: Path, tokenizer_dir: Path
) -> None:
    result = _run(tmp_path / "masked", tokenized_dir, tokenizer_dir, document_mask=True, tokens=16 * 32 * 6)
    assert result["document_mask"] is True and result["final_loss"] < result["initial_loss"]
    with pytest.raises(ConfigError, match="document_mask: needs the torch trainer"):
        _run(tmp_path / "nt", tokenized_dir, tokenizer_dir, document_mask=True, backend="nanotron")
    with pytest.raises(ConfigError, match="document_mask must be true or false"):
        _run(tmp_path / "bad", tokenized_dir, tokenizer_dir, document_mask="yes")
