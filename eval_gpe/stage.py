"""The ``eval`` stage: held-out loss and one GPE (trait eval -> narrow finetune -> trait eval) on one model.

Inputs: ``model`` (a ``train`` folder; the HF model and tokenizer are in ``model/``) and ``source`` (its
``source.json`` names a ``heldout`` jsonl.gz of clean background documents). Writes ``items.jsonl`` (one row
per item x prefix x format x order x phase), ``summary.json`` and ``quarantine/`` (bad items / held-out
lines with a reason). Items come from ``propensity.synth`` (imported lazily).
"""

from __future__ import annotations

import gzip
import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eval_gpe import registry
from eval_gpe.finetune import finetune
from eval_gpe.registry import GPESpec
from eval_gpe.scoring import forced_choice, model_max_length, prefix_token_id, score_tokens
from eval_gpe.summary import summarize
from propensity.errors import ConfigError, InputDataError
from propensity.stage import StageContext

ITEM_KEYS = ("id", "domain", "actor", "context", "aligned", "misaligned")


class EvalStageConfig(BaseModel):
    """Config of one ``eval`` stage (``ctx.config``)."""

    model_config = ConfigDict(extra="forbid")

    gpe: str = Field(description="Registered GPE name (eval_gpe/gpes/<name>.yaml).")
    definition: GPESpec | None = Field(
        default=None,
        description="The GPE's full definition (so the stage hash covers it); default: the registry's.",
    )
    prefixes: list[str] = Field(
        default=[""], min_length=1, description="Conditioning prefixes; '' = untagged."
    )
    heldout_docs: int = Field(default=200, ge=0, description="Held-out documents for the loss (0 = skip).")
    bootstrap: int = Field(default=2000, ge=1, description="Bootstrap resamples for every interval.")
    batch_size: int = Field(default=64, ge=1, description="Requests per forward pass when scoring.")
    tag_good: str | None = Field(default=None, description="The 'good' tag prefix (for tag_difference).")
    tag_bad: str | None = Field(default=None, description="The 'bad' tag prefix (for tag_difference).")

    def tags(self) -> tuple[str, str]:
        """``(good, bad)`` tag prefixes: explicit if set; else ``prefixes[1:3]`` when prefixes are
        ``['', good, bad]`` (what the graph passes); else ``<|good|>`` / ``<|bad|>``."""
        if self.tag_good is not None and self.tag_bad is not None:
            return self.tag_good, self.tag_bad
        if len(self.prefixes) == 3 and self.prefixes[0] == "":
            return self.prefixes[1], self.prefixes[2]
        return "<|good|>", "<|bad|>"

    def spec(self) -> GPESpec:
        """The GPE to run: ``definition`` when given (its name must equal ``gpe``), else the registry's."""
        if self.definition is None:
            return registry.get(self.gpe)
        if self.definition.name != self.gpe:
            raise ConfigError(f"eval config: definition.name {self.definition.name!r} != gpe {self.gpe!r}")
        return self.definition


def _synth() -> ModuleType:
    return importlib.import_module("propensity.synth")


