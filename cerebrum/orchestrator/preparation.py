"""Prompt preparation: the one place where a request is changed before it goes to a backend.

Optimisation and routing (``cerebrum.prompt``) plug in here. ``prepare_request``
takes the client's body and returns the body to forward, the model to ask the
backends for, and the optimiser's figures. It is pure (no aiohttp, no I/O), so
it is tested on plain data, and the proxy may run it off the event loop for
large prompts.

Order: optimise for the provisional model (the one asked for, else the
default), which also detects the language; route by that language when the
request asked for ``auto`` (or no model); if the routed model has a different
context size, optimise again for it. An optimiser failure never costs the
request: it is logged and the original prompt goes out.

The optimiser counts tokens with an estimate; :mod:`token_count` checks the
result with the backend's own tokenizer and, when it is over, prepares again
with ``shrink_tokens`` taken off the context.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from typing import Any

import attrs

from cerebrum.errors import BadRequest
from cerebrum.openai_wire import AnyCompletionRequest, ChatCompletionRequest
from cerebrum.prompt import DEFAULT_LANGUAGE_MODELS, optimize_messages, optimize_text, route_model
from cerebrum.prompt.instruction import message_text
from cerebrum.prompt.optimizer import (
    SKIP_ERROR,
    SKIP_FITS,
    SMALL_PROMPT_CHARS,
    OptimizeStats,
    budget_tokens,
    fits_as_is,
)
from cerebrum.prompt.tokens import estimate_tokens
from cerebrum.protocol import OPTIMIZE_HEADER, OPTIONS_FIELD, named_model
from cerebrum.workspace.augment import Retriever, augment_request

_LOGGER = logging.getLogger(__name__)

DEFAULT_CONTEXT_TOKENS = 2048
"""Assumed when the backend does not report a model's ``context_length``."""
DEFAULT_REPLY_TOKENS = 256
"""Reserved for the answer when the request sets no ``max_tokens``."""


@attrs.frozen
class PreparedRequest:
    body: dict[str, Any]
    """The JSON body to forward."""
    model: str | None
    """The model asked of the backends; None: the backend's own default."""
    prompt_chars_before: int
    prompt_chars_after: int
    language: str | None = None
    report: OptimizeStats | None = None
    """What the optimiser did (typed); None only when it was not asked to run (an
    optimiser failure is a report too, ``skipped_reason`` ``error``)."""
    prompt: str | None = None
    """The text that carries the (optimised) code: the prompt, or that chat message."""
    retrieval: Mapping[str, Any] | None = None
    """What a workspace retrieval put in (``Retrieved.as_dict``); None when none was asked for."""
    context_tokens: int = DEFAULT_CONTEXT_TOKENS
    """The context the prompt was fitted to (the model's, less any shrink)."""
    reply_tokens: int = DEFAULT_REPLY_TOKENS
    """Tokens held back for the answer."""

    @property
    def stats(self) -> dict[str, Any] | None:
        """The optimiser's figures for the wire (the stats header, /v1/optimize); None when
        it was not asked to run."""
        return wire_stats(self.report) if self.report is not None else None

    @property
    def optimized(self) -> bool:
        return self.report is not None and self.report.skipped_reason is None


MAX_STATS_BYTES = 6000
"""The stats travel in a response header: aiohttp clients refuse header lines over 8 KB."""


def wire_stats(report: OptimizeStats, max_bytes: int = MAX_STATS_BYTES) -> dict[str, Any]:
    """``report`` as JSON-ready data, within ``max_bytes``: every field of OptimizeStats
    and ``detail_shed``, always the same set (docs/orchestrator.md), so a reader never
    meets a field that is sometimes absent.

    To fit, detail is shed (``detail_shed`` is then true) in this order: unchanged
    messages, chunk lists per message, the top-level chunk and focus lists, message
    reasons, the earliest messages; last, every list.
    """
    data = attrs.asdict(report)
    data["detail_shed"] = False
    if _size(data) <= max_bytes:
        return data
    data["detail_shed"] = True
    # Messages sent unchanged say nothing the user does not know; then chunk lists go.
    data["messages"] = [m for m in data["messages"] if m["action"] != "kept" or m["kept"]]
    for message in data["messages"]:
        if _size(data) <= max_bytes:
            break
        message["kept"] = message["kept"][:2]
    if _size(data) > max_bytes:
        data["kept"] = data["kept"][:3]
        data["focus"] = data["focus"][:3]
    if _size(data) > max_bytes:
        for message in data["messages"]:
            message["kept"], message["reason"] = [], message["reason"][:60]
        data["messages"] = data["messages"][-8:]
    if _size(data) > max_bytes:
        data["kept"], data["focus"], data["messages"] = [], [], []
        data["warnings"] = [warning[:200] for warning in data["warnings"][:4]]
    return data


