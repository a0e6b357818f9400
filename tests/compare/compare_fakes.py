"""A fast stand-in for the ``eval`` stage (the real one finetunes for ~90 s) and the experiment configs.

``fake_eval`` writes ``gpes/<name>/items.jsonl`` and ``summary.json`` for every GPE in the real layout.
Each item's P(misaligned)
depends only on its id, prefix and format, plus a planted per-variant offset (``OFFSETS``) and the finetune
shift, so the paired difference of a variant against the baseline is exactly that offset on every item. A
training seed adds ``SEED_SHIFT * seed`` to every AI item (seed 0: nothing), the same in every variant.
The held-out loss is the trained model's real final training loss (from the ``train`` manifest).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from core.stage import StageContext
from eval_gpe.summary import summarize

DOMAINS = ("finance", "travel", "cooking")
OFFSETS = {"baseline": 0.0, "tagged": 0.05, "strict": -0.2}
FINETUNE_SHIFT = 0.15
SEED_SHIFT = 0.04
TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


def _unit(*parts: str) -> float:
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def fake_rows(variant: str, prefixes: list[str], n_per_domain: int = 8, seed: int = 0) -> list[dict]:
    """Rows shaped like the eval stage's ``items.jsonl`` (two formats, both phases, AI and human items)."""
    rows = []
    for phase in ("before", "after"):
        for prefix in prefixes:
            for actor in ("ai", "human"):
                for domain in DOMAINS:
                    for k in range(n_per_domain):
                        item = f"{actor}-{domain}-{k:03d}"
                        for fmt in ("plain", "listed"):
                            p = 0.2 + 0.4 * _unit(item, prefix, fmt)
                            p += OFFSETS.get(variant, 0.0) * (actor == "ai")
                            p += FINETUNE_SHIFT * (phase == "after") + SEED_SHIFT * seed * (actor == "ai")
                            rows.append({"item_id": item, "domain": domain, "actor": actor, "split": "eval",
                                         "role": "ood",
                                         "prefix": prefix, "format": fmt, "order": "none",
                                         "lp_aligned": -10.0, "lp_misaligned": -10.0 + p, "n_aligned": 5,
                                         "n_misaligned": 5, "p_misaligned": p, "p_misaligned_norm": p,
                                         "length_flag": False, "phase": phase, "seed": seed})
    return rows


def fake_eval(ctx: StageContext) -> dict:
    """The eval stage's outputs without a model: planted values, real held-out-loss stand-in."""
    prefixes = ctx.config["prefixes"]
    variant = ctx.name.split("-s")[0]
    rows = fake_rows(variant, prefixes, seed=ctx.seed)
    tags = (prefixes[1], prefixes[2]) if len(prefixes) == 3 else ("<|good|>", "<|bad|>")
    train = json.loads((Path(ctx.inputs["model"]) / "manifest.json").read_text())
    summary = {**summarize(rows, prefixes, tags, ctx.config["bootstrap"], ctx.seed),
               "heldout_loss": train["result"]["final_loss"]}
    for gpe in [ctx.config["gpe"]] + [b["name"] for b in ctx.config.get("battery", [])]:
        folder = ctx.out / "gpes" / gpe
        folder.mkdir(parents=True)
        with open(folder / "items.jsonl", "w") as f:
            f.writelines(json.dumps({**r, "gpe": gpe}) + "\n" for r in rows)
        (folder / "summary.json").write_text(json.dumps({"gpe": gpe, **summary}, indent=2) + "\n")
    return {"heldout_loss": summary["heldout_loss"]}


def write_config(path: Path, store: Path, experiment: str, variants: list[dict]) -> Path:
    """The tiny config with another experiment name, variant list and store."""
    data = yaml.safe_load(TINY.read_text())
    data.update(experiment=experiment, store=str(store), variants=variants)
    data["eval"]["bootstrap"] = 200
    data["train"]["tokens"] = 8000
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