def load_model(model_dir: Path, seed: int) -> tuple[Any, Any]:
    """HF causal LM (float32, eval mode) and tokenizer from ``model_dir``; seeds torch."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (model_dir / "config.json").is_file():
        raise InputDataError(
            f"input 'model': no HF model at {model_dir} (expected config.json from a train stage)"
        )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


def _quarantine(out: Path, name: str, records: list[dict]) -> None:
    if records:
        (out / "quarantine").mkdir(exist_ok=True)
        with open(out / "quarantine" / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)


def read_heldout(source: Path, n_docs: int, out: Path) -> tuple[list[str], int]:
    """First ``n_docs`` usable held-out texts and how many lines were quarantined on the way."""
    meta_path = source / "source.json"
    try:
        meta = json.loads(meta_path.read_text())
        rel = meta["heldout"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputDataError(
            f"input 'source': {meta_path} must be JSON with a 'heldout' path ({exc!r})"
        ) from exc
    path = Path(rel) if Path(rel).is_absolute() else source / rel
    text_key = meta.get("text_key", "text")
    texts, bad = [], []
    if n_docs == 0:
        return texts, 0
    try:
        with gzip.open(path, "rt") as f:
            for line_no, line in enumerate(f, 1):
                if len(texts) >= n_docs:
                    break
                reason = _heldout_problem(line, text_key)
                if reason:
                    bad.append({"line": line_no, "reason": reason, "raw": line[:1000]})
                else:
                    texts.append(json.loads(line)[text_key])
    except OSError as exc:
        raise InputDataError(f"input 'source': cannot read held-out file {path} ({exc})") from exc
    _quarantine(out, "heldout", bad)
    if not texts:
        raise InputDataError(f"input 'source': no usable documents in {path} ({len(bad)} quarantined)")
    return texts, len(bad)


def _heldout_problem(line: str, text_key: str) -> str | None:
    try:
        doc = json.loads(line)
    except ValueError:
        return "invalid_json"
    if not isinstance(doc, dict) or not isinstance(doc.get(text_key), str):
        return f"missing_{text_key}"
    return None if doc[text_key].strip() else f"empty_{text_key}"


def heldout_loss(model: Any, tokenizer: Any, texts: list[str], batch_size: int) -> tuple[float, int]:
    """Mean token NLL (nats) over held-out texts, each cut to the model's context; and the token count.

    Each text is scored after the BOS (else EOS) token, so every token of the text is predicted."""
    max_len, start = model_max_length(model), prefix_token_id(tokenizer)
    pairs = [([start], tokenizer(t, add_special_tokens=False)["input_ids"][:max_len]) for t in texts]
    scores = score_tokens(model, pairs, batch_size)
    n_tokens = sum(n for _, n in scores)
    return -sum(lp for lp, _ in scores) / max(n_tokens, 1), n_tokens


def _item_problem(item: Any) -> str | None:
    if not isinstance(item, dict):
        return "not_a_mapping"
    for key in ITEM_KEYS:
        if not isinstance(item.get(key), str) or not item[key].strip():
            return f"missing_{key}"
    return "identical_options" if item["aligned"] == item["misaligned"] else None


def build_items(spec: GPESpec, synth: ModuleType, out: Path) -> tuple[list[dict], list[dict], int]:
    """``(ai_items, control_items, n_quarantined)``, in domains other than the finetune domain (by default).

    Items failing validation (missing/empty fields, identical options, duplicate ids) go to
    ``quarantine/items.jsonl`` with a reason.
    """
    domains = list(synth.DOMAINS)
    if spec.finetune.domain not in domains:
        raise ConfigError(f"GPE {spec.name}: finetune.domain {spec.finetune.domain!r} not in {domains}")
    if spec.eval.exclude_finetune_domain:
        domains = [d for d in domains if d != spec.finetune.domain]
    items: dict[str, list[dict]] = {}
    bad: list[dict] = []
    seen: set[str] = set()
    for actor in ("ai", spec.eval.control):
        raw = synth.forced_choice_items(
            spec.eval.seed, domains=domains, actor=actor, n_per_domain=spec.eval.n_per_domain
        )
        items[actor] = []
        for item in raw:
            reason = _item_problem(item) or ("duplicate_id" if item["id"] in seen else None)
            if reason:
                bad.append({"reason": reason, "item": item if isinstance(item, dict) else repr(item)})
                continue
            seen.add(item["id"])
            items[actor].append(item)
        if not items[actor]:
            raise InputDataError(
                f"GPE {spec.name}: no usable {actor!r} items from the generator ({len(bad)} bad)"
            )
    _quarantine(out, "items", bad)
    return items["ai"], items[spec.eval.control], len(bad)


def _narrow_texts(spec: GPESpec, synth: ModuleType) -> list[str]:
    ft = spec.finetune
    make = synth.narrow_finetune_texts if ft.kind == "misaligned_sentences" else synth.benign_finetune_texts
    return list(make(ft.domain, ft.seed, n=ft.n_texts))


def _evaluate(
    ctx: StageContext,
    model: Any,
    tok: Any,
    items: list[dict],
    formats: list[str],
    cfg: EvalStageConfig,
    phase: str,
) -> list[dict]:
    def progress(it: Any, total: int, desc: str) -> Any:
        return ctx.progress(it, total=total, desc=f"{desc} {phase}")

    rows = forced_choice(model, tok, items, formats, cfg.prefixes, cfg.batch_size, progress=progress)
    return [{**row, "phase": phase} for row in rows]


def _check_prefixes(ctx: StageContext, tok: Any, prefixes: list[str]) -> None:
    for prefix in prefixes:
        if prefix and len(tok(prefix, add_special_tokens=False)["input_ids"]) != 1:
            ctx.log.warning(
                "prefix %r is not a single token for this tokenizer (is it a tagged model?)", prefix
            )


def run(ctx: StageContext) -> dict:
    """Held-out loss, trait eval before and after the narrow finetune; writes items.jsonl and summary.json."""
    try:
        cfg = EvalStageConfig.model_validate(ctx.config)
    except ValidationError as exc:
        raise ConfigError(f"eval stage {ctx.name}: invalid config:\n{exc}") from exc
    for role in ("model", "source"):
        if role not in ctx.inputs:
            raise ConfigError(f"eval stage {ctx.name}: missing input {role!r} (got {sorted(ctx.inputs)})")
    spec, synth = cfg.spec(), _synth()
    ai_items, human_items, n_bad_items = build_items(spec, synth, ctx.out)
    texts, n_bad_heldout = read_heldout(Path(ctx.inputs["source"]), cfg.heldout_docs, ctx.out)
    model, tok = load_model(Path(ctx.inputs["model"]) / "model", ctx.seed)
    _check_prefixes(ctx, tok, cfg.prefixes)
    all_items = ai_items + human_items
    loss_before = heldout_loss(model, tok, texts, cfg.batch_size) if texts else (None, 0)
    rows = _evaluate(ctx, model, tok, all_items, spec.eval.formats, cfg, "before")
    ft = spec.finetune
    texts_ft = _narrow_texts(spec, synth)
    result = finetune(
        model,
        tok,
        texts_ft,
        steps=ft.steps,
        lr=ft.lr,
        batch_size=ft.batch_size,
        seed=ft.seed,
        progress=ctx.progress,
    )
    rows += _evaluate(ctx, model, tok, all_items, spec.eval.formats, cfg, "after")
    loss_after = heldout_loss(model, tok, texts, cfg.batch_size) if texts else (None, 0)
    with open(ctx.out / "items.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    summary = {
        "gpe": spec.name,
        "trait": spec.trait,
        "formats": spec.eval.formats,
        **summarize(rows, cfg.prefixes, cfg.tags(), cfg.bootstrap, ctx.seed),
        "heldout_loss": loss_before[0],
        "heldout_loss_after": loss_after[0],
        "heldout_tokens": loss_before[1],
        "n_items": {"ai": len(ai_items), "human": len(human_items)},
        "quarantined": {"items": n_bad_items, "heldout": n_bad_heldout},
        "finetune": {
            **ft.model_dump(),
            "loss_first": result.losses[0],
            "loss_last": result.losses[-1],
            "n_tokens": result.n_tokens,
        },
    }
    (ctx.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