def _size(data: Any) -> int:
    return len(json.dumps(data, separators=(",", ":")))


@attrs.frozen
class Catalogue:
    """What the backends offer, as plain data: model id → context length (None: unknown)."""

    contexts: Mapping[str, int | None]
    default_model: str | None
    language_models: Mapping[str, str] = DEFAULT_LANGUAGE_MODELS

    def context_of(self, model: str | None) -> int:
        context = self.contexts.get(model) if model is not None else None
        return context if isinstance(context, int) and context > 0 else DEFAULT_CONTEXT_TOKENS

    @property
    def available(self) -> Collection[str]:
        return self.contexts.keys()


OPTION_NAMES = ("optimize", "session", "workspace")
"""What ``"cerebrum": {...}`` may hold."""


def check_options(body: object) -> None:
    """Refuse (400) an options object this service would not read whole: an unknown
    option or an ``optimize`` that is not a boolean would otherwise be ignored silently
    (``"optimize": "false"`` would leave optimisation on)."""
    options = body.get(OPTIONS_FIELD) if isinstance(body, Mapping) else None
    if options is None:
        return
    if not isinstance(options, Mapping):
        raise BadRequest(f"'{OPTIONS_FIELD}' must be an object with any of "
                         f"{', '.join(OPTION_NAMES)}", param=OPTIONS_FIELD)
    for name in options:
        if name not in OPTION_NAMES:
            raise BadRequest(f"unknown option '{OPTIONS_FIELD}.{name}'; the options are "
                             f"{', '.join(OPTION_NAMES)}", param=f"{OPTIONS_FIELD}.{name}")
    if "optimize" in options and not isinstance(options["optimize"], bool):
        raise BadRequest(f"'{OPTIONS_FIELD}.optimize' must be true or false",
                         param=f"{OPTIONS_FIELD}.optimize")


def wants_optimization(default: bool, headers: Mapping[str, str], body: Mapping[str, Any]) -> bool:
    """The configured default, unless the request opts out (or in)."""
    header = headers.get(OPTIMIZE_HEADER, "").strip().lower()
    if header in ("off", "0", "false", "no"):
        return False
    if header in ("on", "1", "true", "yes"):
        return True
    options = body.get(OPTIONS_FIELD)
    if isinstance(options, Mapping) and isinstance(options.get("optimize"), bool):
        return bool(options["optimize"])
    return default


def prompt_chars(parsed: AnyCompletionRequest) -> int:
    """The size of the prompt as the client sent it."""
    if isinstance(parsed, ChatCompletionRequest):
        return sum(len(message.content) for message in parsed.messages)
    return len(parsed.prompt)


def prepare_request(body: Mapping[str, Any], parsed: AnyCompletionRequest, *, optimize: bool,
                    catalogue: Catalogue, shrink_tokens: int = 0,
                    retriever: Retriever | None = None) -> PreparedRequest:
    """The request to forward: options removed, the prompt optimised, the model resolved.

    ``shrink_tokens`` is taken off the model's context: the backend's own
    tokenizer counted more than the estimate did. Never raises on the
    prompt's content.
    """
    forwarded = {key: value for key, value in body.items() if key != OPTIONS_FIELD}
    before = prompt_chars(parsed)
    wants_route = named_model(parsed.model) is None
    model = catalogue.default_model if wants_route else parsed.model
    reply_tokens = parsed.params.max_tokens or DEFAULT_REPLY_TOKENS

    def context(name: str | None) -> int:
        return max(1, catalogue.context_of(name) - shrink_tokens)

    retrieved = None
    if retriever is not None:  # workspace retrieval (cerebrum.workspace): code in, then optimise
        forwarded, parsed, retrieved = augment_request(
            forwarded, parsed, retriever, context_tokens=context(model),
            reply_tokens=reply_tokens, optimize=optimize)
    result: _Optimized | None = None
    if optimize and not wants_route and not shrink_tokens and _fits(
            parsed, before, context(model), reply_tokens):
        # The optimiser would only say "fits", after detecting the language,
        # which nothing needs here: skip it, it is most of a small request's cost.
        result = _Optimized({}, "", "",
                            _unchanged_report(before, context(model), reply_tokens, SKIP_FITS))
    elif optimize:
        result = _optimize(forwarded, parsed, context(model), reply_tokens)
    if wants_route:
        # Unknown (not optimised, or the optimiser failed): plain text.
        language = result.language if result is not None and result.language else "text"
        routed = route_model(None, language, catalogue.available,
                             language_models=catalogue.language_models,
                             default_model=catalogue.default_model or "")
        if routed and routed != model:
            if optimize and catalogue.context_of(routed) != catalogue.context_of(model):
                result = _optimize(forwarded, parsed, context(routed), reply_tokens)
            model = routed
    if result is not None:
        forwarded.update(result.fields)
    if model:
        forwarded["model"] = model
    else:
        # Nothing known to route to: let the backend pick its default.
        forwarded.pop("model", None)
    after = before
    if result is not None:
        after -= result.report.original_chars - result.report.optimized_chars
    return PreparedRequest(forwarded, model or None, before, after,
                           language=result.language or None if result else None,
                           report=result.report if result else None,
                           # "" when nothing was rewritten: the client's text stands.
                           prompt=(result.text or None) if result else None,
                           context_tokens=context(model), reply_tokens=reply_tokens,
                           retrieval=retrieved.as_dict() if retrieved is not None else None)


