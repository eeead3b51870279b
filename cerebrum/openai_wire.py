"""The OpenAI chat/completions wire format: typed requests in, dicts out.

Bodies are structured at the edge with strict scalar hooks (a string is not
an int, a number is not a string), so the handlers only see valid typed
objects, and any failure is a 400 whose ``param`` names the field
(``temperature``, ``messages[1].tool_calls[0].function.name``, ...).

Nothing is silently ignored: a field is either honoured or refused with a 400
naming it, except the few in ``HARMLESS_FIELDS``, which change nothing a
client could observe. The README's backend section lists every field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from cerebrum.errors import BadRequest

ROLES = ("system", "developer", "user", "assistant", "tool")

HARMLESS_FIELDS = frozenset({
    "user",               # an end-user id for the provider's abuse tracking
    "metadata",           # tags for OpenAI's dashboard
    "store",              # keep the completion on OpenAI's side for evals: nothing is kept here
    "service_tier",       # OpenAI's capacity tier
    "safety_identifier",  # the successor of "user"
    "prompt_cache_key",   # a hint for OpenAI's prompt cache
    "cerebrum",           # the orchestrator's own options; it removes them before forwarding
})
"""Accepted and ignored: none of them changes the answer or its shape."""

MAX_STOP = 4
MAX_LOGIT_BIAS = 1024
MAX_TOOLS = 128
MAX_TOOLS_SCHEMA_BYTES = 256 * 1024
"""All of a request's tool parameter schemas together, as JSON."""
MAX_CHOICES = 8
"""The most answers one request may ask for (``n``); a backend also caps it at its slots."""
MAX_TOP_LOGPROBS = 20
"""OpenAI's own limit for chat ``top_logprobs``."""
MAX_COMPLETION_LOGPROBS = 5
"""OpenAI's own limit for text-completion ``logprobs``."""


class FieldError(ValueError):
    """A bad value, with the dotted path of the field it is in."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


# -- request types ----------------------------------------------------------

@attrs.frozen
class FunctionCall:
    """A function call the assistant made: its name and JSON-encoded arguments."""

    name: str
    arguments: str


@attrs.frozen
class ToolCall:
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


@attrs.frozen
class ChatMessage:
    role: str
    content: str = ""
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    """Calls an assistant message made (rendered back into the prompt)."""
    tool_call_id: str | None = None
    """For a ``tool`` message: the call it answers."""


@attrs.frozen
class FunctionDef:
    """One function a model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = attrs.field(factory=lambda: {"type": "object",
                                                                 "properties": {}})
    strict: bool = False


ToolChoice = Literal["auto", "none", "required"] | str
"""``auto``, ``none``, ``required``, or (wrapped in ``NamedTool``) one function."""


@attrs.frozen
class NamedTool:
    """``tool_choice: {"type": "function", "function": {"name": ...}}``."""

    name: str


@attrs.frozen
class ToolSpec:
    """The request's tools and how it lets the model use them."""

    functions: tuple[FunctionDef, ...]
    choice: Literal["auto", "none", "required"] | NamedTool = "auto"
    parallel: bool = False

    @property
    def active(self) -> bool:
        """The model may (or must) call one of them."""
        return bool(self.functions) and self.choice != "none"

    def allowed(self) -> tuple[FunctionDef, ...]:
        """The functions a call may name (just one for a named ``tool_choice``)."""
        if isinstance(self.choice, NamedTool):
            return tuple(f for f in self.functions if f.name == self.choice.name)
        return self.functions if self.choice != "none" else ()


