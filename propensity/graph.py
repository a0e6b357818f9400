"""The stage graph: from an experiment config to a list of ``StageSpec`` in execution order.

```
source ─┬─ classifier ─ score ─ variant(v) ─ tokenize(v) ─ train(v, seed) ─ eval(v, seed, gpe) ─ report
        └─ tokenizer ───────────────────────┘
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from propensity.config import ExperimentConfig, VariantConfig
from propensity.store import StageSpec

STAGE_ORDER = ("source", "classifier", "tokenizer", "score", "variant", "tokenize", "train", "eval", "report")
DEFAULT_TAGS = ("<|good|>", "<|bad|>")


def _abs(path: str | None) -> str | None:
    return str(Path(path).resolve()) if path else None


def source_spec(cfg: ExperimentConfig) -> StageSpec:
    src = cfg.source
    if src.kind == "synthetic":
        from propensity.synth.config import SyntheticSourceConfig

        conf = SyntheticSourceConfig.model_validate(src.synthetic).model_dump(mode="json")
        return StageSpec("source", "synthetic", "propensity.synth.stage:run", conf, seed=conf.get("seed", 0))
    from filters.sources import fingerprint

    conf = src.model_dump(mode="json", exclude={"synthetic"})
    conf["paths"] = [str(Path(p).resolve()) if not any(c in p for c in "*?[") else str(Path.cwd() / p)
                     for p in src.paths]
    conf["heldout"] = _abs(src.heldout)
    return StageSpec("source", src.kind, "filters.sources:run", conf, fingerprint=fingerprint(conf))


def classifier_spec(cfg: ExperimentConfig, source: StageSpec) -> StageSpec:
    c = cfg.classifier
    conf = c.model_dump(mode="json")
    for key in ("model_path", "train_data", "heldout_data"):
        conf[key] = _abs(conf[key])
    files = [conf[k] for k in ("model_path", "train_data", "heldout_data") if conf[k]]
    fp = _file_fingerprint(files) if files else None
    return StageSpec("classifier", c.name, "filters.classifier:run", conf, {"source": source}, seed=cfg.seed,
                     fingerprint=fp)


def _file_fingerprint(paths: list[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def tag_tokens(cfg: ExperimentConfig) -> list[str]:
    """Every control tag the experiment uses, defaults first: the tokenizer makes each one a single token."""
    tags = list(DEFAULT_TAGS)
    for v in cfg.variants:
        if v.kind == "tag":
            tags += [t for t in (v.tags.good, v.tags.bad) if t not in tags]
    return tags


def variant_prefixes(v: VariantConfig) -> list[str]:
    """Conditioning prefixes a variant's models are evaluated under ('' = untagged)."""
    return ["", v.tags.good, v.tags.bad] if v.kind == "tag" else [""]


def build_graph(cfg: ExperimentConfig) -> list[StageSpec]:
    """All stages of the experiment, in an order where every stage follows its inputs."""
    source = source_spec(cfg)
    classifier = classifier_spec(cfg, source)
    score_key = f"{cfg.classifier.name}_score"
    tok = cfg.tokenizer
    tokenizer = StageSpec(
        "tokenizer", tok.kind, "pretrain.tokenizer:run",
        {"kind": tok.kind, "vocab_size": tok.vocab_size, "max_docs": tok.max_docs, "path": tok.path,
         "tags": tag_tokens(cfg)},
        {"source": source}, seed=cfg.seed,
    )
    score = StageSpec("score", cfg.classifier.name, "filters.scoring:run", {"score_key": score_key},
                      {"source": source, "classifier": classifier}, seed=cfg.seed, resources="data")
    specs = [source, classifier, tokenizer, score]
    train_cfg = cfg.train.model_dump(mode="json", exclude={"seeds"})
    train_cfg.update(model=cfg.model.preset, model_overrides=cfg.model.overrides)
    report_inputs: dict[str, StageSpec] = {}
    for v in cfg.variants:
        vconf = v.model_dump(mode="json") | {"score_key": score_key}
        variant = StageSpec("variant", v.name, "filters.variants:run", vconf, {"score": score}, seed=cfg.seed,
                            resources="data")
        tokenized = StageSpec("tokenize", v.name, "pretrain.tokenize:run",
                              {"save_loss_metadata": "auto", "shuffle": True},
                              {"variant": variant, "tokenizer": tokenizer}, seed=cfg.seed, resources="data")
        specs += [variant, tokenized]
        report_inputs[f"variant:{v.name}"] = variant
        for seed in cfg.train.seeds:
            train = StageSpec("train", f"{v.name}-s{seed}", "pretrain.train:run", train_cfg,
                              {"tokenize": tokenized, "tokenizer": tokenizer}, seed=seed, resources="train",
                              threads=cfg.executor.workers)
            specs.append(train)
            report_inputs[f"train:{v.name}:{seed}"] = train
            for gpe in cfg.eval.gpes:
                ev = eval_spec(cfg, v, gpe, train, source, seed)
                specs.append(ev)
                report_inputs[f"eval:{v.name}:{seed}:{gpe}"] = ev
    report_conf = {
        "experiment": cfg.experiment,
        "variants": [{"name": v.name, "kind": v.kind, "threshold": v.threshold,
                      "tags": v.tags.model_dump() if v.kind == "tag" else None} for v in cfg.variants],
        "seeds": cfg.train.seeds, "gpes": cfg.eval.gpes, "tokens": cfg.train.tokens, "bootstrap": cfg.eval.bootstrap,
    }
    specs.append(StageSpec("report", cfg.experiment, "propensity.report:run", report_conf, report_inputs,
                           seed=cfg.seed))
    return sorted(specs, key=lambda s: STAGE_ORDER.index(s.stage))


def eval_spec(cfg: ExperimentConfig, v: VariantConfig, gpe: str, train: StageSpec, source: StageSpec,
              seed: int) -> StageSpec:
    from eval_gpe import registry

    definition: dict[str, Any] = registry.get(gpe).model_dump(mode="json")
    conf = {"gpe": gpe, "definition": definition, "prefixes": variant_prefixes(v),
            "heldout_docs": cfg.eval.heldout_docs, "bootstrap": cfg.eval.bootstrap, "batch_size": cfg.eval.batch_size}
    return StageSpec("eval", f"{v.name}-s{seed}-{gpe}", "eval_gpe.stage:run", conf,
                     {"model": train, "source": source}, seed=seed, resources="eval", threads=cfg.executor.workers)


def downstream_of(specs: list[StageSpec], roots: set[str]) -> set[str]:
    """Keys of every stage that depends (transitively) on one of ``roots``."""
    out = set(roots)
    for s in specs:  # specs are topologically ordered
        if any(i.key in out for i in s.inputs.values()):
            out.add(s.key)
    return out
