"""Forced-choice scoring speed: ours (``eval_gpe.scoring.forced_choice``) vs lm-evaluation-harness on the same
model and items, and the largest log-likelihood difference between the two (acceptance: <= 1e-4).

Three legs score the same requests: every item of the ``em_medicine`` item set (all domains, AI and human
actors) in the ``plain`` and both ``listed`` orders, exported as lm-eval ``multiple_choice`` tasks
(``eval_gpe.lm_eval_tasks.export_tasks``). lm-eval runs in-process on the same in-memory model
(``HFLM(pretrained=model)``), task loading excluded from its time. The ``files`` leg is the path of a
researcher's own eval sets: the same exported tasks read as ``format: lm_eval`` eval sets (lm-eval's task
loading, our scorer, ``eval_gpe.evalsets``). Target: ours and files >= 3x lm-eval.

Model: ``--model DIR`` (an HF folder, e.g. a train stage's ``model/``), else a randomly initialised
``quickstart`` Llama (1.05M params) with a BPE tokenizer trained here on the generator's sentences; speed
does not depend on the weights. Times are wall-clock, best of ``--repeat`` (legs alternate), with the CPU
seconds of the best run alongside.

Usage: ``python benchmarks/gpe.py [--model DIR] [--per-domain 10] [--batch 64] [--repeat 2] [--threads N]``.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_model(folder: Path) -> Path:
    """A random quickstart-preset Llama + BPE tokenizer (trained on generator sentences) in ``folder``."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from pretrain.build_tokenizer import train_bpe, write_hf_folder
    from pretrain.model import ModelSpec
    from synth import DOMAINS, gpe

    texts = []
    for domain in DOMAINS:
        texts += gpe.narrow_finetune_texts(domain, 1, 200) + gpe.benign_finetune_texts(domain, 1, 200)
        texts += [i["context"] for i in gpe.forced_choice_items(1, [domain], "ai", 20)]
    tok = train_bpe(texts, 4096, ["<|endoftext|>", "<|pad|>", "<|good|>", "<|bad|>"])
    write_hf_folder(tok, folder, "<|endoftext|>", "<|pad|>", ["<|good|>", "<|bad|>"])
    hf_tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = ModelSpec.quickstart().llama_config(len(hf_tok), hf_tok.eos_token_id, hf_tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def timed(fn: Any) -> tuple[Any, float, float]:
    """``(result, wall seconds, CPU seconds)`` of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def max_delta(rows: list[dict], samples: dict, tasks: list[str]) -> float:
    """Largest |our log-likelihood - lm-eval's| over every option of every exported document."""
    by_key = {(r["item_id"], r["format"], r["order"]): r for r in rows}
    delta = 0.0
    for task in tasks:
        fmt, order = ("plain", "none") if task.endswith("plain") else ("listed", task.split("listed_")[1])
        for s in samples[task]:
            row = by_key[(s["doc"]["id"], fmt, order)]
            (ll_al,), (ll_mis,) = ([r[0][0]] for r in s["resps"])
            delta = max(delta, abs(row["lp_aligned"] - ll_al), abs(row["lp_misaligned"] - ll_mis))
    return delta


def max_file_delta(rows: list[dict], samples: dict, tasks: list[str]) -> float:
    """Largest |file-based eval set log-likelihood - lm-eval's| (rows in task, then document order)."""
    theirs = [[r[0][0] for r in s["resps"]] for task in tasks for s in sorted(samples[task],
                                                                               key=lambda s: s["doc_id"])]
    if len(theirs) != len(rows):
        raise AssertionError(f"{len(rows)} file-based rows vs {len(theirs)} lm-eval documents")
    return max(abs(a - b) for row, lls in zip(rows, theirs, strict=True)
               for a, b in zip(row["lp_choices"], lls, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--per-domain", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eval_gpe.evalsets.forced import score_items
    from eval_gpe.evalsets.sets import load_set
    from eval_gpe.evalsets.spec import EvalSetSpec
    from eval_gpe.lm_eval_tasks import _run, export_tasks
    from eval_gpe.scoring import forced_choice
    from synth import DOMAINS, forced_choice_items

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="gpe-bench-"))
    folder = args.model or build_model(tmp / "model")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    items = [
        i for actor in ("ai", "human") for i in forced_choice_items(0, list(DOMAINS), actor, args.per_domain)
    ]
    formats = ["plain", "listed"]
    tasks = export_tasks(items, formats, tmp / "tasks", "bench")
    n_requests = 2 * len(items) * 3

    def ours() -> list[dict]:
        return forced_choice(model, tok, items, formats, [""], args.batch)

    def theirs() -> dict:
        return _run(model, tok, tasks, tmp / "tasks", limit=None, batch_size=args.batch, log_samples=True)

    # the file-based path: the same tasks read as eval sets through lm-eval's own task loading (loading
    # excluded from the time, as lm-eval's is), scored by eval_gpe.evalsets in one call
    sets = [load_set(EvalSetSpec(name=t, format="lm_eval", task=t, include_path=str(tmp / "tasks"))) for t in tasks]
    file_items = [i for s in sets for i in s.items]

    def files() -> list[dict]:
        return score_items(model, tok, file_items, [""], set_name="bench", fmt="lm_eval", batch_size=args.batch)

    theirs()  # warm-up: dataset preparation and lm-eval's caches
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeat):
        for name, fn in (("ours", ours), ("files", files), ("lm-eval", theirs)):
            result, wall, cpu = timed(fn)
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu)
            if name == "ours":
                rows = result
            elif name == "files":
                file_rows = result
            else:
                samples = result["samples"]
    delta = max_delta(rows, samples, tasks)
    file_delta = max_file_delta(file_rows, samples, tasks)
    print(
        f"items: {len(items)}  requests: {n_requests}  batch: {args.batch}  "
        f"threads: {torch.get_num_threads()}"
    )
    print(f"{'leg':<8} {'wall s':>8} {'cpu s':>8} {'requests/s':>11}")
    for name, (wall, cpu) in best.items():
        print(f"{name:<8} {wall:8.2f} {cpu:8.2f} {n_requests / wall:11.0f}")
    speedup = best["lm-eval"][0] / best["ours"][0]
    file_speedup = best["lm-eval"][0] / best["files"][0]
    print(
        f"speed-up (wall): {speedup:.2f}x (target >= 3x)   max |delta loglik|: {delta:.2e} (target <= 1e-4)"
    )
    print(
        f"file-based eval sets (lm-eval tasks as eval sets): {file_speedup:.2f}x (target >= 3x)   "
        f"max |delta loglik|: {file_delta:.2e} (target <= 1e-4)"
    )
    print(
        json.dumps(
            {
                "benchmark": "gpe_scoring",
                "items": len(items),
                "requests": n_requests,
                "ours_wall_s": best["ours"][0],
                "ours_cpu_s": best["ours"][1],
                "lm_eval_wall_s": best["lm-eval"][0],
                "lm_eval_cpu_s": best["lm-eval"][1],
                "speedup": speedup,
                "max_abs_delta": delta,
                "files_wall_s": best["files"][0],
                "files_speedup": file_speedup,
                "files_max_abs_delta": file_delta,
            }
        )
    )


if __name__ == "__main__":
    main()
