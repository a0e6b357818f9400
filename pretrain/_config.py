"""Strict reading of a stage's plain-JSON config section: unknown keys and wrong types are errors."""

from __future__ import annotations

import difflib
from typing import Any

from core.errors import ConfigError


def check_keys(config: dict[str, Any], allowed: dict[str, Any], stage: str) -> dict[str, Any]:
    """Return ``allowed`` (the defaults) updated with ``config``; unknown keys raise ``ConfigError``.

    The error names the stage, the unknown key, the closest allowed key and the full allowed list.
    """
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(allowed), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{stage}: unknown config key {key!r}{hint}; allowed: {', '.join(sorted(allowed))}")
    return {**allowed, **config}


def require_int(value: Any, field: str, stage: str, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum``, or a ``ConfigError`` naming the field and the value received."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{stage}: {field} must be an integer >= {minimum}, got {value!r}")
    return value


def require_float(value: Any, field: str, stage: str, minimum: float = 0.0) -> float:
    """``value`` as a float >= ``minimum``, or a ``ConfigError`` naming the field and the value received."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"{stage}: {field} must be a number >= {minimum}, got {value!r}")
    return float(value)


def require_choice(value: Any, field: str, stage: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a ``ConfigError`` with a did-you-mean hint."""
    if value not in choices:
        close = difflib.get_close_matches(str(value), list(choices), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{stage}: {field} must be one of {', '.join(choices)}; got {value!r}{hint}")
    return value
