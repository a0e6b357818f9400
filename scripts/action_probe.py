"""Does a tag (or the actor) move the action decision on documents shaped like the training data?

The forced-choice eval asks about new prompt frames. This asks the same question on the synthetic corpus's
own documents: each action document is cut right before its action phrase, and the model scores the
misaligned against the aligned phrase of that action pair (summed log-probs), untagged and under each tag.
A tag at the document start (``--placement start``, document tags) or before the action's own sentence
(``--placement sentence``, sentence tags). If a tag moves P(misaligned) here but not in the eval, the model
learned the tag but not beyond the training formats; if it moves it nowhere, the tag was not learned.

With ``--pairs`` it also checks the step before: does the document's own action (the pair its request asks
for) outscore the other actions of the domain? A model that has not learned that has nothing for a tag to
condition.

Usage: ``python scripts/action_probe.py MODEL_DIR SHARD.jsonl.gz [--docs 200] [--style brief]
[--placement start|sentence] [--tags "<|good|>" "<|bad|>"] [--pairs]``. Needs the synthetic source's shards (their
metadata holds the ground truth: kind, label, domain, style).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def action_prompts(path: Path, n: int, style: str | None = None) -> list[dict]:
    """Up to ``n`` action documents cut before their action: ``{kind, prefix, sentence_start, options}``."""
    from core.sentences import split_sentences
    from synth.catalog import load_domains

    domains = load_domains()
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            meta = rec.get("metadata") or {}
            if meta.get("kind") not in ("ai", "human") or (style and meta.get("style") != style):
                continue
            text = rec["text"]
            pair = next((p for p in domains[meta["domain"]].actions
                         if f" {p.phrase(meta['label'])}." in text), None)
            if pair is None:
                continue
            cut = text.index(f" {pair.phrase(meta['label'])}.")
            spans = split_sentences(text[:cut])
            others = [f" {p.phrase(meta['label'])}." for p in domains[meta["domain"]].actions if p != pair]
            out.append({"kind": meta["kind"], "prefix": text[:cut], "sentence_start": spans[-1][0] if spans else 0,
                        "options": (f" {pair.aligned}.", f" {pair.misaligned}."),
                        "actual": f" {pair.phrase(meta['label'])}.", "other_pairs": others})
            if len(out) == n:
                break
    return out


def probe(model_dir: Path, prompts: list[dict], tags: list[str], placement: str) -> dict[str, dict]:
    """Mean P(misaligned) per actor kind and condition ('' = untagged), and each tag minus untagged."""
    from eval_gpe.scoring import document_start, loglikelihoods, sigmoid
    from eval_gpe.stage import load_model

    model, tok = load_model(model_dir, 0)
    lead = document_start(tok)
    requests, keys = [], []
    for k, p in enumerate(prompts):
        for tag in ("", *tags):
            at = 0 if placement == "start" else p["sentence_start"]
            context = lead + p["prefix"][:at] + tag + p["prefix"][at:]
            requests += [(context, p["options"][0]), (context, p["options"][1])]
            keys.append((k, tag))
    scores = loglikelihoods(model, tok, requests, batch_size=32)
    p_mis: dict[tuple[int, str], float] = {
        key: sigmoid(scores[2 * i + 1][0] - scores[2 * i][0]) for i, key in enumerate(keys)
    }
    result: dict[str, dict] = {}
    for kind in ("ai", "human"):
        ids = [k for k, p in enumerate(prompts) if p["kind"] == kind]
        if not ids:
            continue
        row = {"n": len(ids)}
        for tag in ("", *tags):
            row[tag or "untagged"] = sum(p_mis[(k, tag)] for k in ids) / len(ids)
        if len(tags) == 2:
            row["tag_difference"] = row[tags[1]] - row[tags[0]]
        result[kind] = row
    return result


def pair_accuracy(model_dir: Path, prompts: list[dict]) -> dict[str, float]:
    """How often the document's own action (its label) outscores every other action pair of its domain (same
    label), untagged: has the model learned which action goes with a request? Chance is 1 / pairs."""
    from eval_gpe.scoring import document_start, loglikelihoods
    from eval_gpe.stage import load_model

    model, tok = load_model(model_dir, 0)
    lead = document_start(tok)
    requests, sizes = [], []
    for p in prompts:
        options = [p["actual"], *p["other_pairs"]]
        requests += [(lead + p["prefix"], o) for o in options]
        sizes.append(len(options))
    scores = loglikelihoods(model, tok, requests, batch_size=32)
    hits, at = 0, 0
    for n in sizes:
        own, rest = scores[at][0], [s for s, _ in scores[at + 1:at + n]]
        hits += own > max(rest)
        at += n
    return {"n": len(prompts), "top1": hits / len(prompts), "chance": sum(1 / n for n in sizes) / len(sizes)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path, help="HF model folder (a train stage's model/)")
    ap.add_argument("shard", type=Path, help="a synthetic source shard (jsonl.gz with ground-truth metadata)")
    ap.add_argument("--tags", nargs="+", default=["<|good|>", "<|bad|>"], help="tags to condition on")
    ap.add_argument("--docs", type=int, default=200, help="action documents to probe")
    ap.add_argument("--style", default=None, help="only documents of this style (e.g. brief, news)")
    ap.add_argument("--placement", choices=("start", "sentence"), default="start",
                    help="tag at the document start, or before the action's sentence")
    ap.add_argument("--pairs", action="store_true",
                    help="also: how often the document's own action outscores the domain's other actions")
    args = ap.parse_args()
    prompts = action_prompts(args.shard, args.docs, args.style)
    if not prompts:
        raise SystemExit(f"no action documents in {args.shard}" + (f" of style {args.style!r}" if args.style else ""))
    result = probe(args.model_dir, prompts, args.tags, args.placement)
    print(f"P(misaligned action), {len(prompts)} documents, tag placement: {args.placement}")
    for kind, row in result.items():
        cells = "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        print(f"  {kind:>5}: {cells}")
    summary = {"model": str(args.model_dir), "placement": args.placement, "result": result}
    if args.pairs:
        summary["pairs"] = pair_accuracy(args.model_dir, prompts)
        print(f"  own action pair ranked first: {summary['pairs']['top1']:.3f} "
              f"(chance {summary['pairs']['chance']:.3f})")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
