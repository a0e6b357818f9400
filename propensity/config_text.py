"""Config text in and out: dotted command-line overrides applied to the YAML data before validation, and
pydantic's validation errors as one line per problem naming the dotted field, the variant kind and what is
allowed."""

from __future__ import annotations

import difflib
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from core.errors import ConfigError
from propensity import variants
from propensity.variants import kind_name


def apply_override(data: dict[str, Any], dotted: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a nested dict; list items by index (``variants.1.threshold``).
    ``~a.b.c`` (Hydra's spelling) removes the key instead, so its default applies: e.g. a setting of the file
    that a kind switched with ``--set`` does not read."""
    remove = dotted.startswith("~")
    if remove:
        if "=" in dotted:
            raise ConfigError(f"override {dotted!r}: '~KEY.PATH' removes a key and takes no value")
        path, raw = dotted[1:], ""
    elif "=" not in dotted:
        raise ConfigError(f"override {dotted!r} must look like key.path=value (or ~key.path to remove a key)")
    else:
        path, raw = dotted.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {path.strip()!r}: value {raw[:80]!r} is not valid YAML: {e}") from None
    node: Any = data
    parts = path.strip().split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {path!r}: {part!r} is not an index of a list of {len(node)} items")
            if last and remove:
                del node[int(part)]
            elif last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        else:
            if last and remove:
                if part not in node:
                    raise ConfigError(f"override ~{path}: the config has no {part!r} there to remove "
                                      f"(keys: {', '.join(map(str, node)) or 'none'})")
                del node[part]
            elif last:
                node[part] = value
            else:
                if remove and part not in node:
                    raise ConfigError(f"override ~{path}: the config has no {part!r} section to remove from")
                node = node.setdefault(part, {})
                if not isinstance(node, (dict, list)):
                    raise ConfigError(f"override {path!r}: {part!r} is not a mapping")


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (through list, Optional, Union and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) or () for m in _models_in(arg)]


def _walk(model: type[BaseModel], loc: tuple) -> tuple[list[str], str | None, list[str] | None]:
    """The dotted path of ``loc`` without discriminator tags, the variant kind on the way (if any), and the
    field names allowed where it ends (for 'unknown key' messages)."""
    path, kind = [], None
    current: Any = model
    for part in loc:
        if isinstance(current, dict) and part in current:  # a discriminated union: the part is the kind
            kind, current = str(part), current[part]
            continue
        path.append(str(part))
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(part) if isinstance(current, type) else None
        models = _models_in(field.annotation) if field is not None else []
        if len(models) > 1 and all("kind" in m.model_fields for m in models):
            current = {str(m.model_fields["kind"].annotation.__args__[0]): m for m in models}
        else:
            current = models[0] if models else None
    allowed = sorted(current.model_fields) if isinstance(current, type) else None
    return path, kind, allowed


def format_validation_error(err: ValidationError, model: type[BaseModel]) -> str:
    """One line per problem: the dotted field (and the variant kind it was read as), what was wrong, what was
    received and what is allowed."""
    lines = []
    for e in err.errors():
        path, kind, _ = _walk(model, tuple(e["loc"]))
        loc = ".".join(path) or "(top level)"
        loc += f" (kind {kind!r})" if kind else ""
        if e["type"] == "extra_forbidden":
            allowed = _walk(model, tuple(e["loc"])[:-1])[2] or []
            key = str(e["loc"][-1])
            hint = difflib.get_close_matches(key, allowed, n=1)
            did = f" did you mean {hint[0]!r}?" if hint else ""
            lines.append(f"{loc}: unknown key.{did} allowed: {', '.join(allowed)}")
        elif e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            tag = e.get("ctx", {}).get("tag")
            kinds = ", ".join(repr(kind_name(k)) for k in variants.VARIANT_KINDS)
            lines.append(f"{loc}.kind: {'missing' if tag is None else f'{tag!r} is not a variant kind'}; "
                         f"allowed: {kinds}")
        else:
            got = e.get("input")
            msg = e["msg"].removeprefix("Value error, ")  # our checks' messages say what is wrong themselves
            if isinstance(got, dict) and e["type"] == "value_error":  # a check of a whole section names
                lines.append(f"{loc}: {msg}")                         # its settings: no input to show
                continue
            got_s = repr(got) if not isinstance(got, dict) else "a mapping"
            lines.append(f"{loc}: {msg} (got {got_s[:80]})")
    return "invalid config:\n  " + "\n  ".join(lines)