@attrs.frozen
class ResponseFormat:
    """``response_format``: free text, any JSON object, or JSON matching ``schema``."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: Mapping[str, Any] | None = None
    name: str | None = None
    strict: bool = False


@attrs.frozen
class SamplingParams:
    """Generation settings common to chat and text completions.

    ``None`` for ``top_k``, ``min_p`` and ``repeat_penalty`` means the
    backend's default (the same as llama.cpp's server: 40, 0.05, 1.0).
    """

    max_tokens: int | None = None
    temperature: float = 0.8
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    """(token id, bias) pairs; a bias of -100 bans the token, +100 all but forces it."""
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    n: int = 1
    """How many answers (choices) to generate for the prompt."""
    grammar: Any = None
    """A compiled output grammar (``cerebrum.backend.grammar.Grammar``); the backend
    sets it from ``response_format`` or ``tools``, never the client directly."""


@attrs.frozen
class ChatCompletionRequest:
    messages: tuple[ChatMessage, ...]
    model: str | None = None
    stream: bool = False
    params: SamplingParams = SamplingParams()
    tools: ToolSpec | None = None
    response_format: ResponseFormat = ResponseFormat()
    include_usage: bool | None = None
    """``stream_options.include_usage``; None: not sent (usage on the finish chunk)."""
    kind: Literal["chat"] = "chat"


@attrs.frozen
class CompletionRequest:
    prompt: str
    model: str | None = None
    stream: bool = False
    params: SamplingParams = SamplingParams()
    echo: bool = False
    suffix: str | None = None
    """Text after the insertion point: fill-in-the-middle."""
    include_usage: bool | None = None
    kind: Literal["text"] = "text"


AnyCompletionRequest = ChatCompletionRequest | CompletionRequest


# -- structuring: small typed readers that know the path they read ----------

def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {str: "a string", int: "an integer", float: "a number", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)


def _expect_str(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise FieldError(param, f"'{param}' must be a string, got {_type_name(value)}")
    return value


def _expect_bool(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise FieldError(param, f"'{param}' must be a boolean, got {_type_name(value)}")
    return value


def _expect_int(value: Any, param: str, low: int | None = None,
                high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(param, f"'{param}' must be an integer, got {_type_name(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise FieldError(param, f"'{param}' must be {_bounds(low, high)}, got {value}")
    return value


def _expect_float(value: Any, param: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(param, f"'{param}' must be a number, got {_type_name(value)}")
    if not math.isfinite(value) or not low <= value <= high:
        raise FieldError(param, f"'{param}' must be between {low:g} and {high:g}, got {value}")
    return float(value)


def _expect_object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError(param, f"'{param}' must be an object, got {_type_name(value)}")
    return value


def _expect_list(value: Any, param: str, max_items: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise FieldError(param, f"'{param}' must be an array, got {_type_name(value)}")
    if max_items is not None and len(value) > max_items:
        raise FieldError(param, f"'{param}' may hold at most {max_items} items, "
                                f"got {len(value)}")
    return value


def _bounds(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"between {low} and {high}"
    return f">= {low}" if low is not None else f"<= {high}"


def _only_keys(obj: Mapping[str, Any], allowed: frozenset[str] | set[str], param: str) -> None:
    """Refuse keys we would otherwise silently drop."""
    for key in obj:
        if key not in allowed:
            raise FieldError(f"{param}.{key}", f"'{param}.{key}' is not supported")


def _content_text(value: Any, param: str) -> str:
    """Message content: a string, null, or a list of ``{"type": "text"}`` parts."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for index, part in enumerate(value):
            where = f"{param}[{index}]"
            if not isinstance(part, dict) or part.get("type") != "text":
                raise FieldError(where, f"'{where}': only text content parts are supported")
            parts.append(_expect_str(part.get("text"), f"{where}.text"))
        return "".join(parts)
    raise FieldError(param, f"'{param}' must be a string or a list of text parts, "
                            f"got {_type_name(value)}")


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        if len(value) > MAX_STOP:
            raise FieldError("stop", f"'stop' may hold at most {MAX_STOP} sequences")
        return tuple(item for item in value if item)
    raise FieldError("stop", "'stop' must be a string or a list of strings")


def _prompt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    raise FieldError("prompt", "'prompt' must be a string (token arrays and batches are "
                               "not supported)")


_MESSAGE_KEYS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id",
                           "refusal"})


def _tool_call(value: Any, param: str) -> ToolCall:
    call = _expect_object(value, param)
    if call.get("type", "function") != "function":
        raise FieldError(f"{param}.type", f"'{param}.type' must be 'function'")
    function = _expect_object(call.get("function"), f"{param}.function")
    arguments = function.get("arguments", "{}")
    if isinstance(arguments, dict):  # some clients send the object itself
        arguments = json.dumps(arguments, ensure_ascii=False)
    return ToolCall(
        id=_expect_str(call.get("id"), f"{param}.id"),
        function=FunctionCall(_expect_str(function.get("name"), f"{param}.function.name"),
                              _expect_str(arguments, f"{param}.function.arguments")),
    )


