"""Request structuring: every field honoured (typed) or refused with a 400 that names it."""

from __future__ import annotations

from typing import Any

import pytest

from cerebrum.backend.envelope import CompletionEnvelope
from cerebrum.errors import BadRequest
from cerebrum.openai_wire import (
    CHAT_FIELDS,
    HARMLESS_FIELDS,
    TEXT_FIELDS,
    ChatCompletionRequest,
    CompletionRequest,
    NamedTool,
    structure_embedding_request,
    structure_request,
)
from tests.backend_fixtures import AUTH

MESSAGES = [{"role": "user", "content": "hi"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def chat(**extra: Any) -> ChatCompletionRequest:
    parsed = structure_request({"messages": MESSAGES, **extra}, "chat")
    assert isinstance(parsed, ChatCompletionRequest)
    return parsed


def text(**extra: Any) -> CompletionRequest:
    parsed = structure_request({"prompt": "def f():", **extra}, "text")
    assert isinstance(parsed, CompletionRequest)
    return parsed


def refused(body: dict[str, Any], kind: str = "chat") -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        structure_request(body, kind)  # type: ignore[arg-type]
    return caught.value


def test_sampling_fields_are_typed() -> None:
    params = chat(presence_penalty=0.5, frequency_penalty=-1, top_k=7, min_p=0.1,
                  repeat_penalty=1.3, logit_bias={"42": -100, "7": 5.5}, logprobs=True,
                  top_logprobs=3, seed=4, max_completion_tokens=9).params
    assert (params.presence_penalty, params.frequency_penalty) == (0.5, -1.0)
    assert (params.top_k, params.min_p, params.repeat_penalty) == (7, 0.1, 1.3)
    assert params.logit_bias == ((42, -100.0), (7, 5.5))
    assert (params.logprobs, params.top_logprobs, params.seed, params.max_tokens) == \
        (True, 3, 4, 9)


def test_text_completion_logprobs_is_a_count() -> None:
    params = text(logprobs=2).params
    assert (params.logprobs, params.top_logprobs) == (True, 2)
    assert text(echo=True, suffix="").echo and text(suffix="").suffix is None
    assert text(suffix="    return x").suffix == "    return x"


def test_tools_and_tool_choice() -> None:
    parsed = chat(tools=[WEATHER], tool_choice={"type": "function",
                                                "function": {"name": "get_weather"}},
                  parallel_tool_calls=True)
    assert parsed.tools is not None
    assert parsed.tools.choice == NamedTool("get_weather")
    assert parsed.tools.parallel and parsed.tools.active
    assert parsed.tools.functions[0].parameters["required"] == ["city"]
    assert chat(tools=[WEATHER]).tools.choice == "auto"  # type: ignore[union-attr]
    assert not chat(tools=[WEATHER]).tools.parallel  # type: ignore[union-attr]
    assert not chat(tools=[WEATHER], tool_choice="none").tools.active  # type: ignore[union-attr]


def test_tool_messages_round_trip() -> None:
    parsed = chat(messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ])
    assistant, tool = parsed.messages[1], parsed.messages[2]
    assert assistant.content == "" and assistant.tool_calls[0].function.name == "get_weather"
    assert tool.tool_call_id == "call_1" and tool.content == "sunny"


def test_response_format() -> None:
    assert chat(response_format={"type": "json_object"}).response_format.type == "json_object"
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = chat(response_format={"type": "json_schema", "json_schema": {
        "name": "thing", "schema": schema, "strict": True}}).response_format
    assert (fmt.type, fmt.schema, fmt.name, fmt.strict) == ("json_schema", schema, "thing", True)


def test_include_usage() -> None:
    assert chat(stream=True, stream_options={"include_usage": True}).include_usage is True
    assert chat(stream=True).include_usage is None


@pytest.mark.parametrize("field", sorted(HARMLESS_FIELDS))
def test_harmless_fields_are_accepted(field: str) -> None:
    chat(**{field: "x"})
    text(**{field: {"k": "v"}})


@pytest.mark.parametrize(("extra", "param"), [
    ({"mirostat": 2}, "mirostat"),
    ({"functions": []}, "functions"),
    ({"function_call": "auto"}, "function_call"),
    ({"audio": {}}, "audio"),
    ({"prediction": {}}, "prediction"),
    ({"n": 0}, "n"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"temperature": 5}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_p": -0.1}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_completion_tokens": "x"}, "max_completion_tokens"),
    ({"presence_penalty": 3}, "presence_penalty"),
    ({"frequency_penalty": float("nan")}, "frequency_penalty"),
    ({"top_k": -1}, "top_k"),
    ({"min_p": 2}, "min_p"),
    ({"repeat_penalty": 0}, "repeat_penalty"),
    ({"seed": 1.5}, "seed"),
    ({"stop": 5}, "stop"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stream": "yes"}, "stream"),
    ({"model": 7}, "model"),
    ({"logit_bias": {"abc": 1}}, "logit_bias.abc"),
    ({"logit_bias": {"5": 101}}, "logit_bias.5"),
    ({"logit_bias": []}, "logit_bias"),
    ({"logprobs": 1}, "logprobs"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"stream": True, "stream_options": {"include_usage": "y"}},
     "stream_options.include_usage"),
    ({"stream": True, "stream_options": {"continuous": True}}, "stream_options.continuous"),
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
     "response_format.json_schema.name"),
    ({"response_format": {"type": "json_object"}, "tools": [WEATHER]}, "response_format"),
    ({"tools": {}}, "tools"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
    ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
     "tools[0].function.parameters"),
    ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice.function.name"),
    ({"tools": [WEATHER], "parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ({"messages": "hi"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": "x", "audio": {}}]}, "messages[0].audio"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": []}]},
     "messages[0].tool_calls"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {}}]}]},
     "messages[0].tool_calls[0].function.name"),
])
def test_refused_chat_fields_name_their_param(extra: dict[str, Any], param: str) -> None:
    error = refused({"messages": MESSAGES, **extra})
    assert error.param == param
    assert param.split(".")[0].split("[")[0] in error.message


