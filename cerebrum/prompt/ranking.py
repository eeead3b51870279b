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
from collections import Counter
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


def _terms(text: str, cache: dict[str, list[str]]) -> list[str]:
    terms: list[str] = []
    for identifier in _IDENT_RE.findall(text):
        split = cache.get(identifier)
        if split is None:
            words = [stem(word) for word in split_identifier(identifier)]
            whole = stem(identifier.lower())
            split = [whole] + [w for w in words if w != whole] if len(words) > 1 else [whole]
            cache[identifier] = split
        terms.extend(split)
    return terms


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
    cache: dict[str, list[str]] = {}
    query = [t for t in dict.fromkeys(_terms(instruction, cache)) if t not in _STOPWORDS]
    documents = [Counter(_terms(chunk.text, cache)) for chunk in chunks]
    lexical = _bm25(documents, query)

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


def _bm25(documents: Sequence[Counter[str]], query: Sequence[str]) -> list[float]:
    """Okapi BM25 of each document for ``query`` (k1=1.2, b=0.75)."""
    if not query:
        return [0.0] * len(documents)
    lengths = [sum(doc.values()) for doc in documents]
    average = (sum(lengths) / len(lengths)) or 1.0
    count = len(documents)
    frequency = {term: sum(1 for doc in documents if term in doc) for term in query}
    idf = {
        term: math.log(1.0 + (count - df + 0.5) / (df + 0.5))
        for term, df in frequency.items()
    }
    scores: list[float] = []
    for doc, length in zip(documents, lengths):
        score = 0.0
        norm = _K1 * (1.0 - _B + _B * length / average)
        for term in query:
            tf = doc.get(term)
            if tf:
                score += idf[term] * tf * (_K1 + 1.0) / (tf + norm)
        scores.append(score)
    return scores