def _message(value: Any, param: str) -> ChatMessage:
    message = _expect_object(value, param)
    role = message.get("role")
    if role not in ROLES:
        raise FieldError(f"{param}.role",
                         f"'{param}.role' must be one of {', '.join(ROLES)}, got {role!r}")
    _only_keys(message, _MESSAGE_KEYS, param)
    if role == "user" and message.get("content") is None:
        # Generating from an empty prompt is never what the client meant.
        raise FieldError(f"{param}.content", f"a user message needs '{param}.content'")
    name = message.get("name")
    calls: tuple[ToolCall, ...] = ()
    if message.get("tool_calls") is not None:
        if role != "assistant":
            raise FieldError(f"{param}.tool_calls", "only assistant messages carry tool_calls")
        raw = _expect_list(message["tool_calls"], f"{param}.tool_calls", MAX_TOOLS)
        calls = tuple(_tool_call(c, f"{param}.tool_calls[{i}]") for i, c in enumerate(raw))
    call_id = message.get("tool_call_id")
    if role == "tool":
        call_id = _expect_str(call_id, f"{param}.tool_call_id")
    elif call_id is not None:
        raise FieldError(f"{param}.tool_call_id", "only tool messages carry a tool_call_id")
    return ChatMessage(
        role=role,
        content=_content_text(message.get("content"), f"{param}.content"),
        name=_expect_str(name, f"{param}.name") if name is not None else None,
        tool_calls=calls,
        tool_call_id=call_id,
    )


def _messages(value: Any) -> tuple[ChatMessage, ...]:
    if not isinstance(value, list):
        raise FieldError("messages", "'messages' must be a list of message objects")
    if not value:
        raise FieldError("messages", "'messages' must hold at least one message")
    return tuple(_message(m, f"messages[{i}]") for i, m in enumerate(value))


_FUNCTION_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                 "0123456789_-")


def _function_def(value: Any, param: str) -> FunctionDef:
    tool = _expect_object(value, param)
    _only_keys(tool, {"type", "function"}, param)
    if tool.get("type") != "function":
        raise FieldError(f"{param}.type", f"'{param}.type' must be 'function' "
                                          "(the only tool type)")
    function = _expect_object(tool.get("function"), f"{param}.function")
    where = f"{param}.function"
    _only_keys(function, {"name", "description", "parameters", "strict"}, where)
    name = _expect_str(function.get("name"), f"{where}.name")
    if not name or len(name) > 64 or not set(name) <= _FUNCTION_NAME_CHARS:
        raise FieldError(f"{where}.name", f"'{where}.name' must be 1 to 64 letters, digits, "
                                          f"'_' or '-', got {name!r}")
    description = function.get("description")
    parameters = function.get("parameters")
    strict = function.get("strict")
    if parameters is not None and _expect_object(parameters, f"{where}.parameters").get(
            "type", "object") != "object":
        # A call's arguments are a JSON object: any other schema gives calls that can
        # never be read back as one.
        raise FieldError(f"{where}.parameters", f"'{where}.parameters' must be an object "
                                                "schema ('type': 'object')")
    return FunctionDef(
        name=name,
        description=_expect_str(description, f"{where}.description") if description else "",
        parameters=(_expect_object(parameters, f"{where}.parameters") if parameters is not None
                    else {"type": "object", "properties": {}}),
        strict=_expect_bool(strict, f"{where}.strict") if strict is not None else False,
    )