@pytest.mark.parametrize(("extra", "param"), [
    ({"best_of": 3}, "best_of"),
    ({"echo": "yes"}, "echo"),
    ({"suffix": 3}, "suffix"),
    ({"echo": True, "suffix": "x"}, "suffix"),
    ({"echo": True, "logprobs": 1}, "echo"),
    ({"logprobs": 6}, "logprobs"),
    ({"logprobs": True}, "logprobs"),
    ({"tools": [WEATHER]}, "tools"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"prompt": ["a", "b"]}, "prompt"),
])
def test_refused_text_fields_name_their_param(extra: dict[str, Any], param: str) -> None:
    assert refused({"prompt": "x", **extra}, "text").param == param


def test_the_field_lists_cover_what_the_structurer_reads() -> None:
    # Nothing the structurer honours is missing from the documented lists.
    assert {"tools", "tool_choice", "response_format", "top_logprobs"} <= CHAT_FIELDS
    assert {"echo", "suffix", "best_of"} <= TEXT_FIELDS
    assert not HARMLESS_FIELDS & (CHAT_FIELDS | TEXT_FIELDS)


@pytest.mark.parametrize(("body", "param"), [
    ({}, "input"),
    ({"input": ""}, "input"),
    ({"input": ["a", 5]}, "input[1]"),
    ({"input": [[1, 2]]}, "input[0]"),
    ({"input": "a", "encoding_format": "hex"}, "encoding_format"),
    ({"input": "a", "dimensions": 0}, "dimensions"),
    ({"input": "a", "truncate": "yes"}, "truncate"),
])
def test_embedding_requests(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        structure_embedding_request(body)
    assert caught.value.param == param
    parsed = structure_embedding_request({"input": ["a", "b"], "encoding_format": "base64",
                                          "user": "u"})
    assert parsed.inputs == ("a", "b") and parsed.encoding_format == "base64"
    assert not parsed.truncate
    assert structure_embedding_request({"input": "a", "truncate": True}).truncate


def test_include_usage_envelope() -> None:
    envelope = CompletionEnvelope("chat", "m", usage_null=True)
    assert envelope.chunk("x")["usage"] is None
    final = envelope.usage_chunk({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
    assert final["choices"] == [] and final["usage"]["total_tokens"] == 3
    assert "usage" not in CompletionEnvelope("chat", "m").chunk("x")


async def test_the_http_answer_carries_param(backend) -> None:
    response = await backend.post("/v1/chat/completions", headers=AUTH,
                                  json={"messages": MESSAGES, "temperature": 5})
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "temperature"
    response = await backend.post("/v1/embeddings", headers=AUTH, json={"input": ""})
    assert (await response.json())["error"]["param"] == "input"
