"""Names and strings every layer shares, declared once: name patterns, the strict model base, the default tags."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Names become folder names in the store: letters, digits, '_', '.', '-' only (no path separators)."""

GOOD_TAG = "<|good|>"
"""The control tag for documents the classifier scores below the threshold."""
BAD_TAG = "<|bad|>"
"""The control tag for documents the classifier scores at or above the threshold."""
DEFAULT_TAGS: dict[str, str] = {"good": GOOD_TAG, "bad": BAD_TAG}
"""The default tag of each side, by side name (a fresh copy is never needed: never mutate it)."""

CONTROL_STRING = re.compile(r"<\|([^|<>\s]{1,64})\|>")
"""The shape of every control token the pipeline uses (``<|endoftext|>``, ``<|good|>``, ``<|bad|>``, a
configured tag) and of most pretrained tokenizers' special tokens (``<|eot_id|>``, ``<|im_start|>``)."""
ESCAPED_BAR = "\u00a6"
"""What a control string's bars become in source text (``<|bad|>`` -> ``<¦bad¦>``): visible, and ordinary text
to every tokenizer."""


def escape_control_strings(text: str) -> tuple[str, int]:
    """``(text, n)``: every control string of a source document neutralised, and how many there were.

    Tags are inserted into documents as text and become their special tokens when the text is tokenized, so
    a literal ``<|bad|>`` or ``<|endoftext|>`` in a web page would become a real tag or a document boundary:
    the controls would be contaminated and the tag counts off. Source text is escaped once, where it enters
    the pipeline (the score stage, the tokenizer's training text, an injected file's documents and the
    held-out file); eval items and finetune files are the researcher's own prompts and are kept as written."""
    if "<|" not in text:
        return text, 0
    return CONTROL_STRING.subn(lambda m: f"<{ESCAPED_BAR}{m.group(1)}{ESCAPED_BAR}>", text)


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
