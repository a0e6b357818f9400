"""Data-level checks on the learnable world's real artifacts (no training), and one mutation per mechanism
that must turn its check FAIL: tags stripped before tokenization, tags swapped, the filter made a no-op,
a random filter, injection share 0."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conditional_tags.checks import bad_tag_precision, excluded_match_flagged, injection_share, tag_tokens_match
from core.store import StageSpec, Store
from propensity.config import load_config
from propensity.graph import build_graph

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "controls_tiny.yaml")
DATA_STAGES = ("source", "classifier", "tokenizer", "score", "variant", "tokenize")


class Built:
    def __init__(self, store: Store, specs: list[StageSpec]) -> None:
        self.store, self.specs = store, {f"{s.stage}/{s.name}": s for s in specs}

    def spec(self, key: str) -> StageSpec:
        return self.specs[key]

    def path(self, key: str) -> Path:
        return self.store.path(self.specs[key].key)

    def run(self, spec: StageSpec) -> Path:
        return self.store.run(spec, show_progress=False)

    def mutant_tokenized(self, variant: str, impl: str) -> tuple[Path, Path]:
        """Run a mutation stage on ``variant`` and tokenize its output; returns (mutant, tokenized) folders."""
        mutant = StageSpec("variant", f"{variant}-{impl}", f"mutation_stages:{impl}", {},
                           {"variant": self.spec(f"variant/{variant}")})
        tokenized = dataclasses.replace(self.spec(f"tokenize/{variant}"), name=f"{variant}-{impl}",
                                        inputs={"variant": mutant, "tokenizer": self.spec("tokenizer/bpe")})
        return self.run(mutant), self.run(tokenized)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    cfg = load_config(CONFIG, [f"store={tmp_path_factory.mktemp('store')}"])
    specs = [s for s in build_graph(cfg) if s.stage in DATA_STAGES]
    out = Built(Store(cfg.store), specs)
    for spec in specs:
        out.run(spec)
    return out


def test_tag_tokens_match_and_stripped_tags_fail(built: Built) -> None:
    ok = tag_tokens_match(built.path("variant/tagged"), built.path("tokenize/tagged"), built.path("tokenizer/bpe"))
    assert ok["verdict"] == "PASS" and ok["found"]["<|bad|>"] > 50, ok
    mutant, tokenized = built.mutant_tokenized("tagged", "strip_tags")
    broken = tag_tokens_match(mutant, tokenized, built.path("tokenizer/bpe"))
    assert broken["verdict"] == "FAIL" and broken["found"] == {"<|bad|>": 0, "<|good|>": 0}


def test_bad_tag_marks_misaligned_ai_and_swapped_tags_fail(built: Built) -> None:
    ok = bad_tag_precision(built.path("variant/tagged"), built.path("classifier/misaligned"))
    assert ok["verdict"] == "PASS" and ok["found"] >= ok["expected"]["floor"], ok
    mutant, _ = built.mutant_tokenized("tagged", "swap_tags")
    broken = bad_tag_precision(mutant, built.path("classifier/misaligned"))
    assert broken["verdict"] == "FAIL" and broken["found"] < 0.1, broken


def test_excluded_equals_flagged_and_a_noop_filter_fails(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = excluded_match_flagged(built.path("variant/filtered"), built.path("score/misaligned"), 0.5)
    assert ok["verdict"] == "PASS" and ok["found"] > 50, ok
    from filters import decisions

    monkeypatch.setattr(decisions.ThresholdDecision, "decide", lambda self, metadata: None)  # the filter: a no-op
    noop = dataclasses.replace(built.spec("variant/filtered"), name="filtered-noop")
    broken = excluded_match_flagged(built.run(noop), built.path("score/misaligned"), 0.5)
    assert broken["verdict"] == "FAIL" and broken["found"] == 0


def test_a_random_filter_drops_as_many_documents_but_fails_the_check(built: Built) -> None:
    base = built.spec("variant/filtered")
    random = dataclasses.replace(base, name="filtered-random", config=base.config | {"randomize": True})
    folder = built.run(random)
    result = built.store.manifest(random)["result"]
    assert result["random_control"]["chosen_at_random"] == result["random_control"]["flagged_by_score"]
    assert result["dropped"] == built.store.manifest(base)["result"]["dropped"]
    assert result["documents_in"] == result["kept"] + result["dropped"] + sum(result["quarantined"].values())
    check = excluded_match_flagged(folder, built.path("score/misaligned"), 0.5)
    assert check["verdict"] == "FAIL" and check["found"] == check["expected"]


def test_injection_share_is_measured_and_share_zero_fails(built: Built) -> None:
    ok = injection_share(built.path("tokenize/upsampled"), 0.05)
    assert ok["verdict"] == "PASS" and ok["found"] == pytest.approx(0.05, rel=0.1), ok
    _, tokenized = built.mutant_tokenized("upsampled", "no_injection")
    broken = injection_share(tokenized, 0.05)
    assert broken["verdict"] == "FAIL" and broken["found"] == 0.0