def _tool_spec(body: Mapping[str, Any]) -> ToolSpec | None:
    raw_tools = body.get("tools")
    choice_raw = body.get("tool_choice")
    parallel_raw = body.get("parallel_tool_calls")
    if raw_tools is None:
        if choice_raw not in (None, "none"):
            raise FieldError("tool_choice", "'tool_choice' needs 'tools'")
        return None
    functions = tuple(_function_def(t, f"tools[{i}]")
                      for i, t in enumerate(_expect_list(raw_tools, "tools", MAX_TOOLS)))
    schema_bytes = sum(len(json.dumps(f.parameters)) for f in functions)
    if schema_bytes > MAX_TOOLS_SCHEMA_BYTES:
        # Each becomes grammar rules (seconds of work for megabytes), and a prompt
        # that long would not fit any context anyway.
        raise FieldError("tools", f"the tools' parameter schemas add up to {schema_bytes} bytes, "
                                  f"over {MAX_TOOLS_SCHEMA_BYTES}")
    names = [f.name for f in functions]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise FieldError(f"tools[{index}].function.name", f"two tools are named {name!r}")
    choice: Literal["auto", "none", "required"] | NamedTool = "auto" if functions else "none"
    if isinstance(choice_raw, str):
        if choice_raw not in ("auto", "none", "required"):
            raise FieldError("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' "
                                            f"or a named function, got {choice_raw!r}")
        choice = choice_raw  # type: ignore[assignment]
    elif choice_raw is not None:
        named = _expect_object(choice_raw, "tool_choice")
        if named.get("type") != "function":
            raise FieldError("tool_choice.type", "'tool_choice.type' must be 'function'")
        function = _expect_object(named.get("function"), "tool_choice.function")
        name = _expect_str(function.get("name"), "tool_choice.function.name")
        if name not in names:
            raise FieldError("tool_choice.function.name",
                             f"'tool_choice' names {name!r}, which is not among the tools")
        choice = NamedTool(name)
    if choice in ("required",) and not functions:
        raise FieldError("tool_choice", "'tool_choice' is 'required' but 'tools' is empty")
    # Unset means one call per answer, as in llama.cpp's server (OpenAI's default is
    # true): a small model given the choice tends to repeat the same call.
    parallel = (_expect_bool(parallel_raw, "parallel_tool_calls")
                if parallel_raw is not None else False)
    return ToolSpec(functions, choice, parallel)


def _response_format(value: Any) -> ResponseFormat:
    if value is None:
        return ResponseFormat()
    obj = _expect_object(value, "response_format")
    kind = obj.get("type")
    if kind in ("text", "json_object"):
        _only_keys(obj, {"type"}, "response_format")
        return ResponseFormat(kind)
    if kind != "json_schema":
        raise FieldError("response_format.type", "'response_format.type' must be 'text', "
                                                 f"'json_object' or 'json_schema', got {kind!r}")
    _only_keys(obj, {"type", "json_schema"}, "response_format")
    spec = _expect_object(obj.get("json_schema"), "response_format.json_schema")
    where = "response_format.json_schema"
    _only_keys(spec, {"name", "description", "schema", "strict"}, where)
    strict = spec.get("strict")
    schema = spec.get("schema")
    return ResponseFormat(
        "json_schema",
        schema=_expect_object(schema, f"{where}.schema") if schema is not None else {},
        name=_expect_str(spec.get("name"), f"{where}.name"),
        strict=_expect_bool(strict, f"{where}.strict") if strict is not None else False,
    )


def _logit_bias(value: Any) -> tuple[tuple[int, float], ...]:
    biases = _expect_object(value, "logit_bias")
    if len(biases) > MAX_LOGIT_BIAS:
        raise FieldError("logit_bias", f"'logit_bias' may hold at most {MAX_LOGIT_BIAS} tokens")
    pairs = []
    for key, bias in biases.items():
        # ASCII digits only: str.isdigit() takes "²" and "١", which int() refuses or
        # reads as another token; nine digits are more than any vocabulary.
        if not (key.isascii() and key.isdigit() and len(key) <= 9):
            raise FieldError(f"logit_bias.{key[:20]}", "'logit_bias' keys must be token ids")
        pairs.append((int(key), _expect_float(bias, f"logit_bias.{key}", -100.0, 100.0)))
    return tuple(pairs)


def _include_usage(body: Mapping[str, Any], stream: bool) -> bool | None:
    options = body.get("stream_options")
    if options is None:
        return None
    if not stream:
        raise FieldError("stream_options", "'stream_options' is only allowed with 'stream': true")
    _only_keys(_expect_object(options, "stream_options"), {"include_usage"}, "stream_options")
    include = options.get("include_usage")
    return _expect_bool(include, "stream_options.include_usage") if include is not None else None


