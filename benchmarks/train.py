"""Training throughput on one model, batch and data, in one run: our trainer vs the limit vs the HF Trainer.

1. ours: ``pretrain.trainer.train`` (the train stage's loop: schedule, clipping, logging, final checkpoint)
2. bare: a hand-written torch loop over the same ``WindowLoader`` batches (forward, cross-entropy, backward,
   clip, AdamW step, nothing else): the limit. Target: ours >= 0.95x bare.
3. hf: ``transformers.Trainer`` on the same windows (``input_ids`` + ``labels``), same optimizer settings, no
   saving or reporting. Target: ours >= 1.3x hf. Needs ``accelerate`` (``pip install 'accelerate>=1.1'``); the
   leg is skipped with a note when it is missing.

Defaults: the quickstart's training setting (batch 10 x 384, compiled, bf16 where the device computes it
natively: CUDA, or a CPU with AMX / AVX512-BF16). ``--no-compile --precision fp32`` measures eager fp32.

``--compile`` (the default) runs every leg through ``torch.compile`` (ours: ``train.compile``; bare: the model
and its loss compiled as one function; hf: ``TrainingArguments(torch_compile=True)``) and adds a fourth leg,
``hf_eager``: the HF Trainer at its defaults (no compile), for the ratio a user switching trainers sees.

``--precision bf16`` (what ``auto`` picks on such devices) runs every leg under bf16 autocast (ours:
``train.precision: bf16``; bare: ``torch.autocast`` around the loss, with attention in fp32 on CPU as ours
does, so it stays the limit; hf: ``TrainingArguments(bf16=True)``, which autocasts the whole model, attention
included).

Each leg builds the same seeded model and trains ``--steps`` steps; tokens/s counts steps after the first
``--warmup`` (steady state) and is the best of ``--repeat`` runs. Legs alternate within each repeat, so load
from other processes hits all of them alike; the ratios are printed twice: best against best, and the median
over repeats of the ratio within a repeat (on a shared 2-core machine single legs vary by ~10%). Data: a
synthetic datatrove ``.ds`` folder (random tokens, documents of 20-400 tokens), packing ``fixed``.

Usage: ``python benchmarks/train.py [--model quickstart] [--batch 10] [--seq 384] [--steps 40] [--warmup 5]
[--repeat 3] [--threads N] [--device cpu|cuda] [--no-compile] [--precision auto|fp32|bf16]``. Prints one
table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

VOCAB = 4096


def make_data(folder: Path, tokens: int, seed: int = 0) -> Path:
    """A datatrove-layout ``.ds`` folder of ``tokens`` random ids in documents of 20-400 tokens."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 400, size=tokens // 20)
    ends = np.cumsum(lengths)
    ends = ends[ends <= tokens].astype("<u8")
    ids = rng.integers(2, VOCAB, size=int(ends[-1])).astype("<u2")
    ids[ends - 1] = 0
    folder.mkdir(parents=True, exist_ok=True)
    ids.tofile(folder / "000.ds")
    ends.tofile(folder / "000.ds.index")
    (folder / "000.ds.metadata").write_text(f"bench/tokenizer.json|2\n{len(ids)}\n")
    return folder


def setup(args: argparse.Namespace, data: Path) -> tuple[Any, Any, Any]:
    """A fresh seeded model on the device, the loader and the ``TrainConfig`` every leg shares."""
    from pretrain.data import TokenFolder, WindowLoader
    from pretrain.model import ModelSpec, build_model
    from pretrain.trainer import TrainConfig

    model = build_model(ModelSpec.preset(args.model), VOCAB, seed=0, eos_id=0, pad_id=1).to(args.device)
    loader = WindowLoader(TokenFolder(data), args.seq, args.batch, "fixed", pad_id=1, seed=0)
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch,
        seq_len=args.seq,
        lr=1e-3,
        warmup_steps=2,
        checkpoint_every=0,
        log_every=args.warmup,
        precision=args.precision,
        compile=args.compile,
    )
    return model, loader, cfg


def run_ours(args: argparse.Namespace, data: Path, work: Path) -> float:
    """Steady-state tokens/s of ``pretrain.trainer.train`` (from its log records after the first)."""
    from pretrain.distributed import Dist
    from pretrain.trainer import train

    model, loader, cfg = setup(args, data)
    out = Path(tempfile.mkdtemp(dir=work))
    train(model, loader, cfg, out, dist=Dist(device=args.device))
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    intervals = [
        (r["step"] - p["step"]) * cfg.batch_size * cfg.seq_len
        for p, r in zip(records, records[1:], strict=False)
    ]
    seconds = sum(n / r["tokens_per_s"] for n, r in zip(intervals, records[1:], strict=True))
    return sum(intervals) / seconds  # records after the first cover steps warmup+1 .. steps


