"""Assemble the optimised prompt within a token budget.

Chunks are taken greedily in rank order while they fit; a method brings its
class header along. Kept chunks are written back in their original order,
with an elision marker wherever code was left out and, budget permitting,
one-line signatures of the definitions dropped there, so the model knows
they exist. The instruction comes first (prose that preceded the code stays
before it, prose that followed it is moved ahead of the code when nothing
preceded it), verbatim.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import attrs

from cerebrum.prompt.chunking import CLASS_HEADER, METHOD, PREAMBLE, Chunk
from cerebrum.prompt.language import TEXT
from cerebrum.prompt.ranking import RankedChunk
from cerebrum.prompt.tokens import estimate_tokens

_LOGGER = logging.getLogger(__name__)

# Room held back per kept chunk for the elision marker that may follow it
# (punctuation and digits: dearer than the same length of words).
_MARKER_RESERVE = estimate_tokens("// ... (99999 lines omitted) ...") + 1
_SIGNATURE_CHARS = 120
# A top chunk too big for the budget is cut rather than dropped when at least this much is left.
_MIN_TRUNCATED_TOKENS = 48
# Chunks scoring this much (named in the question, frames of a report) are worth keeping room for.
_PRIORITY_SCORE = 250.0

_HASH_COMMENT = ("python", "shell")


@attrs.frozen
class Assembly:
    """The assembled prompt and which chunks went into it."""

    text: str
    kept: tuple[Chunk, ...]
    signatures: int
    truncated: bool = False
    cut: frozenset[int] = frozenset()
    """Indices of chunks cut to fit (the best chunk alone was over the budget)."""


def comment_prefix(language: str) -> str:
    """The line-comment leader used for markers in ``language``."""
    if language in _HASH_COMMENT:
        return "#"
    if language == TEXT:
        return ""
    return "//"


def _marker(language: str, lines: int) -> str:
    prefix = comment_prefix(language)
    body = f"... ({lines} lines omitted) ..." if lines > 0 else "..."
    return f"{prefix} {body}" if prefix else f"[{body}]"


def _signature_line(chunk: Chunk, language: str) -> str:
    signature = re.sub(r"\s*[{:]\s*$", "", chunk.signature)
    if len(signature) > _SIGNATURE_CHARS:
        signature = signature[: _SIGNATURE_CHARS - 3] + "..."
    prefix = comment_prefix(language)
    return f"{prefix}   {signature}" if prefix else f"    {signature}"


def _fence(language: str) -> tuple[str, str]:
    if language == TEXT:
        return "", ""
    return f"```{language}\n", "\n```"


def assemble(
    instruction_before: str,
    instruction_after: str,
    ranked: Sequence[RankedChunk],
    total_chunks: int,
    language: str,
    budget_tokens: int,
    total_lines: int = 0,
) -> Assembly:
    """Build the prompt from ``ranked`` chunks within ``budget_tokens``.

    ``total_chunks`` is the number of chunks the code was cut into before
    de-duplication; chunk indices refer to that list, so a gap in them is
    code that was left out.
    """
    head = instruction_before or instruction_after
    tail = instruction_after if instruction_before else ""
    opening, closing = _fence(language)
    fixed = estimate_tokens(head) + estimate_tokens(tail) + estimate_tokens(opening + closing) + 4
    left = budget_tokens - fixed

    by_index = {item.chunk.index: item.chunk for item in ranked}
    headers = {c.name: c for c in by_index.values() if c.kind == CLASS_HEADER and c.name}
    kept: dict[int, Chunk] = {}
    cost_of = {
        index: estimate_tokens(chunk.text) + 1 + _MARKER_RESERVE
        for index, chunk in by_index.items()
    }
    truncated = False
    cut_indices: set[int] = set()
    # The chunk cut to fit when it alone is over the budget: the best one, but
    # not a preamble or class header the question does not name (a module
    # docstring or a long Javadoc that matched many words is not what was
    # asked about; cut, it would fill the budget and keep out the definition
    # ranked next).
    # A named class header that alone is over the budget, whose methods are
    # chunks of their own, is not cut either: its members, which the class
    # being named already lifts, compete by the question's other words.
    members = {c.parent for c in by_index.values() if c.kind == METHOD and c.parent}
    cut_at = next(
        (
            p
            for p, item in enumerate(ranked)
            if item.chunk.kind not in (PREAMBLE, CLASS_HEADER)
            or (
                item.defines_target
                and not (
                    item.chunk.kind == CLASS_HEADER
                    and item.chunk.name in members
                    and cost_of[item.chunk.index] > left
                )
            )
        ),
        0,
    )
    for position, item in enumerate(ranked):
        chunk = item.chunk
        if chunk.index in kept:
            continue
        group = [chunk]
        header = headers.get(chunk.parent) if chunk.kind == METHOD and chunk.parent else None
        if header is not None and header.index not in kept and header.index < chunk.index:
            group.insert(0, header)
        cost = sum(cost_of[c.index] for c in group)
        if cost > left and len(group) > 1 and cost_of[chunk.index] <= left:
            # A class header (a long Javadoc) that does not fit with its method
            # stays out: the method alone beats leaving both out.
            group, cost = [chunk], cost_of[chunk.index]
        if cost <= left:
            for member in group:
                kept[member.index] = member
            left -= cost
        elif position == cut_at and not kept and left >= _MIN_TRUNCATED_TOKENS:
            # The most relevant chunk alone is over budget: its best part beats
            # nothing, but the other chunks the question names (or the report's
            # callers) keep their room when they are small.
            others = [cost_of[i.chunk.index] for i in ranked[1:8] if i.score >= _PRIORITY_SCORE]
            saved = 0
            for extra in others:
                if saved + extra <= left // 2:
                    saved += extra
            left -= saved
            for member in group[:-1]:
                if cost_of[member.index] <= left // 2:
                    kept[member.index] = member
                    left -= cost_of[member.index]
            cut = (
                _window(chunk, language, left, item.focus_line)
                if item.focus_line is not None
                else _truncate(chunk, language, left)
            )
            kept[chunk.index] = cut
            left -= estimate_tokens(cut.text) + 1 + _MARKER_RESERVE
            truncated = True
            cut_indices.add(chunk.index)
            left += saved

    # Signatures of dropped definitions, best ranked first, while they fit.
    signatures: dict[int, str] = {}
    for item in ranked:
        chunk = item.chunk
        if chunk.index in kept or not chunk.is_definition:
            continue
        line = _signature_line(chunk, language)
        cost = estimate_tokens(line) + 1
        if cost <= left:
            signatures[chunk.index] = line
            left -= cost

    code = _render(kept, signatures, total_chunks, total_lines, language)
    parts = [head, opening + code + closing if code else "", tail]
    text = "\n\n".join(part for part in parts if part)
    return Assembly(
        text,
        tuple(kept[i] for i in sorted(kept)),
        len(signatures),
        truncated,
        frozenset(cut_indices),
    )


def _truncate(chunk: Chunk, language: str, tokens: int) -> Chunk:
    """Keep as many leading lines of ``chunk`` as fit in ``tokens``."""
    lines = chunk.text.split("\n")
    room = tokens - _MARKER_RESERVE - 2
    kept: list[str] = []
    for line in lines:
        cost = estimate_tokens(line) + 1
        if cost > room:
            break
        kept.append(line)
        room -= cost
    if not kept and lines:
        kept.append(lines[0][: max(0, room) * 3])
    kept.append(_marker(language, len(lines) - len(kept)))
    return attrs.evolve(chunk, text="\n".join(kept), end_line=chunk.start_line + len(kept) - 1)


def _window(chunk: Chunk, language: str, tokens: int, focus_line: int) -> Chunk:
    """Keep the chunk's first line and as many lines around ``focus_line`` as fit.

    Used when an error report points inside a definition too big to send:
    the crash line and its surroundings are the best part of it.
    """
    lines = chunk.text.split("\n")
    at = min(max(0, focus_line - chunk.start_line), len(lines) - 1)
    room = tokens - 3 * _MARKER_RESERVE - estimate_tokens(lines[0]) - 2
    start = end = at
    room -= estimate_tokens(lines[at]) + 1
    # Grow the window, two lines before the crash line for each one after it.
    step = 0
    while room > 0 and (start > 1 or end < len(lines) - 1):
        take_before = step % 3 != 2 and start > 1 or end >= len(lines) - 1
        candidate = start - 1 if take_before else end + 1
        cost = estimate_tokens(lines[candidate]) + 1
        if cost > room:
            break
        room -= cost
        if take_before:
            start = candidate
        else:
            end = candidate
        step += 1
    kept = [lines[0]]
    if start > 1:
        kept.append(_marker(language, start - 1))
    kept.extend(lines[max(1, start) : end + 1])
    if end < len(lines) - 1:
        kept.append(_marker(language, len(lines) - 1 - end))
    return attrs.evolve(chunk, text="\n".join(kept), end_line=chunk.end_line)


def _render(
    kept: dict[int, Chunk],
    signatures: dict[int, str],
    total_chunks: int,
    total_lines: int,
    language: str,
) -> str:
    if not kept:
        return ""
    out: list[str] = []
    previous_index = -1
    previous_end_line = 0
    pending: list[str] = []
    for index in sorted(set(kept) | set(signatures)):
        if index in signatures:
            pending.append(signatures[index])
            continue
        chunk = kept[index]
        if index != previous_index + 1:
            out.append(_marker(language, max(0, chunk.start_line - previous_end_line)))
            out.extend(pending)
        pending = []
        # Keep one blank line where the original had some, for readability.
        out.append(chunk.text.rstrip() + ("\n" if chunk.text.endswith("\n") else ""))
        previous_index = index
        previous_end_line = chunk.end_line
    if previous_index < total_chunks - 1 or pending:
        out.append(_marker(language, max(0, total_lines - previous_end_line)))
        out.extend(pending)
    return "\n".join(out)