def _unchanged_report(chars: int, context: int, reply_tokens: int, reason: str) -> OptimizeStats:
    """The stats of a prompt sent as it came, for ``reason``, without the optimiser's work."""
    return OptimizeStats(original_chars=chars, optimized_chars=chars, reduction=0.0,
                         chunks_total=0, chunks_unique=0, chunks_kept=0, elapsed_ms=0.0,
                         skipped_reason=reason, budget_tokens=budget_tokens(context, reply_tokens))


def _tool_tokens(parsed: AnyCompletionRequest) -> int:
    """Context the tool definitions and the assistant's earlier calls take in the prompt.

    The optimiser only ever rewrites the user message that carries the code; tool
    definitions, tool calls and tool results pass through untouched, so their
    room is simply taken off the budget it works with.
    """
    if not isinstance(parsed, ChatCompletionRequest):
        return 0
    texts = [json.dumps(dict(f.parameters)) + f.name + f.description
             for f in (parsed.tools.functions if parsed.tools is not None else ())]
    texts += [call.function.name + call.function.arguments
              for message in parsed.messages for call in message.tool_calls]
    return estimate_tokens("\n".join(texts)) if texts else 0


def _fits(parsed: AnyCompletionRequest, chars: int, context: int, reply_tokens: int) -> bool:
    """The optimiser's own "already fits" rule, without the work before it."""
    context -= _tool_tokens(parsed)
    if chars >= SMALL_PROMPT_CHARS:
        return False  # without joining the messages
    if isinstance(parsed, ChatCompletionRequest):
        text = "\n".join(message.content for message in parsed.messages)
    else:
        text = parsed.prompt
    return fits_as_is(text, budget_tokens(context, reply_tokens))


@attrs.frozen
class _Optimized:
    fields: dict[str, Any]
    """Body fields to replace (``messages`` or ``prompt``)."""
    text: str
    language: str
    report: OptimizeStats


def _optimize(body: Mapping[str, Any], parsed: AnyCompletionRequest, context: int,
              reply_tokens: int) -> _Optimized:
    context = max(1, context - _tool_tokens(parsed))
    try:
        if isinstance(parsed, ChatCompletionRequest):
            messages = optimize_messages(body["messages"], context_tokens=context,
                                         max_tokens=reply_tokens)
            changed = messages.stats.skipped_reason is None
            if messages.stats.skipped_reason == SKIP_ERROR:
                return _failed(parsed, context, reply_tokens)
            text = _code_text(body["messages"], messages.messages)
            fields: dict[str, Any] = {"messages": messages.messages} if changed else {}
            return _Optimized(fields, text, messages.language, messages.stats)
        prompt = optimize_text(parsed.prompt, context_tokens=context, max_tokens=reply_tokens)
        replaced = {"prompt": prompt.text} if prompt.stats.skipped_reason is None else {}
        return _Optimized(replaced, prompt.text, prompt.language, prompt.stats)
    except Exception:  # the optimiser must never cost the request
        _LOGGER.exception("prompt optimisation failed; forwarding the prompt unchanged")
        return _failed(parsed, context, reply_tokens)


def _failed(parsed: AnyCompletionRequest, context: int, reply_tokens: int) -> _Optimized:
    """The prompt goes out unchanged, and the stats say the optimiser failed."""
    return _Optimized({}, "", "", _unchanged_report(prompt_chars(parsed), context, reply_tokens,
                                                    SKIP_ERROR))


def _code_text(original: list[Any], optimized: list[dict[str, Any]]) -> str:
    """The text of the last message the optimiser changed, else of the longest user message."""
    texts = [message_text(m.get("content")) for m in optimized]
    changed = [texts[index] for index, message in enumerate(original)
               if isinstance(message, Mapping)
               and message_text(message.get("content")) != texts[index]]
    if changed:
        return max(changed, key=len)
    users = [text for m, text in zip(optimized, texts, strict=True) if m.get("role") == "user"]
    return max(users, key=len) if users else ""