def _sampling(body: Mapping[str, Any], kind: Literal["chat", "text"]) -> SamplingParams:
    """The sampling fields of ``body``, checked one by one."""
    get = body.get
    fields: dict[str, Any] = {}
    max_tokens = get("max_tokens")
    if max_tokens is None:
        max_tokens = get("max_completion_tokens")
        if max_tokens is not None:
            fields["max_tokens"] = _expect_int(max_tokens, "max_completion_tokens", 1)
    else:
        fields["max_tokens"] = _expect_int(max_tokens, "max_tokens", 1)
    floats = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0), "presence_penalty": (-2.0, 2.0),
              "frequency_penalty": (-2.0, 2.0), "min_p": (0.0, 1.0),
              "repeat_penalty": (0.0, 10.0)}
    for name, (low, high) in floats.items():
        if get(name) is not None:
            fields[name] = _expect_float(get(name), name, low, high)
    if get("repeat_penalty") is not None and fields["repeat_penalty"] == 0:
        raise FieldError("repeat_penalty", "'repeat_penalty' must be > 0 (1 disables it)")
    if get("top_k") is not None:
        fields["top_k"] = _expect_int(get("top_k"), "top_k", 0)
    if get("seed") is not None:
        fields["seed"] = _expect_int(get("seed"), "seed")
    fields["stop"] = _stop(get("stop"))
    if get("logit_bias") is not None:
        fields["logit_bias"] = _logit_bias(get("logit_bias"))
    if kind == "chat":
        if get("logprobs") is not None:
            fields["logprobs"] = _expect_bool(get("logprobs"), "logprobs")
        if get("top_logprobs") not in (None, 0):
            if not fields.get("logprobs"):
                raise FieldError("top_logprobs", "'top_logprobs' needs 'logprobs': true")
            fields["top_logprobs"] = _expect_int(get("top_logprobs"), "top_logprobs", 0,
                                                 MAX_TOP_LOGPROBS)
    elif get("logprobs") is not None:
        # Text completions: logprobs is how many alternatives to list per token.
        fields["logprobs"] = True
        fields["top_logprobs"] = _expect_int(get("logprobs"), "logprobs", 0,
                                             MAX_COMPLETION_LOGPROBS)
    if get("n") is not None:
        fields["n"] = _expect_int(get("n"), "n", 1, MAX_CHOICES)
    return SamplingParams(**fields)


_COMMON_FIELDS = frozenset({
    "model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "stop",
    "seed", "n", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
    "top_k", "min_p", "repeat_penalty",
})
CHAT_FIELDS = _COMMON_FIELDS | {"messages", "max_completion_tokens", "top_logprobs",
                                "response_format", "tools", "tool_choice",
                                "parallel_tool_calls", "modalities"}
TEXT_FIELDS = _COMMON_FIELDS | {"prompt", "echo", "suffix", "best_of"}

_REFUSED_HINTS = {
    "functions": "use 'tools' (the deprecated 'functions' is not supported)",
    "function_call": "use 'tool_choice' (the deprecated 'function_call' is not supported)",
    "audio": "audio output is not supported",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
    "reasoning_effort": "this backend's models do not reason in separate steps",
}


def _check_fields(body: Mapping[str, Any], kind: Literal["chat", "text"]) -> None:
    """Refuse what we would otherwise ignore: unknown fields, and values we cannot honour."""
    known = CHAT_FIELDS if kind == "chat" else TEXT_FIELDS
    for key, value in body.items():
        if key in known or key in HARMLESS_FIELDS or value is None:
            continue
        hint = _REFUSED_HINTS.get(key, "this server does not support it")
        raise FieldError(key, f"unsupported field '{key}': {hint}")
    if body.get("best_of") is not None and _expect_int(body["best_of"], "best_of") != 1:
        raise FieldError("best_of", "only best_of=1 is supported")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise FieldError("modalities", "'modalities' may only be [\"text\"]")


