"""The conditional-pretraining ``variant`` stage: kinds ``doc_tag``, ``sentence_tag``, ``inline_tag``,
``mask`` and ``inject`` (config: ``conditional_tags.config.ConditionalVariantSpec``).

Inputs: ``score`` (the scored shards, as for ``filters.variants``), ``classifier`` (its fastText model scores
sentences; needed by sentence_tag, inline_tag and mask) and optionally ``tokenizer`` (injection shares are
then measured in tokens, not characters). Pipeline (datatrove, one rank per scored shard):
``SafeDocumentReader`` -> ``ScoreValidator`` (quarantine) -> [threshold filter (inject with threshold) |
``SentenceScorer``] -> tagger -> [``LossMasker``] -> ``ReproducibleJsonlWriter``, then the injection.

Writes ``shards/*.jsonl.gz`` (+ ``shards/injected.jsonl.gz``), ``quarantine/``, ``excluded/`` (filtered
documents of inject), ``inject/`` + ``schedule.json`` (windowed injection), ``cuts.json`` (resolved cut
points). Result counts satisfy ``documents_in == kept + dropped + sum(quarantined)``; injected documents
are counted apart (``inject``).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter

from conditional_tags.config import SENTENCE_KINDS, ConditionalVariantSpec, parse_spec, variant_prefixes
from conditional_tags.inject import INJECTED_FILE, inject, token_measure
from conditional_tags.tagging_steps import (
    NO_LOSS_KEY,
    SENTENCES_KEY,
    TAG_SPANS_KEY,
    BinnedDocumentTagger,
    InlineTagger,
    LossMasker,
    SentenceScorer,
    SentenceTagger,
)
from core.errors import ConfigError, InputDataError
from core.sentences import split_sentences
from core.stage import StageContext
from filters.datatrove_stage import iter_jsonl, jsonl_files, quarantine_counts, step_stats
from filters.decisions import DecisionFilter, ThresholdDecision, read_scores
from filters.reader import SafeDocumentReader
from filters.variants import run_variant_pipeline
from filters.writers import ReproducibleJsonlWriter


def score_key_of(ctx: StageContext, spec: ConditionalVariantSpec) -> str:
    """The document score key: the config's, else the score stage's ``score.json``."""
    if spec.score_key:
        return spec.score_key
    path = ctx.inputs["score"] / "score.json"
    if not path.is_file():
        raise ConfigError(f"variant.score_key not set and {path} does not exist")
    return str(json.loads(path.read_text())["score_key"])


def sentence_scorer(ctx: StageContext, spec: ConditionalVariantSpec) -> SentenceScorer:
    """A ``SentenceScorer`` for the ``classifier`` input's fastText model (checked to load, here, once)."""
    from filters.fasttext_model import load_fasttext

    if "classifier" not in ctx.inputs:
        raise ConfigError(
            f"variant kind {spec.kind!r} scores sentences: it needs a 'classifier' input; "
            f"got roles {sorted(ctx.inputs)}"
        )
    path = ctx.inputs["classifier"] / "classifier.json"
    if not path.is_file():
        raise InputDataError(f"classifier artifact {ctx.inputs['classifier']} has no classifier.json")
    info = json.loads(path.read_text())
    if info.get("kind") != "fasttext":
        raise ConfigError(
            f"variant kind {spec.kind!r} scores sentences with a fastText classifier; "
            f"{path} has kind {info.get('kind')!r} (allowed: 'fasttext')"
        )
    model = ctx.inputs["classifier"] / info["path"]
    load_fasttext(model)
    return SentenceScorer(str(model), str(info.get("positive_label", "misaligned")), spec.batch_size)


def resolve_cuts(
    ctx: StageContext, spec: ConditionalVariantSpec, score_key: str, scorer: SentenceScorer | None
) -> dict[str, Any]:
    """Cut points of doc_tag/sentence_tag: the bins, or the quantiles of the document scores (whole scored
    corpus, from the score tables) or of the sentence scores (first ``quantile_sample`` documents)."""
    if spec.kind not in ("doc_tag", "sentence_tag"):
        return {}
    if spec.quantiles is None:
        return {"cuts": spec.cuts, "method": "bins"}
    if spec.kind == "doc_tag":
        values = read_scores(ctx.inputs["score"], score_key)
        method = "numpy.quantile(linear) over document scores"
    else:
        assert scorer is not None
        values = sentence_sample_scores(ctx, scorer, spec.quantile_sample)
        method = f"numpy.quantile(linear) over sentence scores of the first {spec.quantile_sample} documents"
    if not values:
        raise InputDataError(f"score artifact {ctx.inputs['score']}: no scores to take quantiles of")
    cuts = [float(v) for v in np.quantile(np.asarray(values, dtype=np.float64), spec.quantiles)]
    if any(a >= b for a, b in itertools.pairwise(cuts)):
        raise InputDataError(
            f"quantiles {spec.quantiles} give non-increasing cut points {cuts} (tied scores); "
            "use fewer quantiles or fixed bins"
        )
    return {"cuts": cuts, "quantiles": spec.quantiles, "scores": len(values), "method": method}


def sentence_sample_scores(ctx: StageContext, scorer: SentenceScorer, max_docs: int) -> list[float]:
    """Sentence scores of the first ``max_docs`` usable documents of the scored shards (shard order)."""
    texts: list[str] = []
    records = iter_jsonl(jsonl_files(ctx.inputs["score"] / "shards"))
    for record in itertools.islice(ctx.progress(records, desc="sample sentences"), max_docs):
        text = record.get("text")
        if isinstance(text, str):
            texts += [text[s:e] for s, e in split_sentences(text)]
    return scorer.score_texts(texts)