def run_bare(args: argparse.Namespace, data: Path, work: Path) -> float:
    """Steady-state tokens/s of the plainest correct loop over the same batches."""
    import torch
    import torch.nn.functional as F

    from pretrain.model import fp32_attention
    from pretrain.trainer import lr_at, make_optimizer

    model, loader, cfg = setup(args, data)
    opt = make_optimizer(model, cfg)
    model.train()
    bf16 = args.precision == "bf16"

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(args.device, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=x, use_cache=False).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=-100)

    loss_fn = torch.compile(loss_of) if args.compile else loss_of
    start = 0.0
    with fp32_attention(model, bf16 and args.device == "cpu"):
        for step in range(cfg.steps):
            if step == args.warmup:
                start = time.perf_counter()
            x, y = (torch.from_numpy(a).to(args.device) for a in loader.batch(step))
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            loss = loss_fn(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
        loss.item()
    return (cfg.steps - args.warmup) * cfg.batch_size * cfg.seq_len / (time.perf_counter() - start)


def run_hf(args: argparse.Namespace, data: Path, work: Path, compile: bool | None = None) -> float | None:
    """Steady-state tokens/s of ``transformers.Trainer`` (None when ``accelerate`` is missing); ``compile``
    (default ``--compile``) sets ``torch_compile``."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    try:
        import accelerate  # noqa: F401
    except ImportError:
        return None
    model, loader, cfg = setup(args, data)

    class Windows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return cfg.steps * cfg.batch_size

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            x, y = loader.batch(i // cfg.batch_size)
            row = torch.from_numpy(x[i % cfg.batch_size])
            return {"input_ids": row, "labels": torch.where(row == 1, -100, row)}

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a: Any, **k: Any) -> None:
            stamps.append(time.perf_counter())

    targs = TrainingArguments(
        output_dir=str(work / "hf"),
        per_device_train_batch_size=cfg.batch_size,
        max_steps=cfg.steps,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        adam_beta2=0.95,
        max_grad_norm=cfg.grad_clip,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_steps,
        save_strategy="no",
        report_to=[],
        logging_steps=cfg.steps,
        use_cpu=args.device == "cpu",
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
        bf16=args.precision == "bf16",
        torch_compile=args.compile if compile is None else compile,
    )
    Trainer(model=model, args=targs, train_dataset=Windows(), callbacks=[Clock()]).train()
    steps = len(stamps) - args.warmup
    return steps * cfg.batch_size * cfg.seq_len / (stamps[-1] - stamps[args.warmup - 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="quickstart")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--seq", type=int, default=384)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="torch.compile every leg (default; adds hf_eager); --no-compile: eager")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                        help="bf16: autocast in every leg (CPU: AMX matmuls; ours keeps attention in fp32); "
                        "auto: bf16 where the device computes it natively, else fp32")
    args = parser.parse_args()
    import torch

    if args.precision == "auto":
        from pretrain.trainer import cpu_has_bf16

        args.precision = "bf16" if args.device == "cuda" or cpu_has_bf16() else "fp32"

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="train-bench-"))
    data = make_data(work / "tokens", tokens=(args.steps + 1) * args.batch * (args.seq + 1) * 2)
    legs = {"ours": run_ours, "bare": run_bare, "hf": run_hf}
    if args.compile:
        legs["hf_eager"] = lambda a, d, w: run_hf(a, d, w, compile=False)
    runs: dict[str, list[float | None]] = {name: [] for name in legs}
    for _ in range(args.repeat):
        for name, leg in legs.items():
            value = leg(args, data, work)
            runs[name].append(value)
            print(f"# {name}: {value if value is None else round(value, 1)} tokens/s", flush=True)
    report(args, runs)


def _median_ratio(a: list[float | None], b: list[float | None]) -> float | None:
    """The median over repeats of ``a[i] / b[i]`` (legs of one repeat ran back to back)."""
    pairs = [x / y for x, y in zip(a, b, strict=True) if x and y]
    return float(np.median(pairs)) if pairs else None


def report(args: argparse.Namespace, runs: dict[str, list[float | None]]) -> None:
    """Print the table (tokens/s and ratios against the targets) and one JSON line."""
    best = {name: max((v for v in values if v is not None), default=None) for name, values in runs.items()}
    ours, bare, hf = best["ours"], best["bare"], best["hf"]
    print(f"model={args.model} batch={args.batch}x{args.seq} steps={args.steps} device={args.device} "
          f"compile={args.compile} precision={args.precision}")
    print(f"{'leg':<10}{'tokens/s':>12}")
    for name, value in best.items():
        print(f"{name:<10}{'skipped (pip install accelerate)' if value is None else f'{value:12,.0f}'}")
    ratio_bare = ours / bare if ours and bare else None
    ratio_hf = ours / hf if ours and hf else None
    medians = {f"median_ours_over_{leg}": _median_ratio(runs["ours"], values)
               for leg, values in runs.items() if leg != "ours"}
    for leg, ratio, target in (("bare", ratio_bare, 0.95), ("hf", ratio_hf, 1.3)):
        median = medians[f"median_ours_over_{leg}"]
        if ratio is None or median is None:
            print(f"ours / {leg:<4} = n/a")
            continue
        print(f"ours / {leg:<4} = {ratio:.3f} best of {args.repeat}, {median:.3f} median of per-repeat "
              f"ratios (target >= {target})")
    extra: dict[str, Any] = {"runs": runs, **medians}
    if best.get("hf_eager"):
        extra["ours_over_hf_eager"] = ours / best["hf_eager"] if ours else None
        print(f"ours / hf_eager = {extra['ours_over_hf_eager']:.3f} (HF Trainer at its defaults)")
    print(json.dumps({"tokens_per_s": best, "ours_over_bare": ratio_bare, "ours_over_hf": ratio_hf,
                      "compile": args.compile, "precision": args.precision, **extra}))


if __name__ == "__main__":
    main()
