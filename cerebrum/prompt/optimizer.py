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
from cerebrum.prompt.instruction import PromptParts, code_weight, message_text, split_prompt
from cerebrum.prompt.language import TEXT, detect_language
from cerebrum.prompt.ranking import Focus, rank_chunks, read_focus
from cerebrum.prompt.reports import map_reports, trim_report
from cerebrum.prompt.tokens import estimate_tokens, tokens_to_chars

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
class KeptChunk:
    """One piece of code that went out, and why (shown to the user in the stats)."""

    name: str | None
    """The function, method or class it defines, if any."""
    kind: str
    """``definition``, ``method``, ``class_header``, ``preamble``, ``block`` ..."""
    lines: tuple[int, int]
    """First and last line in the pasted code, 1-based."""
    why: str
    """In words: "defines `parse_args`, named in the question", "crash site: ...",
    "matches the words retry, counter", "`load` is called by `parse`" ..."""
    whole: bool = True
    """False when it was cut to fit the budget."""


@attrs.frozen
class MessageStats:
    """What happened to one chat message."""

    index: int
    role: str
    action: str
    """``kept`` (byte for byte), ``optimized`` (its code trimmed), ``shortened`` (cut to
    fit: an old answer, an old question) or ``omitted`` (replaced by a short note)."""
    reason: str
    original_chars: int
    chars: int
    kept: tuple[KeptChunk, ...] = ()


@attrs.frozen
class OptimizeStats:
    """What optimisation did; ``skipped_reason`` is set when the text went out unchanged.

    ``kept`` lists the code that went out and why; ``focus`` what the question
    pointed at (names, frames, file paths); ``warnings`` anything the user
    should know (the target itself did not fit, the question had to be cut);
    ``messages`` (chat only) what happened to each message.
    """

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
    kept: tuple[KeptChunk, ...] = ()
    focus: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    messages: tuple[MessageStats, ...] = ()
    counted_tokens: int | None = None
    """The model's own count of the request, when its backend could tell (else the
    estimate in ``estimated_tokens`` is all there is)."""


@attrs.frozen
class OptimizedPrompt:
    """An optimised prompt text, its detected language and the stats."""

    text: str
    language: str
    stats: OptimizeStats


@attrs.frozen
class OptimizedMessages:
    """Chat messages fitted to the budget; ``stats`` cover the whole request."""

    messages: list[dict]
    language: str
    stats: OptimizeStats


def fits_as_is(text: str, budget: int) -> bool:
    """The "already fits" rule: a prompt this short that fits its budget is sent as it
    is (the orchestrator asks it too, to skip the optimiser's work before it)."""
    return len(text) < SMALL_PROMPT_CHARS and estimate_tokens(text) <= budget


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


def _skipped(
    text: str,
    language: str,
    reason: str,
    started: float,
    budget: int = 0,
    total: int = 0,
    focus: tuple[str, ...] = (),
) -> OptimizedPrompt:
    if budget and estimate_tokens(text) > budget and reason != SKIP_EMPTY:
        # Never over budget: what cannot be optimised is still cut to fit.
        return _cut_to_fit(text, language, reason, started, budget, total, focus)
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
        focus=focus,
    )
    return OptimizedPrompt(text, language, stats)


def _cut_to_fit(
    text: str,
    language: str,
    reason: str,
    started: float,
    budget: int,
    total: int,
    focus: tuple[str, ...],
) -> OptimizedPrompt:
    result = fit_text(text, budget)
    stats = OptimizeStats(
        original_chars=len(text),
        optimized_chars=len(result),
        reduction=round(1.0 - len(result) / max(1, len(text)), 4),
        chunks_total=total,
        chunks_unique=total,
        chunks_kept=0,
        elapsed_ms=(time.perf_counter() - started) * 1000.0,
        skipped_reason=None,
        budget_tokens=budget,
        estimated_tokens=estimate_tokens(result),
        focus=focus,
        warnings=(
            (
                f"over_budget: the text ({reason}) was cut in the middle to fit "
                f"{max(0, budget)} tokens"
            ),
        ),
    )
    return OptimizedPrompt(result, language, stats)


