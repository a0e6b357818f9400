"""The conditional variant stage end to end on real scored shards: every kind, counts, exact fixed output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ct_fixtures import BAD_SENTENCE, GOOD_SENTENCE, make_ctx, write_jsonl

from conditional_tags.stage import run
from core.errors import ConfigError
from filters.datatrove_stage import iter_jsonl, jsonl_files

FIXED = f"{GOOD_SENTENCE} {BAD_SENTENCE} {GOOD_SENTENCE}"


def build(
    tmp_path: Path, score_dir: Path, classifier_dir: Path, config: dict[str, Any], **inputs: Path
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    out = tmp_path / config["name"]
    ctx = make_ctx(out, config, {"score": score_dir, "classifier": classifier_dir, **inputs})
    result = run(ctx)
    docs = {r["id"]: r for r in iter_jsonl(jsonl_files(out / "shards"))}
    return result, docs


def check_counts(result: dict[str, Any]) -> None:
    assert result["documents_in"] == 61
    assert result["quarantined"] == {"invalid_score": 1}
    assert result["documents_in"] == result["kept"] + result["dropped"] + sum(result["quarantined"].values())


def test_sentence_tag_exact_output(tmp_path: Path, score_dir: Path, classifier_dir: Path) -> None:
    result, docs = build(
        tmp_path,
        score_dir,
        classifier_dir,
        {"name": "st", "kind": "sentence_tag", "separator": " ", "mask": ["tags"]},
    )
    check_counts(result)
    fixed = docs["fixed"]
    assert fixed["text"] == f"<|good|> {GOOD_SENTENCE} <|bad|> {BAD_SENTENCE} <|good|> {GOOD_SENTENCE}"
    assert [t for _, _, t in fixed["metadata"]["tag_spans"]] == ["<|good|>", "<|bad|>", "<|good|>"]
    assert fixed["metadata"]["no_loss_ranges"] == [[s, e] for s, e, _ in fixed["metadata"]["tag_spans"]]
    assert result["sentences"] == 60 * 3
    assert sum(result["tags"].values()) == 180 and result["tags"]["<|bad|>"] >= 20
    assert result["masked_characters"] == 8 * result["tags"]["<|good|>"] + 7 * result["tags"]["<|bad|>"]
    assert result["prefixes"] == ["", "<|good|>", "<|bad|>"] and result["cuts"] == [0.5]


def test_sentence_tag_quantile_bins_three_tags(tmp_path: Path, score_dir: Path, classifier_dir: Path) -> None:
    tags = ["<|low|>", "<|mid|>", "<|high|>"]
    result, docs = build(
        tmp_path,
        score_dir,
        classifier_dir,
        {"name": "q", "kind": "sentence_tag", "quantiles": [0.2, 0.8], "tags": tags},
    )
    assert result["method"].startswith("numpy.quantile") and result["cuts"][0] < result["cuts"][1]
    assert set(result["tags"]) == set(tags)
    assert result["tags"]["<|high|>"] == pytest.approx(0.2 * 180, abs=4)
    assert json.loads((tmp_path / "q" / "cuts.json").read_text())["cuts"] == result["cuts"]


def test_inline_tag_and_mask(tmp_path: Path, score_dir: Path, classifier_dir: Path) -> None:
    result, docs = build(tmp_path, score_dir, classifier_dir, {"name": "inl", "kind": "inline_tag"})
    assert docs["fixed"]["text"] == f"{GOOD_SENTENCE} <|bad|>{BAD_SENTENCE} {GOOD_SENTENCE}"
    assert set(result["tags"]) == {"<|bad|>"} and result["masked_characters"] == 0
    result, docs = build(tmp_path, score_dir, classifier_dir, {"name": "m", "kind": "mask"})
    check_counts(result)
    start = len(GOOD_SENTENCE) + 1
    assert docs["fixed"]["text"] == FIXED
    assert docs["fixed"]["metadata"]["no_loss_ranges"] == [[start, start + len(BAD_SENTENCE)]]
    assert result["masked_documents"] == 21  # the fixed document + every third generated one


def test_doc_tag_quantiles(tmp_path: Path, score_dir: Path, classifier_dir: Path) -> None:
    result, docs = build(
        tmp_path,
        score_dir,
        classifier_dir,
        {"name": "dt", "kind": "doc_tag", "quantiles": [0.5], "separator": "\n"},
    )
    check_counts(result)
    assert result["documents_by_tag"] == {"<|bad|>": 30, "<|good|>": 30}
    tagged = [d for d in docs.values() if d["metadata"]["tag"] == "<|bad|>"]
    assert all(d["text"].startswith("<|bad|>\n") for d in tagged)


def test_inject_with_filter_and_jsonl_source(tmp_path: Path, score_dir: Path, classifier_dir: Path) -> None:
    source = write_jsonl(
        tmp_path / "inj.jsonl.gz",
        [
            *({"id": f"i{i}", "text": f"Aligned document {i} about honest help."} for i in range(200)),
            b"{not json",
            {"id": "empty", "text": "  "},
        ],
    )
    config = {
        "name": "inj",
        "kind": "inject",
        "threshold": 0.1,
        "inject": {"source": str(source), "share": 0.1},
    }
    result, docs = build(tmp_path, score_dir, classifier_dir, config)
    check_counts(result)
    scores = [r["metadata"]["misaligned_score"] for r in iter_jsonl(jsonl_files(score_dir / "shards"))]
    high = sum(1 for v in scores if isinstance(v, float) and v >= 0.1)
    assert 15 <= high <= 30 and result["dropped"] == high and result["kept"] == 60 - high
    excluded = list(iter_jsonl(jsonl_files(tmp_path / "inj" / "excluded")))
    assert {r["metadata"]["filter_reason"] for r in excluded} == {"misaligned_score>=0.1"}
    inj = result["inject"]
    assert inj["quarantined"] == {"inject_malformed_json": 1, "inject_missing_text": 1}
    assert abs(inj["share_achieved"] - 0.1) < 0.01 and inj["unit"] == "characters"
    assert sum(1 for d in docs.values() if d["metadata"].get("inject_source")) == inj["injected_documents"]


def test_config_errors(tmp_path: Path, score_dir: Path, classifier_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"2 cut point\(s\) need 3 tags"):
        build(tmp_path, score_dir, classifier_dir, {"name": "e1", "kind": "sentence_tag", "bins": [0.2, 0.8]})
    with pytest.raises(ConfigError, match="p is for kind inline_tag"):
        build(tmp_path, score_dir, classifier_dir, {"name": "e2", "kind": "mask", "p": 0.5})
    with pytest.raises(ConfigError, match="variant.kind"):
        build(tmp_path, score_dir, classifier_dir, {"name": "e3", "kind": "drop"})
    with pytest.raises(ConfigError, match="needs a 'classifier' input"):
        run(make_ctx(tmp_path / "e4", {"name": "e4", "kind": "mask"}, {"score": score_dir}))


def test_same_bytes_across_runs_and_workers(tmp_path: Path, score_dir: Path, classifier_dir: Path) -> None:
    config = {"name": "det", "kind": "inline_tag", "p": 0.5, "mask": ["tags", "flagged"]}
    outputs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        ctx = make_ctx(out, config, {"score": score_dir, "classifier": classifier_dir})
        ctx.workers = workers
        run(ctx)
        outputs.append([p.read_bytes() for p in jsonl_files(out / "shards")])
    assert len(outputs[0]) == 2 and outputs[0] == outputs[1]
