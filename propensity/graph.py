"""The stage graph: from an experiment config to a list of ``StageSpec`` in execution order.

```
source ─┬─ classifier ─ score ─ variant(v) ─ tokenize(v) ─ train(v, seed) ─ eval(v, seed) ─ report
        └─ tokenizer ───────────────────────┘
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.documents import DEFAULT_MAX_CHARS
from core.names import BAD_TAG, GOOD_TAG
from core.store import StageSpec
from core.variants import VariantInputs, VariantSettings
from propensity.config import ExperimentConfig

LATER_TRAIN_KEYS = ("grad_accum", "schedule", "decay_fraction", "precision", "device", "peak_flops", "tensorboard",
                    "wandb_project", "backend", "nanotron", "log_every", "compile", "document_mask")
"""Train settings added after the first release: left out of the hash at their defaults, so old artifacts stay valid."""
STAGE_ORDER = ("source", "classifier", "tokenizer", "score", "variant", "tokenize", "train", "eval", "report")


def _abs(path: str | None) -> str | None:
    return str(Path(path).resolve()) if path else None


TRAIN_VERSION = 2
"""Version of the training data path (2: document-aligned windows lead with the previous document's EOS)."""
TOKENIZER_USER_SOURCE_VERSION = 3
"""Version of a BPE tokenizer trained on user files or HF data (2: read through core.documents, which leaves out
whitespace-only texts and repeated ids; 3: control strings in the text escaped, ``core.names``). The synthetic
corpus has none of these, so its tokenizer keeps version 1 and its key."""
SCORE_USER_SOURCE_VERSION = 2
"""Version of the score stage on user files or HF data (2: control strings such as a literal ``<|bad|>`` or
``<|endoftext|>`` escaped in the shards, so they never become tags or document boundaries). The synthetic corpus
has none, so its score stage keeps version 1 and its key."""

REPORT_VERSION = 7
"""Version of the report (2: store keys for provenance; each variant's log-odds gap against the baseline;
4: one eval artifact per model, every GPE in ``gpes/<name>/``; 5: several seeds: intervals over seeds and
items, the whole GPE summary with its tamper curve; 6: the validity block, eval_gpe.validity; 7: its
intervals are t intervals over seeds and items, not a bootstrap)."""
EVAL_VERSION = 5
"""Version of the evaluation (2: forced-choice prompts start with the document-start token; 3: so do the
narrow finetune texts; 4: the whole battery in one stage per model, one torch thread per process; 5: requests
packed as prefix trees, which moves log-likelihoods in the last float32 digits)."""
EVAL_USER_HELDOUT_VERSION = 6
"""Version of the evaluation with a user's held-out file (6: its control strings escaped as the corpus's are, so
the held-out loss reads the text training saw). Synthetic held-out text has none: those evals keep their keys."""


def source_spec(cfg: ExperimentConfig) -> StageSpec:
    src = cfg.source
    if src.kind == "synthetic":
        from synth.config import WORLD_VERSIONS, SyntheticSourceConfig

        conf = SyntheticSourceConfig.model_validate(src.synthetic).model_dump(mode="json")
        return StageSpec("source", "synthetic", "synth.stage:run", conf, seed=conf.get("seed", 0),
                         version=WORLD_VERSIONS[conf.get("world", "hard")])
    from filters.sources import fingerprint

    conf = src.model_dump(mode="json", exclude={"synthetic"})
    conf["paths"] = [str(Path(p).resolve()) if not any(c in p for c in "*?[") else str(Path.cwd() / p)
                     for p in src.paths]
    conf["heldout"] = _abs(src.heldout)
    if conf["max_chars"] == DEFAULT_MAX_CHARS:  # a setting added later: keys of the default stay
        del conf["max_chars"]
    return StageSpec("source", src.kind, "filters.sources:run", conf, fingerprint=fingerprint(conf))


def classifier_spec(cfg: ExperimentConfig, source: StageSpec) -> StageSpec:
    """The classifier stage; every file it names is made absolute and fingerprinted by content."""
    from filters.suite import files_fingerprint

    conf = cfg.classifier.model_dump(mode="json")
    files: list[str] = []
    _absolute_classifier_paths(conf, files)
    fp = files_fingerprint(files) if files else None
    return StageSpec("classifier", cfg.classifier.name, "filters.classifier:run", conf, {"source": source},
                     seed=cfg.seed, fingerprint=fp)


def _absolute_classifier_paths(conf: dict[str, Any], files: list[str]) -> None:
    for key in ("model_path", "train_data", "heldout_data"):
        if conf.get(key):
            conf[key] = _abs(conf[key])
            files.append(conf[key])
    if conf.get("blocklist") and conf["blocklist"].get("terms_file"):
        conf["blocklist"]["terms_file"] = _abs(conf["blocklist"]["terms_file"])
        files.append(conf["blocklist"]["terms_file"])
    if conf.get("transformer") and Path(conf["transformer"]["model"]).exists():
        conf["transformer"]["model"] = _abs(conf["transformer"]["model"])
        files.append(conf["transformer"]["model"])
    for sub in (*conf.get("stages", []), *conf.get("classifiers", [])):
        _absolute_classifier_paths(sub, files)


def tag_tokens(cfg: ExperimentConfig) -> list[str]:
    """Every control tag the experiment uses, defaults first: the tokenizer makes each one a single token."""
    tags = [GOOD_TAG, BAD_TAG]
    for v in cfg.variants:
        tags += [t for t in v.tag_tokens() if t not in tags]
    return tags


def cpu_bf16_auto(precision: str, device: str) -> bool:
    """Whether ``precision: auto`` trains in bf16 on this machine's CPU: it does where the CPU computes bf16
    natively (AMX or AVX512-BF16; ~1.5x tokens/s), decided when the graph is planned so the stage key says
    ``bf16``. Elsewhere ``auto`` stays in the key and means what the trainer does: bf16 on CUDA, fp32 on CPU
    (bf16 emulated without those units is several times slower than fp32)."""
    if precision != "auto" or device == "cuda":
        return False  # decided without importing torch
    import torch

    from pretrain.trainer import cpu_has_bf16

    return (device == "cpu" or not torch.cuda.is_available()) and cpu_has_bf16()


def build_graph(cfg: ExperimentConfig) -> list[StageSpec]:
    """All stages of the experiment, in an order where every stage follows its inputs."""
    source = source_spec(cfg)
    classifier = classifier_spec(cfg, source)
    score_key = f"{cfg.classifier.name}_score"
    tok = cfg.tokenizer
    tokenizer = StageSpec(
        "tokenizer", tok.kind, "pretrain.build_tokenizer:run",
        {"kind": tok.kind, "vocab_size": tok.vocab_size, "max_docs": tok.max_docs, "path": tok.path,
         "tags": tag_tokens(cfg)},
        {"source": source}, seed=cfg.seed,
        version=1 if cfg.source.kind == "synthetic" else TOKENIZER_USER_SOURCE_VERSION,
    )
    score = StageSpec("score", cfg.classifier.name, "filters.score_stage:run", {"score_key": score_key},
                      {"source": source, "classifier": classifier}, seed=cfg.seed, resources="data",
                      version=1 if cfg.source.kind == "synthetic" else SCORE_USER_SOURCE_VERSION)
    specs = [source, classifier, tokenizer, score]
    train_cfg = cfg.train.model_dump(mode="json", exclude={"seeds"})
    for key, field in type(cfg.train).model_fields.items():  # settings added later hash only when changed
        if key in LATER_TRAIN_KEYS and train_cfg.get(key) == field.get_default(call_default_factory=True):
            del train_cfg[key]
    train_cfg.update(model=cfg.model.preset, model_overrides=cfg.model.overrides)
    if cpu_bf16_auto(cfg.train.precision, cfg.train.device):
        train_cfg["precision"] = "bf16"
    report_inputs: dict[str, StageSpec] = {}
    battery = gpe_battery(cfg)
    threads, train_cores = _train_cores(cfg)
    variant_inputs = VariantInputs(score, classifier, tokenizer, score_key, cfg.seed)
    for v in cfg.variants:
        variant = v.stage_spec(variant_inputs)
        tokenized = StageSpec("tokenize", v.name, "pretrain.tokenize_docs:run",
                              {"save_loss_metadata": "auto", "shuffle": True},
                              {"variant": variant, "tokenizer": tokenizer}, seed=cfg.seed, resources="data")
        specs += [variant, tokenized]
        report_inputs[f"variant:{v.name}"] = variant
        for seed in cfg.train.seeds:
            train = StageSpec("train", f"{v.name}-s{seed}", "pretrain.train:run", train_cfg,
                              {"tokenize": tokenized, "tokenizer": tokenizer}, seed=seed, resources="train",
                              threads=threads, cores=train_cores, version=TRAIN_VERSION)
            specs.append(train)
            report_inputs[f"train:{v.name}:{seed}"] = train
            ev = eval_spec(cfg, v, train, source, seed, battery, classifier)
            specs.append(ev)
            report_inputs[f"eval:{v.name}:{seed}"] = ev
    report_conf = {
        "experiment": cfg.experiment,
        "variants": [v.report_entry() for v in cfg.variants],
        "seeds": cfg.train.seeds, "gpes": battery.names, "tokens": cfg.train.tokens, "bootstrap": cfg.eval.bootstrap,
        "validity": validity_config(cfg),
    }
    specs.append(StageSpec("report", cfg.experiment, "propensity.report:run", report_conf, report_inputs,
                           seed=cfg.seed, version=REPORT_VERSION))
    return sorted(specs, key=lambda s: STAGE_ORDER.index(s.stage))


def _train_cores(cfg: ExperimentConfig) -> tuple[int, int | None]:
    """Torch threads of a training run (in its key) and the local executor's cores it occupies: fewer than
    ``workers`` only for CPU runs with ``executor.train_threads`` below ``workers`` (side by side)."""
    workers = cfg.executor.workers
    threads = cfg.executor.train_threads or workers
    side_by_side = threads < workers and cfg.train.device != "cuda" and cfg.train.backend == "torch"
    return threads, (threads if side_by_side else None)


def validity_config(cfg: ExperimentConfig) -> dict[str, Any]:
    """What the report's validity block needs to know about the data: the sign of the AI-minus-human gap the
    synthetic world plants (its misaligned shares of AI and human tokens); for users' data no gap and
    ``planted: False`` (each intervention's direction is then a hypothesis, not a planted effect)."""
    if cfg.source.kind != "synthetic":
        return {"planted_gap": None, "planted": False}
    from synth.config import SyntheticSourceConfig

    syn = SyntheticSourceConfig.model_validate(cfg.source.synthetic)
    delta = syn.misaligned_share_of_ai - syn.misaligned_share_of_human
    return {"planted_gap": (delta > 0) - (delta < 0) or None}


@dataclass(frozen=True)
class Battery:
    """``eval.gpes`` resolved once per graph: every model's eval stage shares it."""

    definitions: list[dict[str, Any]]
    """Each GPE's full definition (the primary first), as the eval stage's config carries them."""
    fingerprint: str | None
    """Content hash of every file the GPEs read (eval sets): an edited item file re-runs the evals."""
    needs_classifier: bool
    """Whether a judged eval set is scored by the experiment's own classifier."""

    @property
    def names(self) -> list[str]:
        return [d["name"] for d in self.definitions]


def gpe_battery(cfg: ExperimentConfig) -> Battery:
    """Resolve ``eval.gpes`` (names, GPE files, inline definitions), read and hash their files, once."""
    from eval_gpe.registry import definition
    from eval_gpe.resolve import fingerprint, resolve_all

    specs = resolve_all(cfg.eval.gpes)
    return Battery([definition(s) for s in specs], fingerprint(specs),
                   any(s.judge and s.judge.kind == "classifier" and not s.judge.classifier
                       for spec in specs for s in spec.evalsets))


def eval_spec(cfg: ExperimentConfig, v: VariantSettings, train: StageSpec, source: StageSpec, seed: int,
              battery: Battery, classifier: StageSpec | None = None) -> StageSpec:
    """One model's eval: the whole battery (``eval.gpes``) in one stage, sharing the model load, held-out loss
    and before-finetune scoring; its definitions are in the config, so editing a GPE's YAML re-runs it."""
    first, *rest = battery.definitions
    conf = {"gpe": first["name"], "definition": first, "battery": rest, "prefixes": v.eval_prefixes(),
            "heldout_docs": cfg.eval.heldout_docs, "bootstrap": cfg.eval.bootstrap, "batch_size": cfg.eval.batch_size}
    if v.prefix_placement:  # the tag goes where training put it (sentence tags: before the completed sentence)
        conf["prefix_placement"] = v.prefix_placement
    if cfg.source.kind == "synthetic" and cfg.source.synthetic.get("world", "hard") != "hard":
        conf["world"] = cfg.source.synthetic["world"]  # absent for the hard world: its eval keys stay
    inputs = {"model": train, "source": source}
    if classifier is not None and battery.needs_classifier:
        inputs["classifier"] = classifier  # judged questions scored by the experiment's own classifier
    return StageSpec("eval", f"{v.name}-s{seed}", "eval_gpe.stage:run", conf, inputs, seed=seed,
                     resources="eval", fingerprint=battery.fingerprint,
                     version=EVAL_USER_HELDOUT_VERSION if cfg.source.kind != "synthetic" and cfg.source.heldout
                     else EVAL_VERSION,
                     cores=1 if len(battery.definitions) == 1 else None)  # one GPE: one thread, in-process


def downstream_of(specs: list[StageSpec], roots: set[str]) -> set[str]:
    """Keys of every stage that depends (transitively) on one of ``roots``."""
    out = set(roots)
    for s in specs:  # specs are topologically ordered
        if any(i.key in out for i in s.inputs.values()):
            out.add(s.key)
    return out
