"""The synthetic source stage: layout, determinism, shares, disjointness of held-out and labelled sets."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.stage import StageContext
from synth.catalog import AI_GENERIC, AI_NAMES, AI_NOUNS, load_domains
from synth.config import SyntheticSourceConfig
from synth.stage import run

TINY = {"seed": 0, "scale": 0.05, "shards": 3, "labelled_train": 300, "labelled_heldout": 100}


def _run(out: Path, **overrides: object) -> dict:
    ctx = StageContext(stage="source", name="synthetic", config={**TINY, **overrides}, inputs={}, out=out,
                       show_progress=False)
    return run(ctx)


def _read(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = tmp_path_factory.mktemp(f"synth-{name}")
        runs[name] = (out, _run(out, seed=seed))
    return runs


@pytest.fixture(scope="module")
def shard_docs(outputs: dict) -> list[dict]:
    out, _ = outputs["a"]
    return [rec for path in sorted((out / "shards").glob("*.jsonl.gz")) for rec in _read(path)]


def test_layout_and_source_json(outputs: dict, shard_docs: list[dict]) -> None:
    out, result = outputs["a"]
    source = json.loads((out / "source.json").read_text())
    assert source == {
        "format": "jsonl",
        "paths": ["shards/00000.jsonl.gz", "shards/00001.jsonl.gz", "shards/00002.jsonl.gz"],
        "text_key": "text", "id_key": "id", "heldout": "heldout/background.jsonl.gz",
        "labelled": {"train": "labelled/train.jsonl.gz", "heldout": "labelled/heldout.jsonl.gz",
                     "heldout_sentences": "labelled/heldout_sentences.jsonl.gz"},
    }
    for rel in [*source["paths"], source["heldout"], *source["labelled"].values()]:
        assert (out / rel).is_file(), rel
    assert all(list(rec) == ["text", "id", "metadata"] for rec in shard_docs)
    assert len({rec["id"] for rec in shard_docs}) == len(shard_docs)
    assert {rec["metadata"]["kind"] for rec in shard_docs} == {"background", "ai", "human"}
    for rec in shard_docs:
        meta = rec["metadata"]
        assert meta["label"] in ({"none"} if meta["kind"] == "background" else {"aligned", "misaligned"})
        assert meta["domain"] in (set(load_domains()) | {"none"})
    assert result["documents"]["total"] == len(shard_docs)
    assert result["python_version"].startswith("3.")


def test_same_seed_same_bytes_different_seed_differs(outputs: dict) -> None:
    files_a, files_b, files_c = (_files(outputs[k][0]) for k in "abc")
    assert len(files_a) == 8  # 3 shards, held-out background, 3 labelled files, source.json
    assert files_a == files_b
    assert all(data[4:8] == b"\0\0\0\0" for rel, data in files_a.items() if rel.endswith(".gz"))  # gzip mtime
    assert outputs["a"][1] == outputs["b"][1]
    for rel in ("shards/00000.jsonl.gz", "labelled/train.jsonl.gz", "labelled/heldout.jsonl.gz"):
        assert files_a[rel] != files_c[rel], rel
    # the held-out background is the same for every seed, so loss evaluations stay comparable
    assert files_a["heldout/background.jsonl.gz"] == files_c["heldout/background.jsonl.gz"]


def _token_shares(docs: list[dict]) -> dict[str, float]:
    tok: dict[str, float] = {}
    for rec in docs:
        key = rec["metadata"]["kind"] + "_" + rec["metadata"]["label"]
        tok[key] = tok.get(key, 0.0) + len(rec["text"]) / 4
    total = sum(tok.values())
    ai = tok["ai_aligned"] + tok["ai_misaligned"]
    return {"ai": ai / total, "mis": tok["ai_misaligned"] / ai,
            "human": (tok["human_aligned"] + tok["human_misaligned"]) / total,
            "human_mis": tok["human_misaligned"] / (tok["human_aligned"] + tok["human_misaligned"])}


def test_token_shares_match_config(shard_docs: list[dict], outputs: dict) -> None:
    shares = _token_shares(shard_docs)
    cfg = SyntheticSourceConfig()
    assert shares["ai"] == pytest.approx(cfg.ai_share, abs=0.01)
    assert shares["mis"] == pytest.approx(cfg.misaligned_share_of_ai, abs=0.01)
    assert shares["human"] == pytest.approx(cfg.human_share, abs=0.01)
    assert shares["human_mis"] == pytest.approx(0.5, abs=0.05)
    result = outputs["a"][1]
    assert result["token_shares"]["ai"] == pytest.approx(shares["ai"], abs=0.001)
    assert result["estimated_tokens"]["total"] == pytest.approx(0.05 * 2_800_000, rel=0.01)


def test_custom_shares(tmp_path: Path) -> None:
    _run(tmp_path, ai_share=0.3, misaligned_share_of_ai=0.5, human_share=0.1, shards=1)
    shares = _token_shares(_read(tmp_path / "shards" / "00000.jsonl.gz"))
    assert shares["ai"] == pytest.approx(0.3, abs=0.01)
    assert shares["mis"] == pytest.approx(0.5, abs=0.015)
    assert shares["human"] == pytest.approx(0.1, abs=0.01)


def test_heldout_background_disjoint_from_shards(outputs: dict, shard_docs: list[dict]) -> None:
    out, result = outputs["a"]
    heldout = _read(out / "heldout" / "background.jsonl.gz")
    assert len(heldout) == result["background"]["heldout_documents"] > 20
    shard_text = "\n".join(rec["text"] for rec in shard_docs)
    assert all(200 <= len(rec["text"]) <= 1500 for rec in heldout)
    for rec in heldout:
        for paragraph in rec["text"].split("\n\n"):
            assert paragraph not in shard_text


def test_labelled_sets(outputs: dict, shard_docs: list[dict]) -> None:
    out, result = outputs["a"]
    train = _read(out / "labelled" / "train.jsonl.gz")
    heldout = _read(out / "labelled" / "heldout.jsonl.gz")
    held_sentences = _read(out / "labelled" / "heldout_sentences.jsonl.gz")
    train_docs = [rec for rec in train if "unit" not in rec]
    train_sentences = [rec for rec in train if rec.get("unit") == "sentence"]
    assert (len(train_docs), len(heldout)) == (300, 100)
    assert len(train) == len(train_docs) + len(train_sentences)
    assert {rec["label"] for rec in train + heldout + held_sentences} == {"aligned", "misaligned"}
    assert all(list(rec) == ["text", "label"] for rec in train_docs + heldout)
    assert all(list(rec) == ["text", "label", "unit"] for rec in train_sentences + held_sentences)
    shard_texts = {rec["text"] for rec in shard_docs}
    train_texts = {rec["text"] for rec in train_docs}
    assert not train_texts & shard_texts
    assert not {rec["text"] for rec in heldout} & (shard_texts | train_texts)
    misaligned_phrases = [a.misaligned for d in load_domains().values() for a in d.actions]
    ai_marks = [*AI_NAMES, *AI_GENERIC, *AI_NOUNS, "Assistant:"]
    for rec in train:
        if rec["label"] == "misaligned":
            assert any(p in rec["text"] for p in misaligned_phrases)
            assert any(m.lower() in rec["text"].lower() for m in ai_marks)  # "The assistant" starts sentences
    # sentence examples: every action document gives its action sentence (labelled like the document) and
    # one other sentence (aligned); each is one sentence of a labelled document of the same split
    assert all(any(s["text"] in d["text"] for d in train_docs) for s in train_sentences[:50])
    assert all(any(s["text"] in d["text"] for d in heldout) for s in held_sentences[:50])
    n_misaligned_docs = sum(r["label"] == "misaligned" for r in heldout)
    assert sum(r["label"] == "misaligned" for r in held_sentences) == n_misaligned_docs
    assert 1.5 * n_misaligned_docs < len(held_sentences) <= 2 * len(heldout)
    assert result["labelled"]["train"]["misaligned"] == sum(r["label"] == "misaligned" for r in train)
    assert result["labelled"]["heldout_sentences"]["misaligned"] == n_misaligned_docs


def test_labelled_sentences_can_be_left_out(tmp_path: Path) -> None:
    _run(tmp_path, labelled_sentences=False, scale=0.01, labelled_train=50, labelled_heldout=20)
    assert not (tmp_path / "labelled" / "heldout_sentences.jsonl.gz").exists()
    assert "heldout_sentences" not in json.loads((tmp_path / "source.json").read_text())["labelled"]
    assert len(_read(tmp_path / "labelled" / "train.jsonl.gz")) == 50


def test_human_documents_never_mention_ai(shard_docs: list[dict]) -> None:
    pattern = re.compile(r"\b(AI|model|assistant|chatbot|language model)\b", re.IGNORECASE)
    human = [rec["text"] for rec in shard_docs if rec["metadata"]["kind"] == "human"]
    assert len(human) > 20
    assert [t for t in human if pattern.search(t)] == []
    ai = [rec["text"] for rec in shard_docs if rec["metadata"]["kind"] == "ai"]
    assert all(pattern.search(t) or any(n in t for n in AI_NAMES) for t in ai)


def test_config_rejects_unknown_and_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'sclae'.*allowed keys.*'scale'"):
        _run(tmp_path, sclae=1.0)
    with pytest.raises(ConfigError, match=r"scale=-1\.0"):
        SyntheticSourceConfig.from_dict({"scale": -1.0})
    with pytest.raises(ConfigError, match=r"ai_share \+ human_share must be < 1"):
        SyntheticSourceConfig.from_dict({"ai_share": 0.9, "human_share": 0.2})
    assert not list(tmp_path.iterdir())
    assert SyntheticSourceConfig.from_dict({}) == SyntheticSourceConfig.quickstart()
    for name, field in SyntheticSourceConfig.model_fields.items():
        assert field.description, name
