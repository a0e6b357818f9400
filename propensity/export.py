"""Export an artifact's document shards as a Hugging Face dataset folder, and re-import it as a source.

``export_shards(artifact, out)`` writes::

    out/data/train-00000-of-0000N.parquet   columns id, text, metadata (a JSON string, keys sorted)
    out/README.md                           dataset card: YAML header (configs/data_files, features) and
                                            the provenance (the artifact's manifest and its input chain)
    out/provenance.json                     the same chain as JSON
    out/quarantine/export.jsonl             records that could not be exported, with a reason (if any)

``datasets.load_dataset(out)`` loads it offline. ``import_source_config(out)`` is the ``source:`` section
(``kind: files``, ``format: parquet``) that reads it back: datatrove's reader decodes the JSON ``metadata``
column back into the document's metadata, so ids, text and metadata survive the round trip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from core.errors import ConfigError, StoreError
from core.lineage import locate, walk
from core.store import MARKER

SCHEMA_FIELDS = ("id", "text", "metadata")


def _records(path: Path, bad: list[dict]) -> list[dict[str, str]]:
    """The rows of one jsonl.gz shard; unusable records go to ``bad`` with a reason."""
    import gzip

    rows = []
    with gzip.open(path, "rb") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                reason = "malformed_json"
            else:
                reason = _problem(doc)
            if reason:
                bad.append({"source_file": path.name, "line": line_no, "reason": reason,
                            "raw": line.decode("utf-8", "replace")[:10_000]})
                continue
            meta = json.dumps(doc.get("metadata") or {}, sort_keys=True, ensure_ascii=False)
            rows.append({"id": str(doc["id"]), "text": doc["text"], "metadata": meta})
    return rows


def _problem(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return "not_an_object"
    if not isinstance(doc.get("text"), str) or not doc["text"].strip():
        return "missing_text"
    if doc.get("id") is None:
        return "missing_id"
    return None if isinstance(doc.get("metadata") or {}, dict) else "non_object_metadata"


def provenance_chain(artifact: Path) -> list[dict]:
    """The artifact's manifest followed by every upstream manifest (breadth-first, each key once).

    Manifests name their inputs by store key; each resolves against the store that holds ``artifact``.
    """
    store, key = locate(artifact)
    try:
        return [manifest for _, manifest in walk(store, key, require=True)]
    except StoreError as err:
        raise StoreError(f"export: {err}") from None


def export_shards(artifact: Path, out: Path, *, subdir: str = "shards", overwrite: bool = False) -> dict:
    """Write the artifact's ``<subdir>/*.jsonl.gz`` documents as a HF dataset folder; return counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    artifact, out = Path(artifact).resolve(), Path(out).resolve()
    if not (artifact / MARKER).is_file():
        raise StoreError(f"export: {artifact} is not a complete artifact folder (no {MARKER} marker)")
    shards = sorted((artifact / subdir).glob("*.jsonl.gz"))
    if not shards:
        raise ConfigError(f"export: {artifact / subdir} has no *.jsonl.gz document shards "
                          "(export a source, score or variant artifact; subdir 'shards' or 'excluded')")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"export: output folder {out} is not empty (pass overwrite=True / --overwrite)")
    chain = provenance_chain(artifact)  # before writing: a folder outside its store has no provenance
    (out / "data").mkdir(parents=True, exist_ok=True)
    for old in (out / "data").glob("*.parquet"):
        old.unlink()
    schema = pa.schema([(name, pa.string()) for name in SCHEMA_FIELDS])
    bad: list[dict] = []
    total = 0
    for i, shard in enumerate(shards):
        rows = _records(shard, bad)
        total += len(rows)
        table = pa.Table.from_pylist(rows, schema=schema)
        pq.write_table(table, out / "data" / f"train-{i:05d}-of-{len(shards):05d}.parquet")
    if bad:
        (out / "quarantine").mkdir(exist_ok=True)
        (out / "quarantine" / "export.jsonl").write_text("".join(json.dumps(b) + "\n" for b in bad))
    (out / "provenance.json").write_text(json.dumps(chain, indent=2, sort_keys=True) + "\n")
    (out / "README.md").write_text(dataset_card(chain, out, total, len(shards), len(bad), subdir))
    return {"documents": total, "files": len(shards), "quarantined": len(bad), "out": str(out)}


def import_source_config(out: Path) -> dict[str, Any]:
    """The experiment config ``source:`` section that reads an exported folder back as a source."""
    return {"kind": "files", "format": "parquet", "paths": [str(Path(out).resolve() / "data" / "*.parquet")]}


def dataset_card(chain: list[dict], out: Path, docs: int, files: int, quarantined: int, subdir: str) -> str:
    """``README.md``: the YAML header ``datasets`` reads, then what the data is and where it came from."""
    header = {
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
        "dataset_info": {"features": [{"name": n, "dtype": "string"} for n in SCHEMA_FIELDS],
                         "splits": [{"name": "train", "num_examples": docs}]},
        "tags": ["propensity"],
    }
    head = chain[0]
    version = head.get("versions", {}).get("propensity")
    lines = [
        "---", yaml.safe_dump(header, sort_keys=True).rstrip(), "---", "",
        f"# `{head['key']}`", "",
        f"{docs:,} documents in {files} parquet file(s), exported from the `{subdir}/` of the propensity "
        f"artifact `{head['key']}` (stage `{head['stage']}`, propensity {version})."
        + (f" {quarantined} record(s) could not be exported: see `quarantine/export.jsonl`." if quarantined
           else ""),
        "", "Columns: `id`, `text`, `metadata` (a JSON object as a string: scores, tags, ground truth).",
        "", "## Re-import as a source", "", "```yaml",
        yaml.safe_dump({"source": import_source_config(out)}, sort_keys=False).rstrip(), "```", "",
        "## Provenance", "", "| stage | key | finished | inputs |", "|---|---|---|---|",
    ]
    for m in chain:
        inputs = ", ".join(f"`{ref['key']}`" for _, ref in sorted(m.get("inputs", {}).items())) or "-"
        lines.append(f"| {m['stage']} | `{m['key']}` | {m.get('timings', {}).get('finished')} | {inputs} |")
    lines += ["", "Full manifests (config, inputs, package versions, results, timings) of the stages above:",
              "", "```json", json.dumps(chain, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)
