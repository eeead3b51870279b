"""The public entry: fit a prompt to a small model's context.

``optimize_text`` runs the stages in order: split off the instruction,
detect the language, cut the code into syntactic chunks, drop duplicates,
rank by relevance to the instruction and assemble within the token budget.
``optimize_messages`` does the same for the one chat message that carries the
code. Both are pure and synchronous (a 100 KB prompt takes milliseconds), and
never raise on odd input: they return the text unchanged with
``skipped_reason`` set instead.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence

import attrs

from cerebrum.prompt.assembly import assemble
from cerebrum.prompt.chunking import chunk_text
from cerebrum.prompt.dedup import dedupe
from cerebrum.prompt.instruction import code_weight, message_text, split_prompt
from cerebrum.prompt.language import TEXT, detect_language
from cerebrum.prompt.ranking import named_identifiers, rank_chunks
from cerebrum.prompt.tokens import estimate_tokens

_LOGGER = logging.getLogger(__name__)

# Chat template tokens around the prompt (role markers, BOS/EOS).
TEMPLATE_OVERHEAD_TOKENS = 64
# The seed's threshold: a prompt this short that fits is sent as it is.
SMALL_PROMPT_CHARS = 1500
# Optimising must save at least this share, or the original is sent.
MIN_REDUCTION = 0.10
# Work on huge pastes is capped: at most this much code is chunked, taken
# from the head plus windows around definitions the instruction names.
MAX_CODE_CHARS = 256_000
_FOCUS_WINDOW_CHARS = 24_000
# Share of control characters above which the text is treated as binary junk.
_MAX_CONTROL_SHARE = 0.05
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_PER_MESSAGE_TOKENS = 4

SKIP_EMPTY = "empty"
SKIP_BINARY = "binary"
SKIP_FITS = "fits"
SKIP_NO_GAIN = "gain_below_10pct"
SKIP_NO_CODE = "no_code"
SKIP_ERROR = "error"


@attrs.frozen
class OptimizeStats:
    """What optimisation did; ``skipped_reason`` is set when the text went out unchanged."""

    original_chars: int
    optimized_chars: int
    reduction: float
    chunks_total: int
    chunks_unique: int
    chunks_kept: int
    elapsed_ms: float
    skipped_reason: str | None
    budget_tokens: int = 0
    estimated_tokens: int = 0


@attrs.frozen
class OptimizedPrompt:
    """An optimised prompt text, its detected language and the stats."""

    text: str
    language: str
    stats: OptimizeStats


@attrs.frozen
class OptimizedMessages:
    """Chat messages with the code-carrying one optimised; ``stats`` are for that message."""

    messages: list[dict]
    language: str
    stats: OptimizeStats


def budget_tokens(context_tokens: int, max_tokens: int) -> int:
    """Tokens the prompt may use: context minus the reply and the chat template."""
    return context_tokens - max_tokens - TEMPLATE_OVERHEAD_TOKENS


def optimize_text(
    text: str,
    *,
    context_tokens: int = 2048,
    max_tokens: int = 256,
    query: str | None = None,
) -> OptimizedPrompt:
    """Fit ``text`` (an instruction plus code, in any layout) into the model's context.

    ``query`` adds text to rank against besides the prompt's own instruction
    (a later chat message that says what to do with this code).
    """
    started = time.perf_counter()
    try:
        return _optimize(text, context_tokens, max_tokens, query or "", started)
    except Exception:  # a bug here must cost the request its optimisation, not the request
        _LOGGER.exception("prompt optimisation failed; sending the prompt unchanged")
        return _skipped(text if isinstance(text, str) else "", TEXT, SKIP_ERROR, started)


def _skipped(text: str, language: str, reason: str, started: float, budget: int = 0, total: int = 0) -> OptimizedPrompt:
    stats = OptimizeStats(
        original_chars=len(text),
        optimized_chars=len(text),
        reduction=0.0,
        chunks_total=total,
        chunks_unique=total,
        chunks_kept=total,
        elapsed_ms=(time.perf_counter() - started) * 1000.0,
        skipped_reason=reason,
        budget_tokens=budget,
        estimated_tokens=estimate_tokens(text),
    )
    return OptimizedPrompt(text, language, stats)


def is_binary(text: str) -> bool:
    """Whether ``text`` looks like binary junk (NUL bytes or many control characters)."""
    sample = text[:65536]
    if "\x00" in sample:
        return True
    return len(_CONTROL_RE.findall(sample)) > _MAX_CONTROL_SHARE * max(1, len(sample))


def _optimize(text: str, context_tokens: int, max_tokens: int, query: str, started: float) -> OptimizedPrompt:
    if not isinstance(text, str) or not text.strip():
        return _skipped(text if isinstance(text, str) else "", TEXT, SKIP_EMPTY, started)
    budget = budget_tokens(context_tokens, max_tokens)
    if is_binary(text):
        return _skipped(text, TEXT, SKIP_BINARY, started, budget)
    parts = split_prompt(text)
    language = detect_language(parts.code, parts.fence_tag, parts.instruction)
    if len(text) < SMALL_PROMPT_CHARS and estimate_tokens(text) <= budget:
        return _skipped(text, language, SKIP_FITS, started, budget)
    if not parts.code.strip():
        return _skipped(text, language, SKIP_NO_CODE, started, budget)

    instruction = parts.instruction
    ranking_query = f"{instruction}\n{query}" if query else instruction
    code = _focus(parts.code, ranking_query)
    chunks = chunk_text(code, language)
    unique = dedupe(chunks)
    ranked = rank_chunks(unique, ranking_query)
    assembly = assemble(
        parts.instruction_before, parts.instruction_after, ranked, len(chunks), language, budget,
        total_lines=code.count("\n") + 1,
    )
    result = assembly.text
    reduction = 1.0 - len(result) / len(text)
    # Under 10% saved is not worth changing what the user wrote, unless the
    # original does not fit: then sending it unchanged only earns a 400.
    if reduction < MIN_REDUCTION and estimate_tokens(text) <= budget:
        return _skipped(text, language, SKIP_NO_GAIN, started, budget, len(chunks))
    stats = OptimizeStats(
        original_chars=len(text),
        optimized_chars=len(result),
        reduction=round(reduction, 4),
        chunks_total=len(chunks),
        chunks_unique=len(unique),
        chunks_kept=len(assembly.kept),
        elapsed_ms=(time.perf_counter() - started) * 1000.0,
        skipped_reason=None,
        budget_tokens=budget,
        estimated_tokens=estimate_tokens(result),
    )
    return OptimizedPrompt(result, language, stats)


def _focus(code: str, instruction: str) -> str:
    """Cap the code to chunk on huge inputs, keeping the parts the instruction points at.

    Chunking is linear but not free; a 5 MB paste cannot fit a small model
    anyway, so only the head and windows around definitions of identifiers
    the instruction names are processed, cut at line boundaries.
    """
    if len(code) <= MAX_CODE_CHARS:
        return code
    spans: list[tuple[int, int]] = [(0, MAX_CODE_CHARS // 2)]
    for name in sorted(named_identifiers(instruction))[:8]:
        pattern = re.compile(rf"(def|class|fn|func|function|struct|impl|interface|type)\s+{re.escape(name)}\b")
        match = pattern.search(code)
        if match is not None:
            spans.append((max(0, match.start() - 2000), match.start() + _FOCUS_WINDOW_CHARS))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        start = code.rfind("\n", 0, start) + 1
        newline = code.find("\n", end)
        end = len(code) if newline < 0 else newline
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return "\n".join(code[start:end] for start, end in merged)


def optimize_messages(
    messages: Sequence[dict],
    *,
    context_tokens: int = 2048,
    max_tokens: int = 256,
) -> OptimizedMessages:
    """Optimise the user message that carries the code; leave the others untouched.

    Messages are in OpenAI chat shape (``content`` a string or a list of
    ``{"type": "text", "text": ...}`` parts). The budget left for that message
    is the context minus every other message. New dicts are returned; the
    input is never mutated.
    """
    started = time.perf_counter()
    copies = [dict(message) if isinstance(message, dict) else {} for message in messages]
    texts = [message_text(message.get("content")) for message in copies]
    target = _code_message(copies, texts)
    if target is None:
        result = _skipped("", TEXT, SKIP_NO_CODE, started)
        return OptimizedMessages(copies, TEXT, result.stats)
    others = sum(
        estimate_tokens(text) + _PER_MESSAGE_TOKENS for i, text in enumerate(texts) if i != target
    )
    # Later user messages ("now make it async") say what to look for in the code.
    later = "\n".join(
        texts[i] for i in range(target + 1, len(copies)) if copies[i].get("role") == "user"
    )
    optimized = optimize_text(
        texts[target],
        context_tokens=context_tokens - others - _PER_MESSAGE_TOKENS,
        max_tokens=max_tokens,
        query=later or None,
    )
    if optimized.stats.skipped_reason is None:
        copies[target]["content"] = _replace_content(copies[target].get("content"), optimized.text)
    return OptimizedMessages(copies, optimized.language, optimized.stats)


def _code_message(messages: list[dict], texts: list[str]) -> int | None:
    """The last user message with code in it, else the longest user message."""
    users = [i for i, message in enumerate(messages) if message.get("role") == "user" and texts[i].strip()]
    if not users:
        return None
    for index in reversed(users):
        if len(texts[index]) >= 200 and code_weight(texts[index][:MAX_CODE_CHARS]) > 0:
            return index
    return max(users, key=lambda i: len(texts[i]))


def _replace_content(content: object, text: str) -> object:
    """Put ``text`` in place of the message's text, keeping non-text parts (images)."""
    if isinstance(content, list):
        others = [part for part in content if not (isinstance(part, dict) and part.get("type") == "text")]
        return [{"type": "text", "text": text}, *others]
    return text


__all__ = [
    "OptimizeStats",
    "OptimizedPrompt",
    "OptimizedMessages",
    "optimize_text",
    "optimize_messages",
    "budget_tokens",
]
