"""The OpenAI chat/completions wire format: typed requests in, dicts out.

Bodies are structured by cattrs at the edge with strict scalar hooks (a string
is not an int, a number is not a string), so the handlers only see valid typed
objects and any structuring failure is a 400 that names the field. Unknown
keys are ignored, as OpenAI-compatible servers do, so ordinary clients that
send extra options (``user``, ``stream_options``, ...) keep working.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any, Literal

import attrs
import cattrs
from aiohttp import web

from cerebrum.errors import BadRequest, PayloadTooLarge, RequestTimeout
from cerebrum.middlewares import send_continue

ROLES = ("system", "developer", "user", "assistant", "tool")


def _in_range(low: float, high: float):  # type: ignore[no-untyped-def]
    def check(_: Any, attribute: attrs.Attribute, value: float | None) -> None:
        if value is not None and not low <= value <= high:
            raise ValueError(f"'{attribute.name}' must be between {low} and {high}, got {value}")

    return check


def _at_least(low: int):  # type: ignore[no-untyped-def]
    def check(_: Any, attribute: attrs.Attribute, value: int | None) -> None:
        if value is not None and value < low:
            raise ValueError(f"'{attribute.name}' must be >= {low}, got {value}")

    return check


@attrs.frozen
class ChatMessage:
    role: str
    content: str = ""


@attrs.frozen
class SamplingParams:
    """Generation settings common to chat and text completions."""

    max_tokens: int | None = attrs.field(default=None, validator=_at_least(1))
    temperature: float = attrs.field(default=0.8, validator=_in_range(0.0, 2.0))
    top_p: float = attrs.field(default=0.95, validator=_in_range(0.0, 1.0))
    stop: tuple[str, ...] = ()
    seed: int | None = None


@attrs.frozen
class ChatCompletionRequest:
    messages: tuple[ChatMessage, ...] = attrs.field(validator=attrs.validators.min_len(1))
    model: str | None = None
    stream: bool = False
    params: SamplingParams = SamplingParams()
    kind: Literal["chat"] = "chat"


@attrs.frozen
class CompletionRequest:
    prompt: str
    model: str | None = None
    stream: bool = False
    params: SamplingParams = SamplingParams()
    kind: Literal["text"] = "text"


AnyCompletionRequest = ChatCompletionRequest | CompletionRequest


# -- structuring ------------------------------------------------------------

def _strict(kind: type, *accepted: type):  # type: ignore[no-untyped-def]
    def hook(value: Any, _: type) -> Any:
        if isinstance(value, bool) and bool not in accepted:
            raise TypeError(f"expected {kind.__name__}, got a boolean")
        if not isinstance(value, accepted):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return kind(value)

    return hook


def _content_text(value: Any, _: type) -> str:
    """Message content: a string, null, or a list of ``{"type": "text"}`` parts."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for part in value:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise TypeError("only text content parts are supported")
            text = part.get("text")
            if not isinstance(text, str):
                raise TypeError("a text content part needs a string 'text'")
            parts.append(text)
        return "".join(parts)
    raise TypeError(f"expected a string or a list of text parts, got {type(value).__name__}")


def _stop(value: Any, _: type) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        if len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return tuple(item for item in value if item)
    raise TypeError("expected a string or a list of strings")


