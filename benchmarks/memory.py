"""Peak memory of the data stages at 1x and 10x corpus size: does it stay flat as the corpus grows?

Builds the synthetic quickstart corpus at 1x (``scale=1``, 4 shards) and 10x (``scale=10``, 8 shards, each
5x larger), runs source, classifier and tokenizer once per size, then score, variant (a filter) and tokenize
each in a fresh process (``propensity stage``), one worker, and prints the peak RSS each recorded in its
manifest (``usage.peak_rss_mb``: the process and its datatrove workers), the ratio 10x/1x and the CPU-seconds.
Data stages stream record by record; what a rank holds at once is bounded by settings, not by the shard:
``pretrain.tokenize.BATCH_DOCS`` documents per tokenizer batch, and the score stage's ``batch_size``.

Usage: ``nice -n 10 python benchmarks/memory.py [--scales 1 10] [--keep DIR]`` (~10 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

MEASURED = ("score", "variant", "tokenize")
SHARDS = {1: 4, 10: 8}


def config(folder: Path, scale: int) -> Path:
    """The benchmark experiment at ``scale`` (one filter variant; no training is run)."""
    path = folder / f"memory-{scale}x.yaml"
    shards = SHARDS.get(scale, 4)
    path.write_text(
        f"experiment: memory{scale}x\nstore: {folder / 'store'}\n"
        f"source: {{kind: synthetic, synthetic: {{seed: 0, scale: {scale}, shards: {shards}}}}}\n"
        "classifier: {name: misaligned, fasttext: {epoch: 3}}\n"
        "variants: [{name: filtered, kind: filter, threshold: 0.5}]\n"
        "tokenizer: {kind: bpe, vocab_size: 4096, max_docs: 5000}\n"
        "train: {tokens: 20000, seq_len: 64, batch_size: 8}\neval: {gpes: [em_medicine]}\n"
        "executor: {kind: local, workers: 1}\n"
    )
    return path


def stage(cfg: Path, key: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run([sys.executable, "-m", "propensity", "stage", str(cfg), key, "--no-progress"], check=True,
                   env=env, stdout=subprocess.DEVNULL, cwd=ROOT)


def measure(folder: Path, scale: int) -> dict[str, dict]:
    """Run the graph's data stages at ``scale``, each in its own process; return each manifest's usage."""
    from core.store import Store
    from propensity.config import load_config
    from propensity.graph import build_graph

    cfg_path = config(folder, scale)
    cfg = load_config(cfg_path)
    out = {}
    for spec in build_graph(cfg):
        if spec.stage in ("source", "classifier", "tokenizer", *MEASURED):
            stage(cfg_path, spec.key)
        if spec.stage in MEASURED:
            manifest = Store(cfg.store).manifest(spec)
            docs = manifest["result"].get("documents_in") or manifest["result"].get("documents")
            out[spec.stage] = {**manifest["usage"], "documents": docs}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: temporary)")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="memory-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    results = {scale: measure(folder, scale) for scale in args.scales}
    print(f"\npeak RSS per data stage, one worker, fresh process each (machine: {os.cpu_count()} cores)")
    print(f"{'stage':<10}" + "".join(f"{f'{s}x docs':>12}{f'{s}x MB':>10}{f'{s}x CPU-s':>10}" for s in args.scales)
          + (f"{'ratio':>8}" if len(args.scales) > 1 else ""))
    for name in MEASURED:
        cells = "".join(f"{results[s][name]['documents']:>12,}{results[s][name]['peak_rss_mb']:>10.0f}"
                        f"{results[s][name]['cpu_seconds']:>10.1f}" for s in args.scales)
        ratio = (results[args.scales[-1]][name]["peak_rss_mb"] / results[args.scales[0]][name]["peak_rss_mb"]
                 if len(args.scales) > 1 else None)
        print(f"{name:<10}{cells}" + (f"{ratio:>8.2f}" if ratio else ""))
    (folder / "memory.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.keep is None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
