"""Score and variant stages end to end on the toy corpus: counts, exact decisions, layout, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datatrove.data import Document
from filters_fixtures import BAD_TEXT, GOOD_TEXT, make_ctx, write_jsonl

from conditional_tags import document_tag
from core.errors import ConfigError
from filters import score_stage as scoring
from filters import variants
from filters.datatrove_stage import iter_jsonl, jsonl_files
from filters.variants import ScoreValidator, ThresholdFilter
from filters.writers import ReproducibleJsonlWriter


def shard_docs(folder: Path) -> list[dict]:
    return list(iter_jsonl(jsonl_files(folder)))


def test_score_stage_counts_and_layout(score_dir: Path, corpus_dir: Path) -> None:
    result = json.loads((score_dir / "result.json").read_text())
    assert (result["documents_in"], result["scored"], result["quarantined"]) == (60, 60, {})
    assert sum(result["histogram"].values()) == 60
    assert result["flagged_by_label"]["misaligned"] == {"n": 20, "flagged": 20, "fraction": 1.0}
    assert result["flagged_by_label"]["aligned"]["flagged"] == 0
    assert sorted(p.name for p in (score_dir / "shards").iterdir()) == ["00000.jsonl.gz", "00001.jsonl.gz"]
    assert sorted(p.name for p in (score_dir / "logs" / "completions").iterdir()) == ["00000", "00001"]
    assert json.loads((score_dir / "score.json").read_text()) == {
        "score_key": "misaligned_score",
        "score_keys": ["misaligned_score"],
    }
    assert sorted(p.name for p in (score_dir / "scores").iterdir()) == ["00000.parquet", "00001.parquet"]
    source = shard_docs(corpus_dir / "shards")
    scored = shard_docs(score_dir / "shards")
    assert [(d["id"], d["text"]) for d in scored] == [(d["id"], d["text"]) for d in source]
    assert all(set(d["metadata"]) == {"label", "kind", "misaligned_score"} for d in scored)  # no file_path


def test_score_stage_quarantines_and_is_byte_reproducible(tmp_path: Path, classifier_dir: Path) -> None:
    src = tmp_path / "src"
    write_jsonl(
        src / "a.jsonl",
        [
            {"id": "bad", "text": BAD_TEXT + "\nsecond line"},
            b"{oops",
            {"id": "e", "text": ""},
            {"id": "good", "text": GOOD_TEXT},
        ],
    )
    (src / "source.json").write_text(json.dumps({"format": "jsonl", "paths": ["a.jsonl"]}))
    inputs = {"source": src, "classifier": classifier_dir}
    results = [scoring.run(make_ctx("score", tmp_path / f"s{i}", {"name": "s"}, inputs)) for i in range(2)]
    assert results[0]["documents_in"] == 4 and results[0]["scored"] == 2
    assert results[0]["quarantined"] == {"empty_text": 1, "malformed_json": 1}
    docs = shard_docs(tmp_path / "s0" / "shards")
    assert [(d["id"], d["metadata"]["misaligned_score"] >= 0.5) for d in docs] == [
        ("bad", True),
        ("good", False),
    ]
    assert docs[0]["text"] == BAD_TEXT + "\nsecond line"  # newline kept in the text
    for sub in ("shards/00000.jsonl.gz", "quarantine/00000.jsonl.gz"):
        assert (tmp_path / "s0" / sub).read_bytes() == (tmp_path / "s1" / sub).read_bytes()


def test_threshold_filter_exact_reasons_and_exclusions(tmp_path: Path) -> None:
    docs = [
        Document(text="low", id="a", metadata={"s": 0.2}),
        Document(text="high text kept", id="b", metadata={"s": 0.5}),
        Document(text="none", id="c", metadata={}),
    ]
    step = ThresholdFilter("s", 0.5, exclusion_writer=ReproducibleJsonlWriter(str(tmp_path / "ex")))
    assert [step.filter(d) for d in docs] == [True, (False, "s>=0.5"), (False, "missing_s")]
    assert [d.id for d in step.run(iter(docs))] == ["a"]
    excluded = shard_docs(tmp_path / "ex")
    assert [(d["id"], d["text"], d["metadata"]["filter_reason"]) for d in excluded] == [
        ("b", "high text kept", "s>=0.5"),
        ("c", "none", "missing_s"),
    ]
    assert step.stats["dropped_s>=0.5"].total == 1
    validator = ScoreValidator("s")
    assert [
        validator.filter(Document(text="t", id="x", metadata={"s": v})) for v in (0.0, 1.0, 1.5, "0.3", True)
    ] == [True, True, (False, "invalid_score"), (False, "invalid_score"), (False, "invalid_score")]


@pytest.mark.parametrize("workers", [1, 2])
def test_filter_variant(score_dir: Path, tmp_path: Path, workers: int) -> None:
    ctx = make_ctx(
        "variant",
        tmp_path / "v",
        {"name": "filtered", "kind": "filter", "threshold": 0.5},
        {"score": score_dir},
        workers=workers,
    )
    result = variants.run(ctx)
    assert (result["documents_in"], result["kept"], result["dropped"], result["quarantined"]) == (
        60,
        40,
        20,
        {},
    )
    assert result["by_label"]["dropped"] == {"misaligned": 20}
    kept, excluded = shard_docs(tmp_path / "v" / "shards"), shard_docs(tmp_path / "v" / "excluded")
    assert all(d["metadata"]["misaligned_score"] < 0.5 for d in kept)
    assert {d["metadata"]["filter_reason"] for d in excluded} == {"misaligned_score>=0.5"}
    by_id = {d["id"]: d for d in shard_docs(score_dir / "shards")}
    assert all(d["text"] == by_id[d["id"]]["text"] for d in excluded)  # full text kept
    assert result["characters_in"] == result["characters_kept"] + sum(len(d["text"]) for d in excluded)


def test_baseline_and_tag_variants_share_scores(score_dir: Path, tmp_path: Path) -> None:
    base = variants.run(
        make_ctx("variant", tmp_path / "b", {"name": "b", "kind": "baseline"}, {"score": score_dir})
    )
    assert (base["kept"], base["dropped"], base["characters_kept"]) == (60, 0, base["characters_in"])
    assert shard_docs(tmp_path / "b" / "shards") == shard_docs(score_dir / "shards")
    config = {"name": "t", "kind": "tag", "tags": {"good": "<G>", "bad": "<B>"}, "separator": " "}
    tag = document_tag.run(make_ctx("variant", tmp_path / "t", config, {"score": score_dir}))
    assert tag["tags"] == {"<B>": 20, "<G>": 40}
    for doc, orig in zip(
        shard_docs(tmp_path / "t" / "shards"), shard_docs(score_dir / "shards"), strict=True
    ):
        expected_tag = "<B>" if orig["metadata"]["misaligned_score"] >= 0.5 else "<G>"
        assert doc["text"] == f"{expected_tag} {orig['text']}" and doc["metadata"]["tag"] == expected_tag


def test_variant_quarantines_missing_scores(tmp_path: Path) -> None:
    score = tmp_path / "score"
    write_jsonl(
        score / "shards" / "00000.jsonl.gz",
        [
            {"id": "a", "text": "scored", "metadata": {"m_score": 0.9}},
            {"id": "b", "text": "unscored", "metadata": {}},
            {"id": "c", "text": "low", "metadata": {"m_score": 0.1}},
        ],
    )
    (score / "score.json").write_text(json.dumps({"score_key": "m_score"}))
    result = variants.run(
        make_ctx("variant", tmp_path / "v", {"name": "f", "kind": "filter"}, {"score": score})
    )
    assert (result["documents_in"], result["kept"], result["dropped"]) == (3, 1, 1)
    assert result["quarantined"] == {"missing_score": 1}
    (record,) = shard_docs(tmp_path / "v" / "quarantine")
    assert record["reason"] == "missing_score" and record["id"] == "b" and '"unscored"' in record["raw"]


def test_tag_kind_is_built_with_the_conditional_tags_step(score_dir: Path, tmp_path: Path) -> None:
    config = {"name": "t", "kind": "tag", "threshold": 0.5}
    with pytest.raises(ConfigError, match="built by conditional_tags.document_tag:run"):
        variants.run(make_ctx("variant", tmp_path / "t", config, {"score": score_dir}))


def test_variant_config_errors(score_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"variant.kind must be one of \['baseline', 'filter', 'tag'\], got 'drop'"
    ):
        variants.run(make_ctx("variant", tmp_path / "v", {"name": "x", "kind": "drop"}, {"score": score_dir}))
    with pytest.raises(ConfigError, match="untagged_fraction must be in"):
        document_tag.run(
            make_ctx(
                "variant",
                tmp_path / "v",
                {"name": "x", "kind": "tag", "untagged_fraction": 2},
                {"score": score_dir},
            )
        )
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['treshold'\]"):
        variants.run(
            make_ctx(
                "variant",
                tmp_path / "v",
                {"name": "x", "kind": "filter", "treshold": 0.3},
                {"score": score_dir},
            )
        )


def test_rerun_after_a_crash_redoes_only_unfinished_ranks(
    score_dir: Path, corpus_dir: Path, classifier_dir: Path, tmp_path: Path
) -> None:
    import shutil

    work = tmp_path / "partial"
    shutil.copytree(score_dir, work)
    (work / "shards" / "00001.jsonl.gz").unlink()
    (work / "logs" / "completions" / "00001").unlink()
    finished = (work / "shards" / "00000.jsonl.gz").stat().st_mtime_ns
    inputs = {"source": corpus_dir, "classifier": classifier_dir}
    result = scoring.run(make_ctx("score", work, {"name": "s"}, inputs))
    assert (result["documents_in"], result["scored"]) == (60, 60)
    assert (work / "shards" / "00000.jsonl.gz").stat().st_mtime_ns == finished  # rank 0 skipped
    assert (work / "shards" / "00001.jsonl.gz").read_bytes() == (
        score_dir / "shards" / "00001.jsonl.gz"
    ).read_bytes()


def test_lead_config_shapes(score_dir: Path, tmp_path: Path) -> None:
    """Configs as propensity's graph dumps them: explicit score_key, threshold None for the baseline."""
    base = {
        "name": "base",
        "kind": "baseline",
        "threshold": None,
        "tags": {"good": "<|good|>", "bad": "<|bad|>"},
        "untagged_fraction": 0.0,
        "separator": "",
        "score_key": "misaligned_score",
    }
    result = variants.run(make_ctx("variant", tmp_path / "b", base, {"score": score_dir}))
    assert (result["kept"], result["threshold"]) == (60, None)
    tag = base | {"name": "tag", "kind": "tag", "threshold": 0.5, "untagged_fraction": 0.5}
    result = document_tag.run(make_ctx("variant", tmp_path / "t", tag, {"score": score_dir}))
    assert sum(result["tags"].values()) == 60 and 0 < result["tags"]["None"] < 60


