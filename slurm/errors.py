"""Errors raised by the Slurm layer (part of the one propensity exception hierarchy)."""

from __future__ import annotations

from core.errors import PropensityError


class SlurmError(PropensityError):
    """A Slurm command or daemon failed; the message names the command and quotes its stderr."""


class SlurmTimeoutError(SlurmError):
    """Jobs or the local cluster did not reach the awaited state in time."""
