"""A cheap, conservative token estimate.

The Pi has no model tokenizer, and a wrong guess in the too-small direction
overflows the model's context, so the estimate errs high: BPE tokenizers of
the coder models average about 3.5-4 characters per token on source code and
English, and we count one token per 3 UTF-8 bytes.
"""

from __future__ import annotations

_BYTES_PER_TOKEN = 3


def estimate_tokens(text: str) -> int:
    """Return an over-estimate of the model tokens ``text`` costs."""
    if not text:
        return 0
    if text.isascii():
        size = len(text)
    else:
        size = len(text.encode("utf-8", "surrogatepass"))
    return -(-size // _BYTES_PER_TOKEN)


def tokens_to_chars(tokens: int) -> int:
    """Return how many ASCII characters fit in ``tokens`` by :func:`estimate_tokens`."""
    return max(0, tokens) * _BYTES_PER_TOKEN