def _prompt(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    raise TypeError("expected a string (token arrays and batches are not supported)")


wire_converter = cattrs.Converter()
wire_converter.register_structure_hook(str, _strict(str, str))
wire_converter.register_structure_hook(int, _strict(int, int))
wire_converter.register_structure_hook(float, _strict(float, int, float))
wire_converter.register_structure_hook(bool, _strict(bool, bool))
wire_converter.register_structure_hook_func(lambda t: t == tuple[str, ...], _stop)


@wire_converter.register_structure_hook
def _structure_message(value: Any, _: type) -> ChatMessage:
    if not isinstance(value, dict):
        raise TypeError("each message must be an object")
    role = value.get("role")
    if role not in ROLES:
        raise ValueError(f"'role' must be one of {', '.join(ROLES)}, got {role!r}")
    if role == "user" and value.get("content") is None:
        # Generating from an empty prompt is never what the client meant.
        raise ValueError("a user message needs 'content'")
    return ChatMessage(role=role, content=_content_text(value.get("content"), str))


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    params = {
        key: body[key]
        for key in ("max_tokens", "temperature", "top_p", "stop", "seed")
        if key in body and body[key] is not None
    }
    if "max_tokens" not in params and body.get("max_completion_tokens") is not None:
        params["max_tokens"] = body["max_completion_tokens"]
    return params


def _check_unsupported(body: dict[str, Any]) -> None:
    n = body.get("n", 1)
    if n not in (1, None):
        raise BadRequest("only n=1 is supported", param="n")


def _describe(exc: BaseException) -> str:
    """A short human message from a cattrs error tree."""
    if isinstance(exc, cattrs.BaseValidationError):
        messages = []
        for sub in exc.exceptions:
            where = ""
            for note in getattr(sub, "__notes__", []):
                if "@ attribute " in note:
                    where = note.rsplit("@ attribute ", 1)[1].strip()
                elif "@ index " in note:
                    where = f"index {note.rsplit('@ index ', 1)[1].strip()}"
            text = _describe(sub)
            # "params" is our grouping, not a field the client sent.
            messages.append(f"{where}: {text}" if where and where != "params" else text)
        return "; ".join(messages)
    if isinstance(exc, KeyError):
        return f"missing required field {exc}"
    return str(exc)


def structure_request(body: Any, kind: Literal["chat", "text"]) -> AnyCompletionRequest:
    """Structure a decoded JSON body into a typed request, or raise BadRequest."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    _check_unsupported(body)
    required = "messages" if kind == "chat" else "prompt"
    if body.get(required) is None:
        raise BadRequest(f"missing required field '{required}'", param=required)
    raw = {
        required: body[required],
        "stream": body.get("stream") or False,
        "params": _sampling(body),
    }
    if body.get("model") is not None:
        raw["model"] = body["model"]
    if kind == "chat" and not isinstance(body["messages"], list):
        raise BadRequest("'messages' must be a list of message objects", param="messages")
    cls = ChatCompletionRequest if kind == "chat" else CompletionRequest
    try:
        if kind == "text":
            raw["prompt"] = _prompt(raw["prompt"], str)
        return wire_converter.structure(raw, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        raise BadRequest(f"invalid request: {_describe(exc)}") from None


BODY_TIMEOUT_S = 30.0
"""A client gets this long to send its whole body; a trickle (slowloris) is cut off.
(Headers are bounded by aiohttp's keep-alive timeout on a new connection.)"""


async def read_json(request: web.Request, max_bytes: int) -> Any:
    """Read and decode a JSON body, refusing oversized ones before reading them."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {max_bytes}")
    # Auth and the size check have passed: only now ask for the body.
    await send_continue(request)
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            # Without Content-Length (chunked), read at most one byte past the limit.
            data = await _read_body(request, max_bytes + 1)
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {BODY_TIMEOUT_S:g} s") \
            from None
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"request body exceeds the limit of {max_bytes} bytes")
    if not data:
        raise BadRequest("the request body is empty; expected a JSON object")
    return decode_json(data)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def decode_json(data: bytes) -> Any:
    """Decode a request body, or raise BadRequest: also for what ``json`` accepts but
    nothing downstream can handle (nesting deep enough to exhaust the stack, integers
    over Python's 4,300-digit limit, unpaired surrogates that cannot be encoded)."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the request body is nested too deeply") from None
    except ValueError as exc:  # int() over sys.get_int_max_str_digits()
        raise BadRequest(f"the request body is not usable JSON: {str(exc)[:120]}") from None
    # Only bodies with a \uD800-\uDFFF escape can hold a lone surrogate: the
    # walk is skipped for everything else.
    if _SURROGATE_ESCAPE.search(data) and _has_lone_surrogate(value):
        raise BadRequest("the request body holds an unpaired UTF-16 surrogate (\\ud800-\\udfff)")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# -- responses --------------------------------------------------------------

async def _read_body(request: web.Request, limit: int) -> bytes:
    """Up to ``limit`` bytes of the body (``StreamReader.read(n)`` returns early)."""
    chunks, size = [], 0
    while size < limit:
        chunk = await request.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def new_completion_id(kind: Literal["chat", "text"]) -> str:
    """A fresh id in OpenAI's style."""
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@attrs.define
class CompletionEnvelope:
    """Builds the response objects of one completion, streamed or whole."""

    kind: Literal["chat", "text"]
    model: str
    id: str = attrs.field(factory=lambda: "")
    created: int = attrs.field(factory=lambda: int(time.time()))

    def __attrs_post_init__(self) -> None:
        if not self.id:
            self.id = new_completion_id(self.kind)

    def chunk(
        self,
        text: str | None,
        *,
        finish_reason: str | None = None,
        usage_: dict[str, int] | None = None,
        first: bool = False,
    ) -> dict[str, Any]:
        """One streamed chunk (``chat.completion.chunk`` or ``text_completion``)."""
        if self.kind == "chat":
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None,
                                      "finish_reason": finish_reason}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None,
                      "finish_reason": finish_reason}
            obj = "text_completion"
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }
        if usage_ is not None:
            chunk["usage"] = usage_
        return chunk

    def whole(self, text: str, finish_reason: str, usage_: dict[str, int]) -> dict[str, Any]:
        """A complete, non-streamed response."""
        if self.kind == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
            obj = "text_completion"
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage_,
        }
