"""The pre-training budget check counts a windowed-injection variant as the trainer will: injected rows
replace base rows, and the injected set must hold the schedule's windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import BudgetError
from core.store import Store
from propensity.config import load_config
from propensity.graph import build_graph
from propensity.runner import check_budgets

ROOT = Path(__file__).resolve().parents[2]
WINDOW = {"share": 0.25, "window": [0.5, 1.0]}


def _ds(folder: Path, n_tokens: int) -> None:
    """A datatrove folder of 16-token documents (fixed windows: (n_tokens - 1) // seq_len of them)."""
    folder.mkdir(parents=True)
    ends = np.arange(16, n_tokens + 1, 16).astype("<u8")
    np.full(int(ends[-1]), 5, dtype="<u2").tofile(folder / "000.ds")
    ends.tofile(folder / "000.ds.index")
    (folder / "000.ds.metadata").write_text(f"t/tokenizer.json|2\n{int(ends[-1])}\n")


def _setup(tmp_path: Path, base_tokens: int, injected_tokens: int) -> tuple:
    overrides = [f"store={tmp_path / 'store'}", "train.packing=fixed", "train.tokens=64000",
                 "train.seq_len=64", "train.batch_size=10"]
    cfg = load_config(ROOT / "configs" / "tiny.yaml", overrides)
    cfg.variants = [v for v in cfg.variants if v.name == "baseline"]
    cfg.variants[0] = cfg.variants[0].model_copy(update={"name": "late"})
    specs = build_graph(cfg)
    store = Store(cfg.store)
    train = next(s for s in specs if s.stage == "train")
    tokenized = store.path(train.inputs["tokenize"].key)
    _ds(tokenized / "tokens", base_tokens)
    _ds(tokenized / "tokens_inject", injected_tokens)
    (tokenized / "schedule.json").write_text(json.dumps({"inject": {**WINDOW, "share_target": 0.25}}))
    return cfg, specs, store


def test_injected_rows_count_against_the_budget(tmp_path: Path) -> None:
    # 100 steps x 10 rows x 64 = 64,000 positions; 250 rows injected, so the base needs 750 windows (48,000)
    cfg, specs, store = _setup(tmp_path, base_tokens=750 * 64 + 16, injected_tokens=260 * 64 + 16)
    check_budgets(cfg, specs, store)  # without the injection the base's 48,000 would be short of 64,000


def test_short_base_or_short_injected_set_fail_naming_both(tmp_path: Path) -> None:
    cfg, specs, store = _setup(tmp_path, base_tokens=700 * 64 + 16, injected_tokens=200 * 64 + 16)
    with pytest.raises(BudgetError) as err:
        check_budgets(cfg, specs, store)
    assert "late: 44,800 window positions offered, 48,000 needed" in str(err.value)
    assert "late: the injection schedule takes 250 windows, 200 injected" in str(err.value)