def build_steps(
    ctx: StageContext,
    spec: ConditionalVariantSpec,
    score_key: str,
    scorer: SentenceScorer | None,
    cuts: list[float],
) -> list[PipelineStep]:
    """The decision/tagging steps of one variant (between the score validator and the writer)."""
    steps: list[PipelineStep] = [scorer] if scorer is not None else []
    if spec.kind == "doc_tag":
        steps.append(
            BinnedDocumentTagger(
                score_key, cuts, spec.tag_names, spec.separator, spec.untagged_fraction, ctx.seed
            )
        )
    elif spec.kind == "sentence_tag":
        steps.append(SentenceTagger(cuts, spec.tag_names, spec.separator, spec.untagged_fraction, ctx.seed))
    elif spec.kind == "inline_tag":
        steps.append(InlineTagger(spec.flag_threshold, spec.tag, spec.p, spec.separator, ctx.seed))
    elif spec.kind == "inject" and spec.threshold is not None:
        excluded = ReproducibleJsonlWriter(str(ctx.out / "excluded"))
        steps.append(DecisionFilter(ThresholdDecision(score_key, spec.threshold), exclusion_writer=excluded))
    if spec.mask_spans:
        flagged = spec.flag_threshold if "flagged" in spec.mask_spans else None
        steps.append(LossMasker(tags="tags" in spec.mask_spans, flagged_threshold=flagged))
    return steps


def tally(ctx: StageContext, paths: list[Path], desc: str) -> dict[str, Any]:
    """Documents, characters, sentences, inserted tags and masked characters of output shards."""
    counts: Counter[str] = Counter()
    tags: Counter[str] = Counter()
    doc_tags: Counter[str] = Counter()
    for record in ctx.progress(iter_jsonl(paths), desc=desc):
        meta = record.get("metadata") or {}
        counts["documents"] += 1
        counts["characters"] += len(record.get("text", ""))
        counts["sentences"] += len(meta.get(SENTENCES_KEY, []))
        tags.update(str(tag) for _, _, tag in meta.get(TAG_SPANS_KEY, []))
        if "tag" in meta:
            doc_tags["untagged" if meta["tag"] is None else str(meta["tag"])] += 1
        ranges = meta.get(NO_LOSS_KEY) or []
        counts["masked_characters"] += sum(e - s for s, e in ranges)
        counts["masked_documents"] += bool(ranges)
    return {**counts, "tags": dict(sorted(tags.items())), "documents_by_tag": dict(sorted(doc_tags.items()))}


def run_pipeline(
    ctx: StageContext, inputs: list[Path], score_key: str, steps: list[PipelineStep]
) -> dict[str, Any]:
    """Run reader -> validator -> ``steps`` -> writer over the scored shards and count what came out."""
    logging_dir = run_variant_pipeline(ctx, inputs, score_key, steps)
    kept_files = [p for p in jsonl_files(ctx.out / "shards") if p.name != INJECTED_FILE]
    kept = tally(ctx, kept_files, "count kept")
    dropped = sum(1 for _ in iter_jsonl(jsonl_files(ctx.out / "excluded")))
    counts = {
        "documents_in": step_stats(logging_dir, SafeDocumentReader.name, len(inputs))["records_in"],
        "kept": kept.pop("documents", 0),
        "dropped": dropped,
        "quarantined": quarantine_counts(ctx.out / "quarantine"),
        "characters_kept": kept.pop("characters", 0),
        **kept,
    }
    filters = [s for s in steps if isinstance(s, BaseFilter)]
    if filters and dropped != step_stats(logging_dir, filters[0].name, len(inputs)).get("dropped", 0):
        raise InputDataError(f"variant: {dropped} documents in excluded/ but the filter counted otherwise")
    return counts


def run(ctx: StageContext) -> dict[str, Any]:
    """Build one conditional-pretraining variant (see the module docstring) and return its counts."""
    spec = parse_spec(ctx.config)
    if "score" not in ctx.inputs:
        raise ConfigError(f"variant stage needs a 'score' input; got roles {sorted(ctx.inputs)}")
    inputs = jsonl_files(ctx.inputs["score"] / "shards")
    if not inputs:
        raise InputDataError(f"score artifact {ctx.inputs['score']} has no shards/*.jsonl.gz")
    score_key = score_key_of(ctx, spec)
    scorer = sentence_scorer(ctx, spec) if spec.kind in SENTENCE_KINDS else None
    cuts = resolve_cuts(ctx, spec, score_key, scorer)
    if cuts:
        (ctx.out / "cuts.json").write_text(json.dumps(cuts, indent=2) + "\n")
    counts = run_pipeline(
        ctx, inputs, score_key, build_steps(ctx, spec, score_key, scorer, cuts.get("cuts", []))
    )
    kept, dropped, quarantined = counts["kept"], counts["dropped"], counts["quarantined"]
    if counts["documents_in"] != kept + dropped + sum(quarantined.values()):
        raise InputDataError(
            f"variant counts do not reconcile: {counts['documents_in']} in, kept {kept}, "
            f"dropped {dropped}, quarantined {quarantined}"
        )
    result: dict[str, Any] = {
        "kind": spec.kind,
        "score_key": score_key,
        **cuts,
        "prefixes": variant_prefixes(spec),
        "mask": spec.mask_spans,
        **counts,
    }
    if spec.inject is not None:
        kept_files = [p for p in jsonl_files(ctx.out / "shards") if p.name != INJECTED_FILE]
        measure = token_measure(ctx.inputs["tokenizer"]) if "tokenizer" in ctx.inputs else None
        result["inject"] = inject(ctx.out, spec.inject, kept_files, measure, progress=ctx.progress)
    return result
