"""Tool calls without a model: prompt rendering, the call grammar, parsing whole and streamed."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from cerebrum.backend import tools
from cerebrum.backend.output import AnswerShaper
from cerebrum.openai_wire import ChatCompletionRequest, ToolSpec, structure_request
from tests.backend.vocab import compiles, vocab  # noqa: F401 (a fixture)

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
ADD = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}
HISTORY = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
]


def request(**extra: Any) -> ChatCompletionRequest:
    body = {"messages": HISTORY, "tools": [WEATHER, ADD], **extra}
    parsed = structure_request(body, "chat")
    assert isinstance(parsed, ChatCompletionRequest)
    return parsed


def spec(**extra: Any) -> ToolSpec:
    parsed = request(**extra).tools
    assert parsed is not None
    return parsed


def ids() -> Any:
    counter = itertools.count()
    return lambda: f"call_{next(counter)}"


def test_generic_rendering_puts_tools_in_the_system_message_and_history_back() -> None:
    parsed = request()
    rendered = tools.render_chat(parsed.messages, parsed.tools, native=False)
    assert rendered.tools is None
    system, _, assistant, tool = rendered.messages
    assert system["role"] == "system" and system["content"].startswith("Be brief.")
    assert '"name": "get_weather"' in system["content"] and "<tool_call>" in system["content"]
    assert assistant["content"] == ('<tool_call>\n{"name": "get_weather", "arguments": '
                                    '{"city": "Oslo"}}\n</tool_call>')
    assert tool == {"role": "user", "content": "<tool_response>\nsunny, 21 C\n</tool_response>"}


def test_generic_rendering_adds_a_system_message_when_there_is_none() -> None:
    parsed = structure_request({"messages": [{"role": "user", "content": "hi"}],
                                "tools": [WEATHER], "tool_choice": "required"}, "chat")
    assert isinstance(parsed, ChatCompletionRequest)
    rendered = tools.render_chat(parsed.messages, parsed.tools, native=False).messages
    assert [m["role"] for m in rendered] == ["system", "user"]
    assert "must call one" in rendered[0]["content"]


def test_tool_choice_none_leaves_the_tools_out() -> None:
    parsed = request(tool_choice="none")
    rendered = tools.render_chat(parsed.messages, parsed.tools, native=False)
    assert rendered.messages[0] == {"role": "system", "content": "Be brief."}


def test_native_rendering_hands_the_template_tools_and_decoded_arguments() -> None:
    parsed = request()
    rendered = tools.render_chat(parsed.messages, parsed.tools, native=True)
    assert [t["function"]["name"] for t in rendered.tools or []] == ["get_weather", "add"]
    call = rendered.messages[2]["tool_calls"][0]
    assert call["function"]["arguments"] == {"city": "Oslo"} and call["id"] == "call_1"
    assert rendered.messages[3] == {"role": "tool", "content": "sunny, 21 C",
                                    "tool_call_id": "call_1"}


def test_native_detection() -> None:
    assert tools.template_has_native_tools("{% if tools %}<tool_call>{% endif %}")
    assert not tools.template_has_native_tools("{{ message['content'] }}")
    assert not tools.template_has_native_tools(None)


@pytest.mark.parametrize("extra", [
    {"tool_choice": "required"}, {"tool_choice": "auto"}, {"parallel_tool_calls": True},
    {"tool_choice": {"type": "function", "function": {"name": "add"}}},
])
def test_the_call_grammar_compiles(vocab, extra: dict[str, Any]) -> None:  # noqa: F811
    compiled = tools.tool_grammar(spec(**extra))
    assert compiles(vocab, compiled)
    assert compiled.lazy == (extra.get("tool_choice", "auto") == "auto")
    named = extra.get("tool_choice")
    if isinstance(named, dict):
        assert '"get_weather"' not in compiled.gbnf and '\\"add\\"' in compiled.gbnf


CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def test_parse_a_whole_answer() -> None:
    content, calls = tools.parse_output("Let me check. " + CALL, spec(), ids())
    assert content == "Let me check."
    assert [c.wire() for c in calls] == [{"id": "call_0", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city": "Paris"}'}}]


def test_parse_parallel_calls_and_text_only() -> None:
    two = CALL + "\n" + CALL.replace("get_weather", "add").replace('"city": "Paris"', '"a": 1')
    _, calls = tools.parse_output(two, spec(), ids())
    assert [(c.index, c.name) for c in calls] == [(0, "get_weather"), (1, "add")]
    assert tools.parse_output("no calls <tool here", spec(), ids()) == ("no calls <tool here", [])


@pytest.mark.parametrize("bad", [
    '<tool_call>{"name": "unknown", "arguments": {}}</tool_call>',
    "<tool_call>not json</tool_call>",
    '<tool_call>{"name": "add", "arguments": [1]}</tool_call>',
])
def test_a_block_that_is_not_a_call_stays_text(bad: str) -> None:
    assert tools.parse_output(bad, spec(), ids()) == (bad, [])


def test_an_unfinished_call_is_given_back_as_text() -> None:
    cut = CALL[:30]
    assert tools.parse_output(cut, spec(), ids()) == (cut, [])


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_streaming_in_any_piece_size_gives_the_same_parts(size: int) -> None:
    text = "Sure. " + CALL + "\n" + CALL
    stream = tools.ToolCallStream(spec(), ids())
    parts: list[Any] = []
    for start in range(0, len(text), size):
        parts += stream.feed(text[start:start + size])
    parts += stream.finish()
    assert "".join(p for p in parts if isinstance(p, str)) == "Sure. "
    assert [p.name for p in parts if isinstance(p, tools.ParsedCall)] == ["get_weather"] * 2


def test_streamed_deltas_reassemble_to_the_call() -> None:
    (call,) = tools.parse_output(CALL, spec(), ids())[1]
    first, second = call.deltas()
    assert first[0]["id"] == "call_0" and first[0]["function"] == {"name": "get_weather",
                                                                   "arguments": ""}
    assert json.loads(first[0]["function"]["arguments"] + second[0]["function"]["arguments"]) \
        == {"city": "Paris"}


def test_shaper_reports_tool_calls_and_only_content_logprobs() -> None:
    shaper = AnswerShaper("chat", tools=spec(), logprobs=True)

    class Token:
        def __init__(self, text: str) -> None:
            self.text_bytes, self.logprob, self.top_bytes = text.encode(), -0.5, [
                (text.encode(), -0.5)]

    parts = shaper.piece("Hi ", [Token("Hi"), Token(" ")]) + shaper.piece(CALL, [Token("<")])
    parts += shaper.end()
    content = parts[0]
    assert content.text == "Hi " and [e["token"] for e in content.logprobs["content"]] == \
        ["Hi", " "]
    assert isinstance(parts[1], tools.ParsedCall)
    assert shaper.finish_reason("stop") == "tool_calls"
    assert shaper.finish_reason("length") == "length"
    assert AnswerShaper("chat").finish_reason("stop") == "stop"


def test_the_lazy_grammar_is_free_until_the_call_opens_then_enforces_it(
        vocab: Any) -> None:  # noqa: F811
    import ctypes
    import math

    import llama_cpp

    from cerebrum.backend.sampling import _grammar_sampler
    from cerebrum.openai_wire import SamplingParams

    sampler = _grammar_sampler(SamplingParams(grammar=tools.tool_grammar(spec())), vocab)

    def tokens(text: str) -> list[int]:
        out = (llama_cpp.llama_token * 64)()
        n = llama_cpp.llama_tokenize(vocab, text.encode(), len(text.encode()), out, 64, False,
                                     False)
        return list(out[:n])

    def allowed(text: str) -> bool:
        (token,) = tokens(text)
        single = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 1.0, 0.0))
        array = llama_cpp.llama_token_data_array(data=single, size=1, selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
        return math.isfinite(single[0].logit)

    try:
        assert allowed(" banana")  # free text before the trigger
        for token in tokens('Let me look. <tool_call>\n{"name": "'):
            llama_cpp.llama_sampler_accept(sampler, token)
        assert not allowed(" banana")  # inside the call only a tool's name may follow
        assert allowed("get")
    finally:
        llama_cpp.llama_sampler_free(sampler)