def test_control_strings_in_source_text_are_escaped_and_counted(tmp_path: Path, classifier_dir: Path) -> None:
    """A web page that says '<|endoftext|>' or '<|bad|>' must not become a document boundary or a tag: the
    score stage escapes such strings once, where source text enters, and counts them."""
    from core.names import escape_control_strings

    src = tmp_path / "src"
    write_jsonl(src / "a.jsonl", [
        {"id": "web", "text": "The GPT-2 separator <|endoftext|> and a <|bad|> tag, quoted in a blog post."},
        {"id": "plain", "text": GOOD_TEXT + " Unrelated <| bars |> and a | pipe."},
    ])
    (src / "source.json").write_text(json.dumps({"format": "jsonl", "paths": ["a.jsonl"]}))
    inputs = {"source": src, "classifier": classifier_dir}
    result = scoring.run(make_ctx("score", tmp_path / "s", {"name": "s"}, inputs))
    assert result["control_strings_escaped"] == {"documents": 1, "strings": 2}
    web, plain = shard_docs(tmp_path / "s" / "shards")
    assert web["text"] == ("The GPT-2 separator <\u00a6endoftext\u00a6> and a <\u00a6bad\u00a6> tag, quoted in a "
                           "blog post.")
    assert plain["text"] == GOOD_TEXT + " Unrelated <| bars |> and a | pipe."
    assert escape_control_strings("<|eot_id|><|im_start|>") == ("<\u00a6eot_id\u00a6><\u00a6im_start\u00a6>", 2)
