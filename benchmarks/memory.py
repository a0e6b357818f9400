"""Peak memory of the data stages at 1x and 10x corpus size: does it stay flat as the corpus grows?

Builds a corpus at 1x (the synthetic quickstart corpus' 4 shards) and 10x (8 shards, each 5 copies of a 1x
shard with fresh ids), fed as ``source.kind: files`` with the same fastText model (trained once on the
quickstart's labelled sets). Per size it runs source, classifier and tokenizer, then score, variant (a
filter) and tokenize each in a fresh process (``propensity stage``), one worker, and prints the peak RSS
each recorded in its manifest (``usage.peak_rss_mb``: the process or its largest datatrove worker), the
ratio 10x/1x and the CPU-seconds. Data stages stream record by record; what a rank holds at once is
bounded by settings, not by the shard: ``pretrain.tokenize_docs.BATCH_DOCS`` documents per tokenizer batch and
the score stage's ``batch_size``.

Usage: ``nice -n 10 python benchmarks/memory.py [--scales 1 10] [--keep DIR]`` (~10 min on 2 cores).
"""

from __future__ import annotations

import argparse
import gzip
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
SIZES = {1: (4, 1), 10: (8, 5)}
"""Corpus size -> (shards, copies of a base shard per shard): 1x is the quickstart corpus' 4 shards, 10x is 8
shards each 5x larger."""


