"""``propensity.export``: shards -> HF dataset folder -> ``datasets.load_dataset`` -> re-imported source."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml

from core.documents import load_source
from core.errors import ConfigError, StoreError
from core.stage import StageContext
from filters import sources
from filters.datatrove_stage import iter_jsonl
from filters.reader import SafeDocumentReader
from propensity.export import export_shards, import_source_config


def _artifact(store: Path, pattern: str) -> Path:
    return next(p for p in store.glob(pattern) if not p.name.endswith((".partial", ".lock")))


@pytest.fixture(scope="module")
def exported(two_experiments, tmp_path_factory) -> tuple[Path, Path]:
    artifact = _artifact(two_experiments.store, "variant/strict-*")
    out = tmp_path_factory.mktemp("export") / "strict"
    result = export_shards(artifact, out)
    assert result["quarantined"] == 0
    assert result["files"] == len(list((artifact / "shards").glob("*.jsonl.gz")))
    return artifact, out


def _originals(artifact: Path) -> list[dict]:
    return list(iter_jsonl(sorted((artifact / "shards").glob("*.jsonl.gz"))))


def test_layout_and_dataset_card(exported):
    artifact, out = exported
    files = sorted(p.name for p in (out / "data").iterdir())
    assert files == [f"train-{i:05d}-of-{len(files):05d}.parquet" for i in range(len(files))]
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*"}]
    assert header["dataset_info"]["splits"][0]["num_examples"] == len(_originals(artifact))
    chain = json.loads((out / "provenance.json").read_text())
    assert chain[0]["key"] == f"variant/{artifact.name}"
    assert [m["stage"] for m in chain] == ["variant", "score", "classifier", "source"]
    assert all(f"`{m['key']}`" in card for m in chain)


def test_load_dataset_gives_identical_ids_and_text(exported):
    import datasets

    artifact, out = exported
    ds = datasets.load_dataset(str(out), split="train")
    originals = _originals(artifact)
    assert ds["id"] == [d["id"] for d in originals]
    assert ds["text"] == [d["text"] for d in originals]
    assert [json.loads(m) for m in ds["metadata"]] == [d.get("metadata", {}) for d in originals]


def test_reimport_as_source_reads_identical_documents(exported, tmp_path):
    artifact, out = exported
    config = import_source_config(out)
    ctx = StageContext(stage="source", name="files", config=config, inputs={}, out=tmp_path / "src",
                       show_progress=False)
    ctx.out.mkdir()
    assert sources.run(ctx)["format"] == "parquet"
    spec = load_source(ctx.out)
    reader = SafeDocumentReader(spec.absolute_paths, str(tmp_path / "quarantine"), file_format=spec.format,
                                display_paths=spec.paths)
    docs = list(reader.run())
    originals = _originals(artifact)
    assert [(d.id, d.text) for d in docs] == [(o["id"], o["text"]) for o in originals]
    assert [d.metadata for d in docs] == [o.get("metadata", {}) for o in originals]  # scores survive too
    assert not (tmp_path / "quarantine").exists() or not any((tmp_path / "quarantine").iterdir())


def test_export_is_deterministic(exported, tmp_path):
    artifact, out = exported
    again = Path(export_shards(artifact, tmp_path / "again")["out"])
    for rel in [p.relative_to(out) for p in sorted((out / "data").iterdir())] + [Path("provenance.json")]:
        assert (again / rel).read_bytes() == (out / rel).read_bytes(), rel


def test_bad_records_are_quarantined_with_a_reason(two_experiments, tmp_path):
    import shutil

    source = _artifact(two_experiments.store, "variant/baseline-*")
    artifact = Path(shutil.copytree(source, tmp_path / "store" / "variant" / "baseline-000000000000"))
    for stage in ("score", "classifier", "source"):  # the provenance chain needs the upstream manifests
        src = _artifact(two_experiments.store, f"{stage}/*")
        shutil.copytree(src, tmp_path / "store" / stage / src.name)
    manifest = json.loads((artifact / "manifest.json").read_text())
    (artifact / "manifest.json").write_text(json.dumps({**manifest, "key": "variant/baseline-000000000000"}))
    with gzip.open(artifact / "shards" / "zz-bad.jsonl.gz", "wb") as f:
        f.write(b'{"id": "a", "text": "  "}\n[1, 2]\n{"id": null, "text": "t"}\nnot json\n')
    result = export_shards(artifact, tmp_path / "out")
    assert result["quarantined"] == 4
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "out/quarantine/export.jsonl").open()]
    assert reasons == ["missing_text", "not_an_object", "missing_id", "malformed_json"]
    assert "4 record(s) could not be exported" in (tmp_path / "out/README.md").read_text()


def test_export_errors(exported, tmp_path):
    artifact, out = exported
    with pytest.raises(ConfigError, match="is not empty"):
        export_shards(artifact, out)
    with pytest.raises(StoreError, match="not a complete artifact"):
        export_shards(tmp_path, tmp_path / "o")
    with pytest.raises(ConfigError, match="no \\*.jsonl.gz document shards"):
        export_shards(artifact, tmp_path / "o2", subdir="nothing")
    import shutil

    loose = shutil.copytree(artifact, tmp_path / "copy")  # out of its store: no key, no provenance
    with pytest.raises(StoreError, match="is not an artifact folder"):
        export_shards(loose, tmp_path / "o3")
    alone = shutil.copytree(artifact, tmp_path / "other" / "variant" / artifact.name)  # without its inputs
    with pytest.raises(StoreError, match=r"needs the manifest of '[a-z]+/.* the store .* does not hold"):
        export_shards(alone, tmp_path / "o4")
    assert not (tmp_path / "o3").exists() and not (tmp_path / "o4").exists()
