"""Classifier files checked before any stage runs, and a transformer's max_length capped at what it takes.

A newcomer's findings: ``max_length: 512`` on a model with 64 positions crashed the score stage; a missing local
model folder, terms file or fastText .bin, a label the model does not have and a folder that is not a
tokenizer passed ``propensity plan`` and failed after earlier stages ran; plan's list of inputs left out the
classifier's files and printed an empty header for synthetic configs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from datatrove.data import Document
from filters_fixtures import BAD_TEXT, make_ctx, make_docs, write_jsonl

from core.errors import ConfigError, InputDataError
from filters import classifier
from filters import score_stage as scoring
from filters.transformer import TransformerScorer
from propensity.config import load_config

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
LONG_TEXT = " ".join([BAD_TEXT] * 30)  # ~400 tokens; the tiny model has 64 positions


def _long_corpus(root: Path) -> Path:
    """A source folder with short documents and one long one."""
    docs = make_docs(6, 1, "a") + [{"id": "long", "text": LONG_TEXT, "metadata": {"label": "misaligned"}}]
    write_jsonl(root / "shards" / "00000.jsonl", docs)
    spec = {"format": "jsonl", "paths": ["shards/00000.jsonl"], "text_key": "text", "id_key": "id", "labelled": {}}
    (root / "source.json").write_text(json.dumps(spec))
    return root


def test_scorer_caps_max_length_at_the_model_positions(tiny_transformer: Path) -> None:
    """The docs' max_length 512 on a 64-position model: the first forward pass used to raise 'The expanded size
    of the tensor (512) must match the existing size (64)'."""
    scorer = TransformerScorer(str(tiny_transformer), "t_score", max_length=512, device="cpu")
    capped = TransformerScorer(str(tiny_transformer), "t_score", max_length=64, device="cpu")
    docs = [Document(text=LONG_TEXT, id="long"), Document(text=BAD_TEXT, id="short")]
    assert scorer.score_batch(docs) == pytest.approx(capped.score_batch(docs), abs=1e-6)
    assert scorer.policy["max_length"] == 64
    chunked = TransformerScorer(str(tiny_transformer), "t_score", max_length=512, chunking="max", stride=8)
    assert len(chunked.score_batch(docs)) == 2 and chunked.max_length == 64


def test_classifier_and_score_stages_record_the_cap(tmp_path: Path, tiny_transformer: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    corpus = _long_corpus(tmp_path / "source")
    config = {"name": "bert", "kind": "transformer",
              "transformer": {"model": str(tiny_transformer), "max_length": 512, "device": "cpu"}}
    with caplog.at_level("WARNING", logger="propensity"):
        classifier.run(make_ctx("classifier", tmp_path / "cls", config, {"source": corpus}))
    assert "transformer.max_length 512 capped at 64" in caplog.text
    info = json.loads((tmp_path / "cls" / "classifier.json").read_text())
    assert info["params"]["max_length"] == 64
    assert info["max_length_cap"] == {"configured": 512, "effective": 64,
                                      "limited_by": "max_position_embeddings 64 in the model's config.json"}
    result = scoring.run(make_ctx("score", tmp_path / "score", {"name": "s", "plot": False},
                                  {"source": corpus, "classifier": tmp_path / "cls"}))
    assert result["scored"] == 7
    assert result["long_documents"]["bert_score"] == {
        "chunking": "truncate", "max_length": 64, "stride": 0, "max_chunks": None, "max_length_configured": 512,
        "max_length_limited_by": "max_position_embeddings 64 in the model's config.json"}


def test_length_limit_offsets_roberta_positions_and_reads_the_tokenizer() -> None:
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from filters.transformer import effective_max_length, length_limit

    config = RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=34, pad_token_id=1)
    with torch.device("meta"):
        model = RobertaForSequenceClassification(config)
    unset = SimpleNamespace(model_max_length=int(1e30))
    assert length_limit(model, unset) == (
        32, "the model's 34 position embeddings less 2 (positions start after the padding index 1)")
    assert length_limit(model, SimpleNamespace(model_max_length=20)) == (20, "the tokenizer's model_max_length 20")
    assert effective_max_length(16, 4, model, unset) == (16, None)
    assert effective_max_length(512, 4, model, unset)[0] == 32
    with pytest.raises(ConfigError, match=r"transformer.stride 30 must be < the effective max_length - 2 \(30\)"):
        effective_max_length(512, 30, model, unset)


def _load(*overrides: str) -> object:
    return load_config(TINY, list(overrides))