def _stage(cfg: Path, key: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run([sys.executable, "-m", "propensity", "stage", str(cfg), key, "--no-progress"], check=True,
                   env=env, stdout=subprocess.DEVNULL, cwd=ROOT)


def _base(folder: Path) -> tuple[list[Path], Path]:
    """The quickstart corpus' shards and a fastText model trained on its labelled sets (built once)."""
    from core.store import Store
    from propensity.config import load_config
    from propensity.graph import build_graph

    path = folder / "base.yaml"
    path.write_text(f"experiment: base\nstore: {folder / 'store'}\n"
                    "source: {kind: synthetic, synthetic: {seed: 0, scale: 1, shards: 4}}\n"
                    "classifier: {name: misaligned, fasttext: {epoch: 3}}\n"
                    "variants: [{name: filtered, kind: filter, threshold: 0.5}]\ntrain: {tokens: 20000}\n"
                    "eval: {gpes: [em_medicine]}\nexecutor: {kind: local, workers: 1}\n")
    specs = build_graph(load_config(path))
    store = Store(folder / "store")
    for spec in specs[:2]:  # source, classifier
        _stage(path, spec.key)
    shards = sorted((store.path(specs[0].key) / "shards").glob("*.jsonl.gz"))
    model = next(store.path(specs[1].key).glob("*.bin"))
    return shards, model


def corpus(folder: Path, base: list[Path], scale: int) -> list[Path]:
    """``scale``'s shards: each the concatenation of ``copies`` base shards, ids made unique."""
    shards, copies = SIZES[scale]
    out = folder / f"corpus-{scale}x"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for j in range(shards):
        path = out / f"{j:05d}.jsonl.gz"
        if not path.exists():
            with gzip.open(base[j % len(base)], "rt") as f:
                lines = [json.loads(line) for line in f if line.strip()]
            with gzip.open(path, "wt") as f:
                for c in range(copies):
                    for rec in lines:
                        f.write(json.dumps(rec | {"id": f"{rec['id']}-{j}-{c}"}) + "\n")
        paths.append(path)
    return paths


def measure(folder: Path, scale: int, base: list[Path], model: Path) -> dict[str, dict]:
    """Run the data stages over the ``scale`` corpus, each in its own process; return each manifest's usage."""
    from core.store import Store
    from propensity.config import load_config
    from propensity.graph import build_graph

    files = corpus(folder, base, scale)
    cfg_path = folder / f"memory-{scale}x.yaml"
    cfg_path.write_text(
        f"experiment: memory{scale}x\nstore: {folder / 'store'}\n"
        f"source: {{kind: files, paths: {json.dumps([str(p) for p in files])}}}\n"
        f"classifier: {{name: misaligned, model_path: {model}}}\n"
        "variants: [{name: filtered, kind: filter, threshold: 0.5}]\n"
        "tokenizer: {kind: bpe, vocab_size: 4096, max_docs: 5000}\n"
        "train: {tokens: 20000}\neval: {gpes: [em_medicine]}\nexecutor: {kind: local, workers: 1}\n"
    )
    cfg = load_config(cfg_path)
    out = {}
    for spec in build_graph(cfg):
        if spec.stage in ("source", "classifier", "tokenizer", *MEASURED):
            _stage(cfg_path, spec.key)
        if spec.stage in MEASURED:
            manifest = Store(cfg.store).manifest(spec)
            docs = manifest["result"].get("documents_in") or manifest["result"].get("documents")
            out[spec.stage] = {**manifest["usage"], "documents": docs}
    return out


RUN_TOKENIZE = """
import json, sys
from pathlib import Path
from core.stage import StageContext
from core.usage import UsageMeter
import pretrain.tokenize_docs as tokenize
variant, tokenizer, out, batch = sys.argv[1:5]
tokenize.BATCH_DOCS = int(batch)
meter = UsageMeter()
tokenize.run(StageContext("tokenize", "bench", {}, {"variant": Path(variant), "tokenizer": Path(tokenizer)},
                          Path(out), workers=1, show_progress=False))
print(json.dumps(meter.read()))
"""


def tokenize_with_batch(folder: Path, scale: int, batch: int) -> dict:
    """The tokenize stage of ``scale`` again, in a fresh process, with ``batch`` documents per tokenizer call
    (datatrove's default is 10,000): what the stage used before ``BATCH_DOCS`` bounded it."""
    from core.store import Store
    from propensity.config import load_config
    from propensity.graph import build_graph

    cfg = load_config(folder / f"memory-{scale}x.yaml")
    spec = next(s for s in build_graph(cfg) if s.stage == "tokenize")
    store, out = Store(cfg.store), folder / f"tokenize-{scale}x-batch{batch}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-c", RUN_TOKENIZE, str(store.path(spec.inputs["variant"].key)),
                           str(store.path(spec.inputs["tokenizer"].key)), str(out), str(batch)],
                          check=True, env=env, capture_output=True, text=True, cwd=ROOT)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: temporary)")
    parser.add_argument("--tokenize-batch", type=int, default=None, metavar="N",
                        help="also run tokenize with N documents per tokenizer call (10000: datatrove's default)")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="memory-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    base, model = _base(folder)
    results = {scale: measure(folder, scale, base, model) for scale in args.scales}
    print(f"\npeak RSS per data stage, one worker, fresh process each (machine: {os.cpu_count()} cores)")
    print(f"{'stage':<10}" + "".join(f"{f'{s}x docs':>12}{f'{s}x MB':>10}{f'{s}x CPU-s':>10}" for s in args.scales)
          + (f"{'ratio':>8}" if len(args.scales) > 1 else ""))
    for name in MEASURED:
        cells = "".join(f"{results[s][name]['documents']:>12,}{results[s][name]['peak_rss_mb']:>10.0f}"
                        f"{results[s][name]['cpu_seconds']:>10.1f}" for s in args.scales)
        ratio = (results[args.scales[-1]][name]["peak_rss_mb"] / results[args.scales[0]][name]["peak_rss_mb"]
                 if len(args.scales) > 1 else None)
        print(f"{name:<10}{cells}" + (f"{ratio:>8.2f}" if ratio else ""))
    if args.tokenize_batch:
        before = {s: tokenize_with_batch(folder, s, args.tokenize_batch) for s in args.scales}
        cells = "".join(f"{'':>12}{before[s]['peak_rss_mb']:>10.0f}{before[s]['cpu_seconds']:>10.1f}"
                        for s in args.scales)
        ratio = before[args.scales[-1]]["peak_rss_mb"] / before[args.scales[0]]["peak_rss_mb"]
        print(f"{'tokenize':<10}{cells}" + (f"{ratio:>8.2f}" if len(args.scales) > 1 else "")
              + f"  <- {args.tokenize_batch} documents per tokenizer batch")
        results["tokenize_batch"] = {"batch": args.tokenize_batch, **before}  # type: ignore[index]
    (folder / "memory.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.keep is None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
