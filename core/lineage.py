"""Where an artifact sits and what it was made from: the one walk over manifests' ``inputs``.

Manifests name their inputs by store key, never by absolute path, so a store can move; ``locate`` turns an
artifact folder back into its store and key, and ``walk`` follows the keys upstream. Every reader of provenance
(``propensity store ls/gc``, ``export``, ``compare``, the report) uses these two.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import StoreError
from core.store import MANIFEST, Store

PARTIAL = ".partial"
ARTIFACT_NAME = re.compile(r".+-[0-9a-f]{12}(\.partial)?")
"""An artifact folder's name: ``<name>-<12 hex digits>``, with ``.partial`` while a stage writes it."""


def locate(folder: str | Path) -> tuple[Store, str]:
    """The store holding an artifact folder ``<store>/<stage>/<name>-<hash>`` and the folder's store key.

    Reports, manifests and exports name artifacts by key, never by absolute path, so that their bytes do not
    depend on where the store is (or was, before it moved); readers turn keys back into folders here.
    """
    folder = Path(folder).resolve()
    if not ARTIFACT_NAME.fullmatch(folder.name) or folder.name.endswith(PARTIAL):
        raise StoreError(f"{str(folder)!r} is not an artifact folder <store>/<stage>/<name>-<12 hex digits>")
    store = Store(folder.parent.parent)
    key = f"{folder.parent.name}/{folder.name}"
    if store.path(key) != folder:
        raise StoreError(f"{str(folder)!r} is not inside the store {store.root} as {key!r}")
    return store, key


def artifact_key(folder: str | Path) -> str:
    """The store key ``<stage>/<name>-<hash>`` of an artifact folder (see ``locate``)."""
    return locate(folder)[1]


def walk(store: Store, key: str, *, require: bool = False) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """``(key, manifest)`` for ``key`` and everything upstream of it, breadth-first, inputs in role order, each
    key once. A key without a manifest yields ``None`` (its inputs are unknown) or, with ``require``, raises
    ``StoreError`` naming the artifact whose provenance needs it."""
    seen: set[str] = set()
    todo = [key]
    while todo:
        current = todo.pop(0)
        if current in seen:
            continue
        seen.add(current)
        path = store.path(current) / MANIFEST
        if not path.is_file():
            if require:
                raise StoreError(f"the provenance of {key} needs the manifest of {current!r}, which the store "
                                 f"{store.root} does not hold")
            yield current, None
            continue
        manifest = json.loads(path.read_text())
        yield current, manifest
        todo += [ref["key"] for _, ref in sorted(manifest.get("inputs", {}).items())]


def upstream_by_stage(store: Store, key: str) -> dict[str, str]:
    """``{stage kind: key}`` of ``key`` and its upstream artifacts (the nearest one of each stage kind)."""
    found: dict[str, str] = {}
    for current, _ in walk(store, key):
        found.setdefault(current.split("/")[0], current)
    return found