def test_plan_refuses_missing_local_classifier_files(tmp_path: Path, model_path: Path) -> None:
    nope = tmp_path / "nope.txt"
    with pytest.raises(ConfigError, match=rf"classifier.blocklist.terms_file: file '{nope}' does not exist "
                                          r"\(resolved against the working directory: .*nope.txt\)"):
        _load(f"classifier={{name: b, kind: blocklist, blocklist: {{terms_file: {nope}}}}}")
    cascade = (f"classifier={{name: c, kind: cascade, stages: [{{name: a, kind: blocklist, escalate_at: 1.0, "
               f"blocklist: {{terms: [x]}}}}, {{name: f, model_path: {tmp_path / 'm.bin'}}}]}}")
    with pytest.raises(ConfigError, match=r"classifier.stages.1.model_path: file .*m.bin' does not exist"):
        _load(cascade)
    with pytest.raises(ConfigError, match=r"classifier.transformer.model: './models/nope' does not exist: it is "
                                          r"not a local folder \(resolved against the working directory: "):
        _load("classifier={name: t, kind: transformer, transformer: {model: ./models/nope}}")
    with pytest.raises(ConfigError, match=r"transformer.model: the folder .* has no config.json"):
        _load(f"classifier={{name: t, kind: transformer, transformer: {{model: {tmp_path}}}}}")
    # a string that can be a hub id is one (transformers' rule): accepted, looked up by the stage
    from filters.model_files import classifier_files, model_location

    cfg = _load("classifier={name: t, kind: transformer, transformer: {model: models/nope}}")
    assert classifier_files(cfg.classifier)[0][1].startswith("models/nope: a hub id (there is no local folder ")
    assert model_location("models/nope") == "hub" and model_location("./models/nope") == "missing"
    assert model_location(str(model_path)) == "missing" and model_location(str(tmp_path)) == "folder"


def test_plan_refuses_labels_the_model_does_not_have(tiny_transformer: Path) -> None:
    model = f"classifier={{name: t, kind: transformer, transformer: {{model: {tiny_transformer}"
    with pytest.raises(ConfigError, match=r"classifier.transformer.label: 'bogus' is not one of the labels "
                                          r"\{0: 'aligned', 1: 'misaligned'\}"):
        _load(model + ", label: bogus}}")
    with pytest.raises(ConfigError, match=r"transformer.label: 5 is not one of the labels"):
        _load(model + ", label: 5}}")
    with pytest.raises(ConfigError, match=r"classifier.positive_label: 'toxic' is not one of the labels .* so the "
                                          r"score would silently be label 'misaligned'"):
        _load(f"classifier={{name: t, kind: transformer, positive_label: toxic, transformer: "
              f"{{model: {tiny_transformer}}}}}")
    _load(model + ", label: misaligned}}")
    _load(model + "}}")  # default positive_label 'misaligned' is a label


def test_plan_refuses_a_fasttext_model_without_the_positive_label(model_path: Path) -> None:
    from propensity.preflight import check_inputs

    cfg = _load(f"classifier={{name: f, model_path: {model_path}, positive_label: toxic}}")
    with pytest.raises(ConfigError, match=r"classifier.positive_label: 'toxic' is not a label of the fastText "
                                          r"model .*; its labels: \['aligned', 'misaligned'\]"):
        check_inputs(cfg)


def test_plan_refuses_a_folder_that_is_not_a_tokenizer(tmp_path: Path, tiny_transformer: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a tokenizer")
    with pytest.raises(ConfigError, match=rf"tokenizer.path: '{tmp_path}' is not a tokenizer folder: .* holds none "
                                          r"of tokenizer.json"):
        _load(f"tokenizer={{kind: pretrained, path: {tmp_path}}}")
    with pytest.raises(ConfigError, match=r"tokenizer.path: 'a/b/c' is not a tokenizer folder: there is no folder"):
        _load("tokenizer={kind: pretrained, path: a/b/c}")
    _load(f"tokenizer={{kind: pretrained, path: {tiny_transformer}}}")


def test_stage_error_for_a_hub_id_says_it_is_not_a_local_folder(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """'models/nope' can be a hub id, so plan lets it through; offline, the stage said only 'couldn't connect to
    huggingface.co'."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputDataError, match=r"transformer.model 'models/nope' cannot be loaded: it is not a local "
                                             rf"folder \(resolved against the working directory: {tmp_path}/models/"
                                             r"nope\); as a hub id it failed \(HF_HUB_OFFLINE is set"):
        TransformerScorer("models/nope", "t_score", device="cpu").load()


def test_plan_lists_every_classifier_file(tmp_path: Path, model_path: Path, tiny_transformer: Path) -> None:
    from propensity.preflight import check_inputs

    assert check_inputs(_load()) == []  # synthetic, built-in GPE: no file, no header
    terms = tmp_path / "terms.txt"
    terms.write_text("nerve agent\n")
    cfg = _load(f"classifier={{name: e, kind: ensemble, classifiers: [{{name: f, model_path: {model_path}}}, "
                f"{{name: b, kind: blocklist, blocklist: {{terms_file: {terms}}}}}, "
                f"{{name: t, kind: transformer, transformer: {{model: {tiny_transformer}}}}}]}}",
                f"tokenizer={{kind: pretrained, path: {tiny_transformer}}}")
    lines = check_inputs(cfg)
    assert lines == [
        f"inputs (relative paths are resolved against the working directory {os.getcwd()}):",
        f"  classifier.classifiers.0.model_path: {model_path.resolve()}",
        f"  classifier.classifiers.1.blocklist.terms_file: {terms.resolve()}",
        f"  classifier.classifiers.2.transformer.model: {tiny_transformer.resolve()}",
        f"  tokenizer.path: {tiny_transformer.resolve()}",
    ]
