"""The orchestrator and the new fields: cache keys cover them, optimisation leaves tools alone."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cerebrum.openai_wire import HARMLESS_FIELDS, structure_request
from cerebrum.orchestrator.preparation import Catalogue, prepare_request
from cerebrum.orchestrator.response_cache import cache_key

BASE = {"messages": [{"role": "user", "content": "hi"}], "temperature": 0}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}}}}}
OUTPUT_CHANGING: list[dict[str, Any]] = [
    {"tools": [WEATHER]},
    {"tools": [WEATHER], "tool_choice": "required"},
    {"tools": [WEATHER], "parallel_tool_calls": True},
    {"response_format": {"type": "json_object"}},
    {"logprobs": True},
    {"logprobs": True, "top_logprobs": 2},
    {"presence_penalty": 0.5},
    {"frequency_penalty": 0.5},
    {"logit_bias": {"5": -100}},
    {"top_k": 3},
    {"min_p": 0.2},
    {"repeat_penalty": 1.2},
    {"stream": True, "stream_options": {"include_usage": True}},
    {"seed": 7},
    {"max_tokens": 3},
    {"stop": ["x"]},
]


@pytest.mark.parametrize("extra", OUTPUT_CHANGING)
def test_every_output_changing_field_changes_the_cache_key(extra: dict[str, Any]) -> None:
    assert cache_key("chat", "m", {**BASE, **extra}) != cache_key("chat", "m", BASE)


@pytest.mark.parametrize("extra", [{"echo": True}, {"suffix": "x"}, {"logprobs": 2}])
def test_text_completion_fields_change_the_key(extra: dict[str, Any]) -> None:
    body = {"prompt": "def f():", "temperature": 0}
    assert cache_key("text", "m", {**body, **extra}) != cache_key("text", "m", body)


@pytest.mark.parametrize("field", sorted(HARMLESS_FIELDS))
def test_harmless_fields_and_nulls_do_not(field: str) -> None:
    assert cache_key("chat", "m", {**BASE, field: {"a": 1}}) == cache_key("chat", "m", BASE)
    assert cache_key("chat", "m", {**BASE, "tools": None}) == cache_key("chat", "m", BASE)


CODE = ("def fetch(url):\n    import requests\n    response = requests.get(url)\n"
        "    return response.json()\n\n\n") * 120


def test_optimisation_never_touches_tools_or_tool_messages() -> None:
    body = {
        "model": "small",
        "messages": [
            {"role": "user", "content": CODE + "Why is fetch slow?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "x"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": CODE},
            {"role": "user", "content": "Now make it async."},
        ],
        "tools": [WEATHER], "tool_choice": "auto",
    }
    original = copy.deepcopy(body)
    catalogue = Catalogue({"small": 2048}, default_model="small")
    prepared = prepare_request(body, structure_request(body, "chat"), optimize=True,
                               catalogue=catalogue)
    assert prepared.optimized  # the code message was too big and was cut
    sent = prepared.body
    assert sent["tools"] == original["tools"] and sent["tool_choice"] == "auto"
    assert sent["messages"][1:] == original["messages"][1:]
    assert len(sent["messages"][0]["content"]) < len(original["messages"][0]["content"])
    assert body == original  # the client's body is not mutated


def test_tool_definitions_take_room_from_the_optimiser_budget() -> None:
    big_tools = [{"type": "function", "function": {
        "name": f"tool_{i}", "description": "word " * 60,
        "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}
        for i in range(12)]
    catalogue = Catalogue({"small": 2048}, default_model="small")
    # Distinct functions (repeats would be deduplicated away), about 1500 tokens.
    text = "".join(f"def step_{i}(value):\n    total_{i} = value * {i} + {i * 7}\n"
                   f"    return total_{i} - {i}\n\n\n" for i in range(90)) + "Explain."

    def after(extra: dict[str, Any]) -> int:
        body = {"model": "small", "messages": [{"role": "user", "content": text}], **extra}
        return prepare_request(body, structure_request(body, "chat"), optimize=True,
                               catalogue=catalogue).prompt_chars_after

    assert after({"tools": big_tools}) < after({})