def _structure(body: Mapping[str, Any], kind: Literal["chat", "text"]) -> AnyCompletionRequest:
    _check_fields(body, kind)
    stream = _expect_bool(body["stream"], "stream") if body.get("stream") is not None else False
    model = _expect_str(body["model"], "model") if body.get("model") is not None else None
    params = _sampling(body, kind)
    include_usage = _include_usage(body, stream)
    if kind == "chat":
        tools = _tool_spec(body)
        response_format = _response_format(body.get("response_format"))
        if tools is not None and tools.active and response_format.type != "text":
            raise FieldError("response_format", "'response_format' cannot be combined with "
                                                "tools the model may call (tool_choice 'none' "
                                                "allows it)")
        return ChatCompletionRequest(_messages(body.get("messages")), model, stream, params,
                                     tools, response_format, include_usage)
    echo = _expect_bool(body["echo"], "echo") if body.get("echo") is not None else False
    suffix = _expect_str(body["suffix"], "suffix") if body.get("suffix") is not None else None
    if echo and params.logprobs:
        raise FieldError("echo", "'echo' with 'logprobs' (log probabilities of the prompt) "
                                 "is not supported")
    suffix = suffix or None  # an empty suffix is no suffix
    if echo and suffix is not None:
        raise FieldError("suffix", "'suffix' cannot be combined with 'echo'")
    return CompletionRequest(_prompt(body.get("prompt")), model, stream, params, echo, suffix,
                             include_usage)


def structure_request(body: Any, kind: Literal["chat", "text"]) -> AnyCompletionRequest:
    """Structure a decoded JSON body into a typed request, or raise BadRequest (with param)."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    required = "messages" if kind == "chat" else "prompt"
    if body.get(required) is None:
        raise BadRequest(f"missing required field '{required}'", param=required)
    try:
        return _structure(body, kind)
    except FieldError as exc:
        raise BadRequest(f"invalid request: {exc.message}", param=exc.param) from None


MAX_EMBEDDING_INPUTS = 256
"""Texts one embeddings request may hold (OpenAI allows 2048; a small VPS takes fewer)."""


@attrs.frozen
class EmbeddingRequest:
    """``POST /v1/embeddings``: texts to embed, and how to send the vectors back."""

    inputs: tuple[str, ...]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    truncate: bool = False
    """Cut each input to the model's context instead of refusing it (an extension, as in
    Hugging Face's text-embeddings-inference; the workspaces' vectors use it)."""


EMBEDDING_FIELDS = frozenset({"input", "model", "encoding_format", "dimensions", "truncate"})


def structure_embedding_request(body: Any) -> EmbeddingRequest:
    """Structure an embeddings body, or raise BadRequest naming the field."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    try:
        for key, value in body.items():
            if key not in EMBEDDING_FIELDS and key not in HARMLESS_FIELDS and value is not None:
                raise FieldError(key, f"unsupported field '{key}'")
        raw = body.get("input")
        if raw is None:
            raise FieldError("input", "missing required field 'input'")
        texts = [raw] if isinstance(raw, str) else _expect_list(raw, "input",
                                                                 MAX_EMBEDDING_INPUTS)
        if not texts:
            raise FieldError("input", "'input' must hold at least one text")
        for index, text in enumerate(texts):
            where = "input" if isinstance(raw, str) else f"input[{index}]"
            if not isinstance(text, str):
                raise FieldError(where, f"'{where}' must be a string (token arrays are not "
                                        "supported)")
            if not text:
                raise FieldError(where, f"'{where}' is empty")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise FieldError("encoding_format", "'encoding_format' must be 'float' or 'base64'")
        dimensions = body.get("dimensions")
        truncate = body.get("truncate", False)
        if not isinstance(truncate, bool):
            raise FieldError("truncate", "'truncate' must be true or false")
        return EmbeddingRequest(
            tuple(texts),
            model=_expect_str(body["model"], "model") if body.get("model") is not None else None,
            encoding_format="base64" if encoding == "base64" else "float",
            dimensions=(_expect_int(dimensions, "dimensions", 1) if dimensions is not None
                        else None),
            truncate=truncate,
        )
    except FieldError as exc:
        raise BadRequest(f"invalid request: {exc.message}", param=exc.param) from None