def fit_text(text: str, budget: int) -> str:
    """``text`` cut in the middle to fit ``budget`` tokens (head and tail kept), marked."""
    if estimate_tokens(text) <= budget:
        return text
    if budget <= 8:
        return ""
    marker = "\n[... {} characters omitted to fit the model's context ...]\n"
    room = tokens_to_chars(budget - estimate_tokens(marker.format(10**9)) - 1)
    while room > 0:
        head = text[: room * 2 // 3]
        tail = text[len(text) - room // 3 :] if room // 3 else ""
        cut = head + marker.format(len(text) - len(head) - len(tail)) + tail
        if estimate_tokens(cut) <= budget:
            return cut
        room = room * 9 // 10
    return ""


def is_binary(text: str) -> bool:
    """Whether ``text`` looks like binary junk (NUL bytes or many control characters)."""
    sample = text[:65536]
    if "\x00" in sample:
        return True
    return len(_CONTROL_RE.findall(sample)) > _MAX_CONTROL_SHARE * max(1, len(sample))


def _describe_focus(focus: Focus, defined: set[str] | None = None) -> tuple[str, ...]:
    """What the question points at, in words, for the stats (names the code defines only)."""
    names = focus.names if defined is None else focus.names & defined
    described = [f"name `{name}`" for name in sorted(names)[:8]]
    described += [f"frame {frame.text[:100]}" for frame in focus.frames[:4]]
    described += [f"file {path}" for path in focus.files[:4]]
    return tuple(described)


def _fit_instruction(parts: PromptParts, budget: int) -> tuple[PromptParts, list[str]]:
    """Keep the instruction within the budget: trim huge error reports, then cut its middle.

    The instruction is otherwise never altered; these cuts are reported.
    """
    warnings: list[str] = []
    before, after = parts.instruction_before, parts.instruction_after
    # Leave at least a quarter of the budget for code.
    limit = max(budget * 3 // 4, 0)
    if estimate_tokens(before) + estimate_tokens(after) <= limit:
        return parts, warnings
    trimmed = [_trim_reports(before), _trim_reports(after)]
    if trimmed != [before, after]:
        warnings.append("report_trimmed: a long error report was cut, keeping its innermost frames")
        before, after = trimmed
    if estimate_tokens(before) + estimate_tokens(after) > budget - 16:
        warnings.append(
            "question_cut: the question alone does not fit the model's context; its middle was cut"
        )
        share = max(0, budget - 16)
        if before and after:
            before, after = fit_text(before, share // 2), fit_text(after, share // 2)
        else:
            before, after = fit_text(before, share), fit_text(after, share)
    return attrs.evolve(parts, instruction_before=before, instruction_after=after), warnings


def _trim_reports(text: str) -> str:
    return map_reports(text, trim_report) if text else text


def _optimize(
    text: str, context_tokens: int, max_tokens: int, query: str, started: float
) -> OptimizedPrompt:
    if not isinstance(text, str) or not text.strip():
        return _skipped(text if isinstance(text, str) else "", TEXT, SKIP_EMPTY, started)
    budget = budget_tokens(context_tokens, max_tokens)
    if is_binary(text):
        return _skipped(text, TEXT, SKIP_BINARY, started, budget)
    parts = split_prompt(text)
    language = detect_language(parts.code, parts.fence_tag, parts.instruction)
    if fits_as_is(text, budget):
        return _skipped(text, language, SKIP_FITS, started, budget)
    if not parts.code.strip():
        return _skipped(text, language, SKIP_NO_CODE, started, budget)

    parts, warnings = _fit_instruction(parts, budget)
    ranking_query = f"{parts.instruction}\n{query}" if query else parts.instruction
    focus = read_focus(ranking_query)
    code = _focus(parts.code, focus.names)
    chunks = chunk_text(code, language)
    unique = dedupe(chunks)
    ranked = rank_chunks(unique, focus)
    assembly = assemble(
        parts.instruction_before,
        parts.instruction_after,
        ranked,
        len(chunks),
        language,
        budget,
        total_lines=code.count("\n") + 1,
    )
    for _ in range(2):
        # Chunk costs are estimated one by one; the joined text may come out a
        # little dearer. Assemble again for what is left rather than cut it.
        over = estimate_tokens(assembly.text) - budget
        if over <= 0:
            break
        assembly = assemble(
            parts.instruction_before,
            parts.instruction_after,
            ranked,
            len(chunks),
            language,
            budget - over - 4,
            total_lines=code.count("\n") + 1,
        )
    result = assembly.text
    reduction = 1.0 - len(result) / len(text)
    # Read once per set of names: the chunks of one long block all carry its names.
    defined: set[str] = set()
    for chunk_name, chunk_names in {(c.name, c.names) for c in chunks}:
        defined.update(chunk_names, [chunk_name] if chunk_name else [])
    described = _describe_focus(focus, defined)
    # Under 10% saved is not worth changing what the user wrote, unless the
    # original does not fit: then sending it unchanged only earns a 400.
    if reduction < MIN_REDUCTION and estimate_tokens(text) <= budget:
        return _skipped(text, language, SKIP_NO_GAIN, started, budget, len(chunks), described)
    if estimate_tokens(result) > budget:
        # Assembly keeps the instruction whole; a question this long was cut above,
        # so this is a last guard, never expected.
        result = fit_text(result, budget)
        warnings.append("over_budget: the assembled prompt was cut in the middle to fit")
    why = {item.chunk.index: item.why for item in ranked}
    kept = tuple(
        KeptChunk(
            chunk.name,
            chunk.kind,
            (chunk.start_line + 1, max(chunk.start_line + 1, chunk.end_line)),
            why.get(chunk.index, "order"),
            whole=chunk.index not in assembly.cut,
        )
        for chunk in assembly.kept
    )
    if assembly.cut:
        names = ", ".join(
            f"`{c.name}`" if c.name else "the best match"
            for c in assembly.kept
            if c.index in assembly.cut
        )
        warnings.append(
            f"target_cut: {names} alone does not fit the budget; its best part was sent"
        )
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
        kept=_bounded(kept),
        focus=described,
        warnings=tuple(warnings),
    )
    return OptimizedPrompt(result, language, stats)


_MAX_KEPT_REPORTED = 8


def _bounded(kept: tuple[KeptChunk, ...]) -> tuple[KeptChunk, ...]:
    """The best kept chunks for the stats (a response header carries them)."""
    if len(kept) <= _MAX_KEPT_REPORTED:
        return kept
    rank = {"order": 2, "imports and constants": 1}
    return tuple(sorted(kept, key=lambda k: (rank.get(k.why, 0), k.lines))[:_MAX_KEPT_REPORTED])


def _focus(code: str, names: frozenset[str]) -> str:
    """Cap the code to chunk on huge inputs, keeping the parts the instruction points at.

    Chunking is linear but not free; a 5 MB paste cannot fit a small model
    anyway, so only the head and windows around definitions of identifiers
    the instruction names are processed, cut at line boundaries.
    """
    if len(code) <= MAX_CODE_CHARS:
        return code
    spans: list[tuple[int, int]] = [(0, MAX_CODE_CHARS // 2)]
    for name in sorted(names)[:8]:
        pattern = re.compile(
            rf"(def|class|fn|func|function|struct|impl|interface|type)\s+{re.escape(name)}\b"
        )
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


# --- conversations ----------------------------------------------------------

# Room kept free after a pasted file in a conversation, so the next turn (one
# answer of max_tokens plus a short question) still fits without re-trimming
# it: the leading messages then stay byte-identical and a backend's prompt
# cache keeps hitting.
_FOLLOW_UP_QUESTION_TOKENS = 64
# An old answer that has to give way keeps this much of its head.
_SHORT_ANSWER_CHARS = 300
_OMITTED_ANSWER = "[earlier answer omitted to fit the model's context]"
_MIN_CODE_TOKENS = 48


def _respend(message: _Message, _attribute: object, text: str) -> str:
    """Keep the conversation's total cost current as a message's text changes."""
    message.spent[0] += estimate_tokens(text) - estimate_tokens(message.text)
    return text


@attrs.define
class _Message:
    """One message while a conversation is fitted (mutable working state)."""

    index: int
    role: str
    original: str
    text: str = attrs.field(on_setattr=_respend)
    spent: list[int] = attrs.field(factory=lambda: [0], repr=False, eq=False)
    """The cost of all the conversation's messages, shared by them and kept current:
    summed over the messages at each step of the fitting, it was quadratic in them."""
    action: str = "kept"
    reason: str = "fits"
    kept: tuple[KeptChunk, ...] = ()
    optimized: OptimizedPrompt | None = None
    carries_code: bool = False

    @property
    def cost(self) -> int:
        return estimate_tokens(self.text) + _PER_MESSAGE_TOKENS


def optimize_messages(
    messages: Sequence[dict],
    *,
    context_tokens: int = 2048,
    max_tokens: int = 256,
) -> OptimizedMessages:
    """Fit a whole chat request (system prompt, history, current question) to the budget.

    Messages are in OpenAI chat shape (``content`` a string or a list of
    ``{"type": "text", "text": ...}`` parts). The budget is for the whole
    request: context minus the answer's reserve and the chat template. The
    current question (the last user message) is kept whole; code pasted in
    earlier messages is trimmed for the question it was asked with (and for
    the current one when that names code the trim left out); old assistant
    answers give way before user code does. A message nothing forces to
    change goes out byte for byte, so the leading messages of a conversation
    stay stable from turn to turn. New dicts are returned; the input is never
    mutated.
    """
    started = time.perf_counter()
    copies = [dict(message) if isinstance(message, dict) else {} for message in messages]
    try:
        return _fit_conversation(copies, context_tokens, max_tokens, started)
    except Exception:  # a bug here must cost the request its optimisation, not the request
        _LOGGER.exception("conversation optimisation failed; sending the messages unchanged")
        result = _skipped("", TEXT, SKIP_ERROR, started)
        return OptimizedMessages(copies, TEXT, result.stats)


def _fit_conversation(
    copies: list[dict], context_tokens: int, max_tokens: int, started: float
) -> OptimizedMessages:
    budget = budget_tokens(context_tokens, max_tokens)
    spent = [0]
    work = [
        _Message(i, str(message.get("role", "")), text, text, spent)
        for i, message in enumerate(copies)
        for text in [message_text(message.get("content"))]
    ]
    spent[0] = sum(m.cost for m in work)
    users = [m for m in work if m.role == "user" and m.text.strip()]
    if not users:
        result = _skipped("", TEXT, SKIP_NO_CODE, started)
        return OptimizedMessages(copies, TEXT, result.stats)
    current = users[-1]
    current.reason = "the current question, kept whole"
    for message in users:
        message.carries_code = (
            len(message.text) >= 200 and code_weight(message.text[:MAX_CODE_CHARS]) > 0
        )
    coders = [m for m in users if m.carries_code]
    language = TEXT
    total = spent[0]
    if total <= budget and all(len(m.text) < SMALL_PROMPT_CHARS for m in coders):
        return _conversation_result(copies, work, language, SKIP_FITS, budget, started, [])
    if not coders and total <= budget:
        return _conversation_result(copies, work, language, SKIP_NO_CODE, budget, started, [])
    reserve = min(max(0, budget) * 2 // 5, 2 * (max_tokens + _FOLLOW_UP_QUESTION_TOKENS))
    warnings: list[str] = []

    # 1. The stable pass: each pasted file trimmed for its own question, with
    # room left for a follow-up turn; nothing here depends on later turns
    # except when the current question names code the trim left out.
    # Summed as the pass goes (per message, summing all the others was quadratic):
    # only the message at hand changes, so the ones before it are final.
    prefix = summed = 0
    own_queries = _own_queries(work)
    next_users = {m.index: n.index for m, n in zip(users, users[1:], strict=False)}
    for message in coders:
        prefix += sum(m.cost for m in work[summed : message.index])
        summed = message.index
        own = own_queries[message.index]
        # The first exchange after the paste (an answer, the next question) is
        # part of this turn's shape: room is kept for it and, beyond it, for
        # at least half a follow-up, so the next turn still fits unchanged.
        next_user = next_users.get(message.index)
        follow = (
            sum(m.cost for m in work[message.index + 1 : next_user + 1])
            if next_user is not None
            else 0
        )
        room = budget - prefix - max(reserve, follow + reserve // 2)
        _trim(message, room, context_tokens, max_tokens, budget, own, current)
        if message.optimized is not None and any(
            w.startswith("target_cut") for w in message.optimized.stats.warnings
        ):
            # The code the question is about does not fit with room kept for
            # the next turn: if it fits whole without that room, a whole
            # function now beats a stable prefix later.
            kept = attrs.evolve(message)
            _trim(
                message, budget - prefix - follow, context_tokens, max_tokens, budget, own, current
            )
            if message.optimized is not None and any(
                w.startswith("target_cut") for w in message.optimized.stats.warnings
            ):
                message.text, message.action, message.reason = kept.text, kept.action, kept.reason
                message.kept, message.optimized = kept.kept, kept.optimized
        if message.optimized is not None:
            language = message.optimized.language if language == TEXT else language

    # 2. Forced: over budget. Old answers give way first, then code, then old
    # questions; the current question last of all.
    def over() -> int:
        return spent[0] - budget

    # Tool results and the assistant turns that called tools are a tool loop's
    # state: the optimiser never edits them (issue 15).
    tool_loop = {m.index for m in work if m.role == "tool" or copies[m.index].get("tool_calls")}
    answers = [
        m
        for m in work
        if m.role == "assistant" and m.index < current.index and m.index not in tool_loop
    ]
    older, last_answer = answers[:-1], answers[-1:]
    # Oldest first, so a cut once made is made again next turn and the
    # messages before it keep their bytes.
    for message in older:
        if over() <= 0:
            break
        _shorten_answer(message)
    for message in older:
        if over() <= 0:
            break
        _omit_answer(message)
    for message in sorted(coders, key=lambda m: -m.cost):
        if over() <= 0:
            break
        room = message.cost - _PER_MESSAGE_TOKENS - over()
        query = (
            f"{own_queries[message.index]}\n{current.text}"
            if message is not current
            else ""
        )
        _trim(
            message,
            max(room, _MIN_CODE_TOKENS),
            context_tokens,
            max_tokens,
            budget,
            query,
            None,
            forced=True,
        )
    for message in last_answer:
        if over() > 0:
            _shorten_answer(message)
    for message in users:
        if over() <= 0:
            break
        if message is not current and not message.carries_code:
            _shorten(
                message, max(16, message.cost - over()), "an earlier question, shortened to fit"
            )
    for message in [
        m
        for m in work
        if m.role not in ("user", "assistant", "system") and m.index not in tool_loop
    ]:
        if over() <= 0:
            break
        _shorten(message, max(16, message.cost - over()), "shortened to fit")
    if over() > 0:
        for message in coders:
            if over() <= 0:
                break
            if message is not current:
                _shorten(message, max(16, message.cost - over()), "earlier code, cut to fit")
    if over() > 0:
        warnings.append(
            "question_cut: the current question does not fit the model's context "
            "with the system prompt; its middle was cut"
        )
        _shorten(current, max(16, current.cost - over()), "the current question, cut to fit")
    if over() > 0:
        for message in [m for m in work if m.role == "system"]:
            warnings.append("system_cut: the system prompt was cut to fit")
            _shorten(message, max(16, message.cost - over()), "the system prompt, cut to fit")
            if over() <= 0:
                break
    for message in coders:
        if message.optimized is not None:
            warnings.extend(message.optimized.stats.warnings)
    changed = any(m.text != m.original for m in work)
    reason = None if changed else (SKIP_FITS if total <= budget else SKIP_NO_GAIN)
    return _conversation_result(copies, work, language, reason, budget, started, warnings)


def _own_queries(work: list[_Message]) -> dict[int, str]:
    """What each pasted file is trimmed for, besides the prose with it: the next user message.

    Only the question asked right after the code (never a later one), so the
    trim of a file stays the same as the conversation grows. Read in one pass
    from the end (looked for from each message, it was quadratic in them).
    """
    queries: dict[int, str] = {}
    following = ""
    for message in reversed(work):
        queries[message.index] = following
        if message.role == "user":
            following = message.original
    return queries


def _trim(
    message: _Message,
    room: int,
    context_tokens: int,
    max_tokens: int,
    budget: int,
    query: str,
    current: _Message | None,
    *,
    forced: bool = False,
) -> None:
    """Optimise a code-carrying message to ``room`` tokens for ``query``."""
    if room < _MIN_CODE_TOKENS:
        return
    # optimize_text takes a context; give it the one that leaves ``room``.
    context = room + max_tokens + TEMPLATE_OVERHEAD_TOKENS
    result = optimize_text(
        message.original, context_tokens=context, max_tokens=max_tokens, query=query or None
    )
    if current is not None and current is not message:
        missing = _missing_names(current.original, message.original, result)
        if missing:
            # The current question is about code this trim left out: trim again for it.
            result = optimize_text(
                message.original,
                context_tokens=context,
                max_tokens=max_tokens,
                query=f"{query}\n{current.original}",
            )
    message.optimized = result
    if result.stats.skipped_reason is None:
        message.text = result.text
        message.action = "optimized"
        message.kept = result.stats.kept
        message.reason = (
            "code trimmed for the current question, to fit"
            if forced
            else "code trimmed for its question"
        )
    elif message.reason == "fits":
        message.reason = f"code kept whole ({result.stats.skipped_reason})"


def _missing_names(question: str, original: str, result: OptimizedPrompt) -> list[str]:
    """Names the question points at that the code has but the trim left the definition of out."""
    if result.stats.skipped_reason is not None:
        return []
    focus = read_focus(question)
    wanted = [name for name in focus.names if len(name) >= 3]
    # A plain word the code defines ("why does parse crash now?") counts here
    # too: re-trimming for a word that was only English costs one turn's prefix.
    wanted += [name for name in focus.soft_names if len(name) >= 4]
    wanted += [frame.function for frame in focus.frames if frame.function]
    kept = {k.name for k in result.stats.kept}
    # A name _defines finds stands between non-word characters, so one of word
    # characters is a word of the code: with many names, the code's words are read
    # once (searching the whole code for each of thousands was quadratic).
    words = set(_WORD_RE.findall(original)) if len(wanted) > _FEW_NAMES else None
    return [
        name
        for name in wanted
        if name not in kept
        and (words is None or name in words or not _WORD_RE.fullmatch(name))
        and _defines(original, name)
    ]


_WORD_RE = re.compile(r"\w+")
_FEW_NAMES = 16


def _defines(code: str, name: str) -> bool:
    """Whether ``code`` looks like it defines ``name`` (a cheap check, no parse).

    The words before a name in a declaration are matched within its line: across
    lines, every line start walked over every later word (quadratic in the code),
    and a declaration split over lines still matches on the line its name is on."""
    if name not in code:
        return False
    escaped = re.escape(name)
    return (
        re.search(
            rf"\b(?:def|fn|func|function|class|struct|enum|trait|interface|type|impl)\s+(?:\([^)]*\)\s*)?{escaped}\b"
            rf"|^[ \t]*(?:[\w<>\[\],*&:]+[ \t]+)*{escaped}\s*\([^;]*$",
            code,
            re.MULTILINE,
        )
        is not None
    )


def _shorten_answer(message: _Message) -> None:
    if len(message.text) <= _SHORT_ANSWER_CHARS + 80:
        return
    head = message.text[:_SHORT_ANSWER_CHARS]
    cut = head.rfind("\n")
    head = head[:cut] if cut > _SHORT_ANSWER_CHARS // 2 else head
    message.text = (
        f"{head.rstrip()}\n[... rest of this earlier answer omitted to fit the model's context]"
    )
    message.action = "shortened"
    message.reason = "an old answer, shortened to fit"


def _omit_answer(message: _Message) -> None:
    if estimate_tokens(message.text) <= estimate_tokens(_OMITTED_ANSWER):
        return
    message.text = _OMITTED_ANSWER
    message.action = "omitted"
    message.reason = "an old answer, omitted to fit"


def _shorten(message: _Message, tokens: int, reason: str) -> None:
    cut = fit_text(message.text, max(0, tokens - _PER_MESSAGE_TOKENS))
    if cut != message.text:
        message.text = cut
        message.action = "shortened"
        message.reason = reason


def _conversation_result(
    copies: list[dict],
    work: list[_Message],
    language: str,
    reason: str | None,
    budget: int,
    started: float,
    warnings: list[str],
) -> OptimizedMessages:
    for message in work:
        if message.text != message.original:
            copies[message.index]["content"] = _replace_content(
                copies[message.index].get("content"), message.text
            )
    coded = [m.optimized for m in work if m.optimized is not None]
    original = sum(len(m.original) for m in work)
    now = sum(len(m.text) for m in work)
    kept = tuple(k for m in work for k in m.kept)
    stats = OptimizeStats(
        original_chars=original,
        optimized_chars=now,
        reduction=round(1.0 - now / original, 4) if original else 0.0,
        chunks_total=sum(o.stats.chunks_total for o in coded),
        chunks_unique=sum(o.stats.chunks_unique for o in coded),
        chunks_kept=sum(o.stats.chunks_kept for o in coded),
        elapsed_ms=(time.perf_counter() - started) * 1000.0,
        skipped_reason=reason,
        budget_tokens=budget,
        estimated_tokens=sum(m.cost for m in work),
        kept=_bounded(kept),
        focus=next((o.stats.focus for o in reversed(coded) if o.stats.focus), ()),
        warnings=tuple(dict.fromkeys(warnings)),
        messages=tuple(
            MessageStats(
                m.index, m.role, m.action, m.reason, len(m.original), len(m.text), m.kept[:6]
            )
            for m in work
        ),
    )
    if language == TEXT and coded:
        language = coded[-1].language
    return OptimizedMessages(copies, language, stats)


def _replace_content(content: object, text: str) -> object:
    """Put ``text`` in place of the message's text, keeping non-text parts (images)."""
    if isinstance(content, list):
        others = [
            part for part in content if not (isinstance(part, dict) and part.get("type") == "text")
        ]
        return [{"type": "text", "text": text}, *others]
    return text


__all__ = [
    "KeptChunk",
    "MessageStats",
    "OptimizeStats",
    "OptimizedMessages",
    "OptimizedPrompt",
    "budget_tokens",
    "fit_text",
    "optimize_messages",
    "optimize_text",
]
