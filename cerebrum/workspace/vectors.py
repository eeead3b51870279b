"""Optional sentence-embedding vectors of a workspace's units: what is embedded, how a vector
is kept, and the cosine search over them.

Off unless the orchestrator names an embeddings model
(``CEREBRUM_WORKSPACE_EMBEDDINGS_MODEL``). Each live unit but preambles and
statement blocks is embedded as ``path Class.name`` and its text (the
embedding model cuts it to its context: 128 tokens for all-MiniLM-L6-v2,
what it was trained on), and kept in the workspace's SQLite as float32, unit
length. Encoding needs only the standard library; the search needs numpy,
imported on the first question that uses vectors, so an orchestrator with
vectors off never loads it (the Pi's memory).
"""

from __future__ import annotations

import array
import hashlib
import math
import sys
from collections.abc import Iterable, Sequence

from cerebrum.prompt.chunking import BLOCK, PREAMBLE

MAX_CHARS = 1200
"""Cut before sending: more characters than this never fit the 128 tokens that are kept."""
NOT_EMBEDDED = (PREAMBLE, BLOCK)
"""Kinds left lexical-only: imports and statement blocks answer few questions."""


def unit_text(path: str, parent: str | None, name: str | None, text: str) -> str:
    """What is embedded for one unit: where it is and what it is called, then its code
    (signature, docstring and body, as the index keeps it)."""
    qualified = f"{parent}.{name}" if parent and name else (name or "")
    return f"{path} {qualified}\n{text}"[:MAX_CHARS]


def text_digest(text: str) -> str:
    """The key of an embedded text (the bench's vector cache uses the same)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def encode(vector: Sequence[float]) -> bytes:
    """``vector`` scaled to unit length, as native float32 (little-endian on the Pi and x86)."""
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return array.array("f", [x / norm for x in vector]).tobytes()


def decode(blob: bytes) -> list[float]:
    return array.array("f", blob).tolist()


def numpy_available() -> bool:
    """Whether the cosine search can run here (without importing numpy)."""
    import importlib.util

    return "numpy" in sys.modules or importlib.util.find_spec("numpy") is not None


def nearest(blocks: Iterable[tuple[Sequence[int], bytes]], question: Sequence[float],
            limit: int) -> dict[int, float]:
    """The ``limit`` units most similar to ``question`` (cosine; the vectors are unit
    length), from blocks of ``(unit ids, their vectors joined)``: a block at a time, so
    memory stays one block whatever the workspace's size. Vectors of another width
    (another model's) are skipped."""
    import numpy as np

    query = np.asarray(question, dtype=np.float32)
    query /= float(np.linalg.norm(query)) or 1.0
    width = query.shape[0]
    best_ids = np.zeros(0, dtype=np.int64)
    best = np.zeros(0, dtype=np.float32)
    for ids, blob in blocks:
        matrix = np.frombuffer(blob, dtype=np.float32)
        if not ids or matrix.size != len(ids) * width:
            continue
        # einsum, not ``@``: a matrix-vector product through BLAS starts its thread pool,
        # which on cores busy with answers costs 10-20x the product itself.
        scores = np.einsum("ij,j->i", matrix.reshape(len(ids), width), query)
        best_ids = np.concatenate([best_ids, np.asarray(ids, dtype=np.int64)])
        best = np.concatenate([best, scores])
        if best.size > limit:
            keep = np.argpartition(-best, limit - 1)[:limit]
            best_ids, best = best_ids[keep], best[keep]
    return {int(i): float(s) for i, s in zip(best_ids.tolist(), best.tolist(), strict=True)}
