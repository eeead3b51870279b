"""Drop repeated chunks, keeping the first occurrence.

Exact duplicates are found by a hash of the whitespace-normalised text; near
duplicates by the Jaccard similarity of their sets of lines (or by one chunk's
shingles being almost all contained in an earlier one: a repeated function
cut short by the end of a paste). A pair is compared only when their small
bottom-k sketches share values; candidates are found through the rarest lines
of a chunk, so the cost stays near linear in the number of chunks.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections.abc import Sequence

from cerebrum.prompt.chunking import Chunk

_LOGGER = logging.getLogger(__name__)

JACCARD_THRESHOLD = 0.8
CONTAINMENT_THRESHOLD = 0.9
_SKETCH = 16
_MIN_SHARED = 2


def normalized_hash(text: str) -> bytes:
    """Hash ``text`` with all runs of whitespace collapsed, so re-indented copies match."""
    return hashlib.blake2b(
        " ".join(text.split()).encode("utf-8", "replace"), digest_size=16
    ).digest()


def shingles(text: str) -> frozenset[int]:
    """The set of CRC32s of the stripped, non-blank lines of ``text``.

    Lines are the natural shingle of code: a copy with one line edited still
    shares all the others. CRC32 rather than ``hash`` because string hashes
    are salted per process and results should not vary between runs.
    """
    # map/filter over bytes keep the loop in C (a generator per line cost ~10% of an 8 KB prompt).
    lines = text.encode("utf-8", "replace").split(b"\n")
    return frozenset(map(zlib.crc32, filter(None, map(bytes.strip, lines))))


def _names_compatible(first: Chunk, second: Chunk) -> bool:
    # Two definitions with different names are both kept even when alike:
    # the instruction may name either one.
    return first.name is None or second.name is None or first.name == second.name


def dedupe(chunks: Sequence[Chunk]) -> list[Chunk]:
    """Return ``chunks`` without exact and near duplicates, first occurrences kept, in order."""
    seen_hashes: set[bytes] = set()
    kept: list[Chunk] = []
    kept_shingles: list[frozenset[int]] = []
    kept_sketches: list[frozenset[int]] = []
    # Every line of every kept chunk -> the kept chunks holding it. Candidates are
    # looked up by a chunk's rarest lines: a line every chunk shares (thousands of
    # functions ending in the same `return y;`) made each chunk walk all the
    # earlier ones, quadratic in the code.
    holders: dict[int, list[int]] = {}
    for chunk in chunks:
        digest = normalized_hash(chunk.text)
        if digest in seen_hashes:
            continue
        seen_hashes.add(digest)
        current = shingles(chunk.text)
        sketch = frozenset(sorted(current)[:_SKETCH])
        if current and _has_near_duplicate(
            chunk, current, sketch, kept, kept_shingles, kept_sketches, holders
        ):
            continue
        position = len(kept)
        kept.append(chunk)
        kept_shingles.append(current)
        kept_sketches.append(sketch)
        for value in current:
            holders.setdefault(value, []).append(position)
    return kept


def _has_near_duplicate(
    chunk: Chunk,
    current: frozenset[int],
    sketch: frozenset[int],
    kept: list[Chunk],
    kept_shingles: list[frozenset[int]],
    kept_sketches: list[frozenset[int]],
    holders: dict[int, list[int]],
) -> bool:
    """Whether a kept chunk sharing ``_MIN_SHARED`` sketch values with ``chunk`` is like it.

    Alike (either test) means holding at least 4/5 of ``chunk``'s lines, so
    missing at most ``len(current) // 5`` of them: any ``len(current) // 5 + 1``
    of its lines include one the other holds, and the rarest are looked up.
    """
    needed = min(_MIN_SHARED, len(sketch))
    rarest = sorted(current, key=lambda value: len(holders.get(value, ())))
    candidates = {p for value in rarest[: len(current) // 5 + 1] for p in holders.get(value, ())}
    for position in candidates:
        if len(sketch & kept_sketches[position]) < needed or not _names_compatible(
            kept[position], chunk
        ):
            continue
        other = kept_shingles[position]
        common = len(current & other)
        if common / len(current | other) >= JACCARD_THRESHOLD or (
            len(current) <= len(other) and common / len(current) >= CONTAINMENT_THRESHOLD
        ):
            return True
    return False
