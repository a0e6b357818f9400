"""Tag tokens at training and inference time: ids in a tokenizer folder, conditioning, blocking generation.

The tag strings come from the variant configs (``conditional_tags.config.variant_tags``); the tokenizer
stage makes each a special token, so the model's embedding matrix (sized by ``len(tokenizer)``) has a row
for each. At inference a model is conditioned by prefixing one tag, and every tag is blocked from being
generated (Korbak et al. 2023): pass ``bad_words_ids`` to ``generate`` or apply ``block_tag_logits``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import InputDataError


def tag_token_ids(tokenizer_dir: Path, tags: list[str]) -> dict[str, int]:
    """The single token id of each tag in ``tokenizer_dir/tokenizer.json``.

    Raises InputDataError naming the tag when it is absent or does not encode to exactly one token (the
    tokenizer was built without it as a special token).
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    ids = {}
    for tag in tags:
        encoded = tok.encode(tag, add_special_tokens=False).ids
        token_id = tok.token_to_id(tag)
        if token_id is None or encoded != [token_id]:
            raise InputDataError(
                f"tag {tag!r} is not a single token of {tokenizer_dir} (encodes to {encoded}); "
                "add it to the tokenizer stage's `tags`"
            )
        ids[tag] = token_id
    return ids


def bad_words_ids(tokenizer_dir: Path, tags: list[str]) -> list[list[int]]:
    """``generate(bad_words_ids=...)`` argument that forbids every tag token."""
    return [[i] for i in tag_token_ids(tokenizer_dir, tags).values()]


def block_tag_logits(logits: Any, tag_ids: list[int]) -> Any:
    """``logits`` (a torch tensor ``[..., vocab]``) with every tag id set to -inf, so no tag is sampled."""
    if not tag_ids:
        return logits
    blocked = logits.clone()
    blocked[..., list(tag_ids)] = float("-inf")
    return blocked


def conditioned(prompt: str, tag: str, separator: str = "") -> str:
    """``prompt`` conditioned on ``tag`` ('' leaves it unconditioned), placed as the variant placed tags."""
    return f"{tag}{separator}{prompt}" if tag else prompt
