"""The seed's literal chunking algorithm, kept only as a benchmark baseline.

1000-character windows with 150 characters of overlap, exact-hash
de-duplication, the top 3 windows by word overlap with the instruction,
instruction first. It cuts functions in half, which is why
:mod:`cerebrum.prompt.optimizer` replaced it.
"""

from __future__ import annotations

import hashlib
import re

from cerebrum.prompt.instruction import split_prompt

WINDOW = 1000
OVERLAP = 150
TOP_K = 3

_WORD_RE = re.compile(r"\w+")


def windows(code: str, size: int = WINDOW, overlap: int = OVERLAP) -> list[str]:
    """Fixed character windows over ``code``."""
    step = size - overlap
    return [code[start : start + size] for start in range(0, max(1, len(code) - overlap), step)]


def seed_optimize(text: str, top_k: int | None = TOP_K, max_chars: int | None = None) -> str:
    """Run the seed's algorithm; with ``max_chars``, windows by rank up to that size."""
    parts = split_prompt(text)
    instruction = parts.instruction
    seen: set[str] = set()
    unique: list[tuple[int, str]] = []
    for position, window in enumerate(windows(parts.code)):
        digest = hashlib.md5(window.encode("utf-8", "replace")).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append((position, window))
    query = {word.lower() for word in _WORD_RE.findall(instruction)}

    def relevance(item: tuple[int, str]) -> int:
        return sum(1 for word in _WORD_RE.findall(item[1]) if word.lower() in query)

    ranked = sorted(unique, key=lambda item: (-relevance(item), item[0]))
    chosen: list[tuple[int, str]] = []
    size = len(instruction) + 2
    for item in ranked:
        if top_k is not None and len(chosen) >= top_k:
            break
        if max_chars is not None and size + len(item[1]) + 2 > max_chars:
            continue
        chosen.append(item)
        size += len(item[1]) + 2
    body = "\n\n".join(window for _, window in chosen)
    return f"{instruction}\n\n{body}" if instruction else body
