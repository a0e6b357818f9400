"""Names and strings every layer shares, declared once: name patterns, the strict model base, the default tags."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Names become folder names in the store: letters, digits, '_', '.', '-' only (no path separators)."""

GOOD_TAG = "<|good|>"
"""The control tag for documents the classifier scores below the threshold."""
BAD_TAG = "<|bad|>"
"""The control tag for documents the classifier scores at or above the threshold."""
DEFAULT_TAGS: dict[str, str] = {"good": GOOD_TAG, "bad": BAD_TAG}
"""The default tag of each side, by side name (a fresh copy is never needed: never mutate it)."""


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors and defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


TOKEN_COUNTS: dict[str, str] = {
    "token budget": "train.tokens: window positions each training run may use (the same for every variant)",
    "positions trained": "steps x batch x seq_len: the budget rounded down to whole optimizer steps, padding "
                         "included (train manifest: tokens_budget)",
    "tokens trained": "target tokens the loss saw, padding excluded (train manifest: tokens_seen)",
    "corpus tokens": "tokens of a variant's tokenized corpus, one pass, EOS included (tokenize manifest: tokens)",
    "window positions": "positions a variant's training windows offer at the run's packing, padding included",
}
"""The one vocabulary of token counts: every report, manifest legend, comparison and error names its count with
one of these terms, so that four numbers for one variant never read as the same thing."""
