"""Rank chunks by relevance to the instruction.

Three signals, in falling weight:

1. the chunk *defines* an identifier the instruction names (``parse_args``,
   ``Config.load``): the instruction is about that code, so it ranks far above
   everything else;
2. the chunk defines something a top chunk calls (the model needs a callee's
   contract to change its caller);
3. BM25 over identifiers split on snake_case and camelCase, so "parse the
   config" finds ``parseConfig`` and ``load_config_file``.

Ties keep the original order, so with no usable instruction the head of the
code wins, as it would for a human reader.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence

import attrs

from cerebrum.prompt.chunking import CLASS_HEADER, PREAMBLE, Chunk

_LOGGER = logging.getLogger(__name__)

DEFINES_WEIGHT = 1000.0
PARENT_WEIGHT = 200.0
CALLEE_WEIGHT = 50.0
_K1 = 1.2
_B = 0.75

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CALL_RE = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*(?:\(|!\()")
_CAMEL_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")

# Words that are identifiers lexically but in an instruction are just English.
_STOPWORDS = frozenset("""
a an the this that these those it its to of in on for and or not no but with without from by as at is
are be was were been being do does did done can could should would will shall may might must please
make makes made use uses using used add adds change changes fix fixes write rewrite refactor explain
what why how which who where when there here into out up down all any each every some more most less
code function functions method methods class classes file files line lines help me my i you your we
our us so if then else than also just only very like need want get set new old one two so also
return returns self cls def fn func var let const public private static void int str
""".split())


@attrs.frozen
class RankedChunk:
    """A chunk with its relevance score; ``defines_target`` marks a named definition."""

    chunk: Chunk
    score: float
    defines_target: bool = False
    is_callee: bool = False


def split_identifier(identifier: str) -> list[str]:
    """Split ``identifier`` into lower-case words on ``_`` and camelCase humps."""
    words: list[str] = []
    for part in identifier.split("_"):
        if part:
            words.extend(word.lower() for word in _CAMEL_RE.findall(part))
    return words


def stem(word: str) -> str:
    """A crude suffix stripper, so "counting", "counts" and "count" meet."""
    for suffix, keep in (("ing", 4), ("ed", 4), ("es", 4), ("s", 3)):
        if word.endswith(suffix) and len(word) - len(suffix) >= keep and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def _split_terms(identifier: str, cache: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    terms = cache.get(identifier)
    if terms is None:
        words = [stem(word) for word in split_identifier(identifier)]
        whole = stem(identifier.lower())
        terms = (whole, *[w for w in words if w != whole]) if len(words) > 1 else (whole,)
        cache[identifier] = terms
    return terms


def _terms(text: str, cache: dict[str, tuple[str, ...]]) -> list[str]:
    terms: list[str] = []
    for identifier in _IDENT_RE.findall(text):
        terms.extend(_split_terms(identifier, cache))
    return terms


def _document(text: str, query: Sequence[str]) -> tuple[dict[str, int], int]:
    """Term frequencies of the query terms in ``text``, and its length.

    Query terms are already split identifiers (``count``, ``word``), so a
    case-insensitive substring count finds them inside ``countWords`` and
    ``count_words`` alike: the same match splitting every identifier of the
    chunk would give, at C speed instead of a Python loop per identifier. The
    length is measured in characters / 8, about one identifier each.
    """
    lowered = text.lower()
    frequencies = {term: hits for term in query if (hits := lowered.count(term))}
    return frequencies, max(1, len(text) // 8)


def named_identifiers(instruction: str) -> set[str]:
    """Identifiers the instruction names: code-like words, dotted parts, not English stopwords."""
    names: set[str] = set()
    for identifier in _IDENT_RE.findall(instruction):
        if identifier.lower() in _STOPWORDS or len(identifier) < 2:
            continue
        names.add(identifier)
    return names


def rank_chunks(chunks: Sequence[Chunk], instruction: str) -> list[RankedChunk]:
    """Return ``chunks`` scored against ``instruction``, best first (ties in original order)."""
    if not chunks:
        return []
    names = named_identifiers(instruction)
    cache: dict[str, tuple[str, ...]] = {}
    # Terms under 3 letters ("id", "x") would match inside every other word.
    query = [t for t in dict.fromkeys(_terms(instruction, cache)) if t not in _STOPWORDS and len(t) >= 3]
    documents = [_document(chunk.text, query) for chunk in chunks] if query else []
    lexical = _bm25(documents, query) if query else [0.0] * len(chunks)

    defines = [
        bool(chunk.name and chunk.name in names) or bool(chunk.names & names)
        for chunk in chunks
    ]
    # "Config.load": a method named by its class too beats a same-named method elsewhere.
    parent_named = [bool(chunk.parent and chunk.parent in names) for chunk in chunks]
    if any(defines):
        top = [i for i, hit in enumerate(defines) if hit]
    else:
        ordered = sorted(range(len(chunks)), key=lambda i: -lexical[i])
        top = [i for i in ordered[:3] if lexical[i] > 0]
    called: set[str] = set()
    for position in top:
        called.update(_CALL_RE.findall(chunks[position].text))
    best_lexical = max(lexical) if lexical else 0.0

    ranked: list[RankedChunk] = []
    for position, chunk in enumerate(chunks):
        is_callee = not defines[position] and bool(
            (chunk.name and chunk.name in called) or (chunk.kind != PREAMBLE and chunk.names & called)
        )
        score = lexical[position]
        if defines[position]:
            score += DEFINES_WEIGHT * (1.0 if chunk.kind != CLASS_HEADER else 0.9)
            if chunk.name is None or chunk.name not in names:
                score -= DEFINES_WEIGHT / 2  # only a constant in it is named
        if parent_named[position]:
            score += PARENT_WEIGHT
        if is_callee:
            score += CALLEE_WEIGHT
        if chunk.kind == PREAMBLE:
            # Imports tell the model which APIs the code uses; worth a mid-rank place.
            score += 0.5 * best_lexical
        ranked.append(RankedChunk(chunk, score, defines[position], is_callee))
    ranked.sort(key=lambda item: (-item.score, item.chunk.index))
    return ranked


def _bm25(documents: Sequence[tuple[dict[str, int], int]], query: Sequence[str]) -> list[float]:
    """Okapi BM25 (k1=1.2, b=0.75) of each ``(frequencies, length)`` document for ``query``."""
    lengths = [length for _, length in documents]
    average = (sum(lengths) / len(lengths)) or 1.0
    count = len(documents)
    idf = {}
    for term in query:
        df = sum(1 for frequencies, _ in documents if term in frequencies)
        idf[term] = math.log(1.0 + (count - df + 0.5) / (df + 0.5))
    scores: list[float] = []
    for frequencies, length in documents:
        score = 0.0
        norm = _K1 * (1.0 - _B + _B * length / average)
        for term, tf in frequencies.items():
            score += idf[term] * tf * (_K1 + 1.0) / (tf + norm)
        scores.append(score)
    return scores
