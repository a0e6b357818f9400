"""Injection: achieved share within 1% (characters and tokens), the training-window schedule, sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ct_fixtures import make_ctx, make_docs, write_jsonl

from conditional_tags.config import InjectSpec
from conditional_tags.inject import inject, text_digest, token_measure
from core.errors import InputDataError
from filters.datatrove_stage import iter_jsonl
from pretrain.data import injected_rows, injected_rows_before, window_steps


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """3,000 three-sentence documents (~900k characters)."""
    return [write_jsonl(tmp_path_factory.mktemp("base") / "00000.jsonl.gz", make_docs(3000, 5, "base"))]


def test_synthetic_share_within_one_percent_and_deterministic(tmp_path: Path, base: list[Path]) -> None:
    spec = InjectSpec(share=0.05, seed=3)
    result = inject(tmp_path / "a", spec, base)
    assert result["unit"] == "characters" and result["injected_documents"] > 5
    assert abs(result["share_achieved"] - 0.05) <= 0.01 * 0.05
    injected = list(iter_jsonl([tmp_path / "a" / "shards" / "injected.jsonl.gz"]))
    assert len(injected) == result["injected_documents"]
    assert sum(len(r["text"]) for r in injected) == result["injected_characters"]
    assert {r["metadata"]["label"] for r in injected} == {"aligned"} and {
        r["metadata"]["kind"] for r in injected
    } == {"ai"}
    base_digests = {text_digest(r["text"]) for r in iter_jsonl(base)}
    assert not base_digests & {text_digest(r["text"]) for r in injected}
    assert inject(tmp_path / "b", spec, base) == result
    assert (tmp_path / "a/shards/injected.jsonl.gz").read_bytes() == (
        tmp_path / "b/shards/injected.jsonl.gz"
    ).read_bytes()
    assert not (tmp_path / "a" / "schedule.json").exists()


@pytest.mark.parametrize("share", [0.01, 0.1, 0.3])
def test_token_share_within_one_percent(
    tmp_path: Path, base: list[Path], tokenizer_dir: Path, share: float
) -> None:
    measure = token_measure(tokenizer_dir)
    result = inject(tmp_path, InjectSpec(share=share), base, measure)
    injected = list(iter_jsonl([tmp_path / "shards" / "injected.jsonl.gz"]))
    base_tokens = sum(measure([r["text"] for r in iter_jsonl(base)]))
    injected_tokens = sum(measure([r["text"] for r in injected]))
    assert result["unit"] == "tokens" and result["injected_tokens"] == injected_tokens
    achieved = injected_tokens / (base_tokens + injected_tokens)
    assert result["share_achieved"] == pytest.approx(achieved)
    assert abs(achieved - share) <= 0.01 * share  # within 1% of the target share


def test_window_schedule_share_and_window_within_one_percent(tmp_path: Path, base: list[Path]) -> None:
    spec = InjectSpec(share=0.02, window=(0.9, 1.0))
    result = inject(tmp_path, spec, base)
    assert (tmp_path / "inject" / "injected.jsonl.gz").is_file()
    assert not (tmp_path / "shards" / "injected.jsonl.gz").exists()
    schedule = json.loads((tmp_path / "schedule.json").read_text())["inject"]
    assert schedule["window"] == [0.9, 1.0] and schedule["injected_documents"] == result["injected_documents"]
    steps, batch = 1000, 32
    rows = [injected_rows(s, steps, batch, (0.9, 1.0), 0.02) for s in range(steps)]
    first, end = window_steps((0.9, 1.0), steps)
    assert (first, end) == (900, 1000)
    assert sum(rows) / (steps * batch) == pytest.approx(0.02, rel=0.01)
    assert all(r == 0 for r in rows[:first]) and all(r in (6, 7) for r in rows[first:])
    assert sum(rows[first:]) == sum(rows)
    assert [injected_rows_before(s, steps, batch, (0.9, 1.0), 0.02) for s in (0, 900, 950, 1000)] == [
        0,
        0,
        sum(rows[:950]),
        sum(rows),
    ]


def test_file_source_repeat_and_exhaustion(tmp_path: Path, base: list[Path]) -> None:
    source = write_jsonl(
        tmp_path / "src.jsonl.gz", [{"id": f"s{i}", "text": "Aligned text. " * 5} for i in range(3)]
    )
    with pytest.raises(InputDataError, match="allow_repeat"):
        inject(tmp_path / "x", InjectSpec(source=str(source), share=0.2), base)
    result = inject(tmp_path / "y", InjectSpec(source=str(source), share=0.2, allow_repeat=True), base)
    assert result["repeated_documents"] == result["injected_documents"] - 3
    assert abs(result["share_achieved"] - 0.2) <= 0.01 * 0.2
    ids = [r["id"] for r in iter_jsonl([tmp_path / "y" / "shards" / "injected.jsonl.gz"])]
    assert len(ids) == len(set(ids)) and any(i.endswith("#rep1") for i in ids)
    with pytest.raises(InputDataError, match="does not exist"):
        inject(tmp_path / "z", InjectSpec(source=str(tmp_path / "nope.jsonl"), share=0.1), base)


def test_a_file_sources_control_strings_are_escaped_and_counted(tmp_path: Path, base: list[Path]) -> None:
    """Injected documents are pretraining text like the corpus: a literal <|bad|> or <|endoftext|> in them must
    not become a tag or a document boundary when tokenized."""
    texts = ["Aligned text <|bad|> here and <|endoftext|> there. " * 3, "Plain aligned text. " * 5]
    source = write_jsonl(tmp_path / "src.jsonl.gz", [{"id": f"s{i}", "text": t} for i, t in enumerate(texts)])
    result = inject(tmp_path / "x", InjectSpec(source=str(source), share=0.2, allow_repeat=True), base)
    injected = list(iter_jsonl([tmp_path / "x" / "shards" / "injected.jsonl.gz"]))
    assert not any("<|" in r["text"] for r in injected)
    with_strings = [r for r in injected if r["id"].split("#")[0] == "s0"]
    assert with_strings and all("<\u00a6bad\u00a6>" in r["text"] for r in with_strings)
    assert result["control_strings_escaped"] == {"documents": len(with_strings), "strings": 6 * len(with_strings)}
    assert sum(r["metadata"].get("control_strings_escaped", 0) for r in injected) == 6 * len(with_strings)
    assert "control_strings_escaped" not in inject(tmp_path / "y", InjectSpec(share=0.05), base)


def test_inject_spec_validation() -> None:
    with pytest.raises(ValueError, match="cannot fit in window"):
        InjectSpec(share=0.2, window=(0.9, 1.0))
    with pytest.raises(ValueError, match="0 <= start < end <= 1"):
        InjectSpec(share=0.01, window=(0.5, 0.4))


def test_windowed_injection_end_to_end_variant_tokenize_train(
    tmp_path: Path, score_dir: Path, tokenizer_dir: Path
) -> None:
    """variant (inject/ + schedule.json) -> tokenize (tokens_inject/) -> train: the run injects the share of
    rows inside the window only, and its manifest says so."""
    from conditional_tags.stage import run as variant_run
    from pretrain.data import TokenFolder
    from pretrain.tokenize_docs import run as tokenize_run
    from pretrain.train import run as train_run

    source = write_jsonl(
        tmp_path / "aligned.jsonl.gz",
        [{"id": f"al{i}", "text": f"The assistant stayed honest and asked first, case {i}."}
         for i in range(400)],
    )
    variant = tmp_path / "variant"
    inject_spec = {"source": str(source), "share": 0.2, "window": [0.5, 1.0]}
    spec = {"name": "late", "kind": "inject", "inject": inject_spec}
    variant_run(make_ctx(variant, spec, {"score": score_dir, "tokenizer": tokenizer_dir}))
    assert (variant / "schedule.json").is_file() and not (variant / "shards" / "injected.jsonl.gz").exists()
    tokens = tmp_path / "tokens"
    tok = tokenize_run(make_ctx(tokens, {}, {"variant": variant, "tokenizer": tokenizer_dir}, "tokenize"))
    assert tok["inject"]["window"] == [0.5, 1.0] and tok["inject"]["share"] == 0.2
    assert tok["inject"]["documents"] == TokenFolder(tokens / "tokens_inject").n_documents > 0
    config = {"model": "tiny", "tokens": 8 * 16 * 20, "seq_len": 16, "batch_size": 8, "warmup_steps": 1,
              "checkpoint_every": 0}
    result = train_run(make_ctx(tmp_path / "train", config, {"tokenize": tokens, "tokenizer": tokenizer_dir},
                                "train"))
    report = result["inject"]
    assert report["steps"] == [10, 20] and report["rows_total"] == 160 and report["rows_injected"] == 32
    assert report["share_rows"] == pytest.approx(0.2, rel=0.01)
    assert 0.1 < report["share_tokens"] < 0.3 and report["targets_injected"] > 0
    assert (tmp_path / "train" / "model" / "model.safetensors").is_file()
