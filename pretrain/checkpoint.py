"""Resumable checkpoints of the torch trainer: ``checkpoints/step-<8 digits>.pt``, written atomically.

A checkpoint holds the model (unwrapped from DDP), the optimizer, every RNG the run touches (torch CPU, CUDA
when present, numpy and Python ``random`` for good measure) and the trainer state (step, tokens seen, recent
losses, ...). The learning-rate schedule is a pure function of the step and so is the data position
(``WindowLoader.batch(step)``), so nothing else is needed for a bit-identical resume on CPU.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_PREFIX = "step-"


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint with the highest step in ``folder`` (None when there is none)."""
    found = sorted(folder.glob(f"{CHECKPOINT_PREFIX}*.pt")) if folder.is_dir() else []
    return found[-1] if found else None


def rng_state() -> dict[str, Any]:
    """Every RNG state a training step may read, as tensors and plain data (``weights_only``-loadable)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    np_state = np.random.get_state()
    state["numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    state["numpy_rest"] = [int(np_state[2]), int(np_state[3]), float(np_state[4])]
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured (CUDA states only when this machine has the same GPUs)."""
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    pos, has_gauss, gauss = state["numpy_rest"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any]
) -> Path:
    """Write ``step-<step>.pt`` atomically (tmp + rename), then delete older checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{CHECKPOINT_PREFIX}{state['step']:08d}.pt"
    tmp = path.with_suffix(".tmp")
    payload = {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(), **state}
    torch.save(payload, tmp)
    os.replace(tmp, path)
    for old in folder.glob(f"{CHECKPOINT_PREFIX}*.pt"):
        if old != path:
            old.unlink()
    return path


def load_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model, optimizer and RNGs from ``path`` (``weights_only=True``); return the trainer state."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - zip, unpickling and weights-only errors: one clear message
        from core.errors import InputDataError

        first_line = str(err).splitlines()[0][:120] if str(err) else ""
        raise InputDataError(
            f"checkpoint {path} cannot be loaded ({type(err).__name__}: {first_line}); it is corrupt or "
            "not a checkpoint of this trainer: delete it to restart from an earlier checkpoint "
            "or from scratch"
        ) from err
    model.load_state_dict(payload.pop("model"))
    opt.load_state_dict(payload.pop("optimizer"))
    rng = payload.pop("rng")
    if isinstance(rng, torch.Tensor):  # checkpoints written before the RNG dict: torch CPU state only
        torch.set_rng_state(rng)
    else:
        set_rng_state(rng)
    return payload
