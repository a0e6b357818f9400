"""One small exception hierarchy. Messages name the field, the value received and what is allowed."""

from __future__ import annotations


class PropensityError(Exception):
    """Base class for every error the pipeline raises on purpose."""


class ConfigError(PropensityError):
    """The experiment config is invalid (raised before any work starts)."""


class InputDataError(PropensityError):
    """Input data cannot be used (not a per-document problem: those are quarantined)."""


class BudgetError(PropensityError):
    """A variant has fewer tokens than the token budget asks for."""


class StageError(PropensityError):
    """A stage failed; the message names the stage and its work folder."""


class StoreError(PropensityError):
    """The artifact store is inconsistent or a path would escape it."""
