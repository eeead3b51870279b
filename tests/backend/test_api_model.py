"""The rest of the OpenAI API against the real embedded model, through the openai SDK.

JSON mode and JSON Schema output, a full tool loop (streamed calls reassembled
by the SDK), a named tool_choice, logprobs, penalties and logit_bias, echo and
suffix, include_usage, embeddings, model retrieval; and the same tool loop
and JSON mode through the orchestrator in front of the backend.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import openai
import pytest
from aiohttp.test_utils import TestClient

from cerebrum.backend.registry import embedded_model_path
from cerebrum.orchestrator.app import create_orchestrator_app
from cerebrum.orchestrator.config import OrchestratorConfig
from tests.backend_fixtures import API_KEY, AUTH

pytestmark = pytest.mark.model

MODEL = "smollm2-135m"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False}}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two numbers",
    "parameters": {"type": "object", "properties": {"a": {"type": "number"},
                                                    "b": {"type": "number"}},
                   "required": ["a", "b"]}}}
TOPICS = ["a cat", "a city", "a book", "a car", "a planet", "a recipe", "a user account",
          "a movie", "a song", "a country", "a laptop", "a tree", "a football team",
          "a programming language", "a bank transfer", "an airport", "a hotel room", "a dog",
          "a mountain", "a restaurant order"]


def sdk_for(client: TestClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key=API_KEY,
                              max_retries=0, timeout=600)


@pytest.fixture
async def sdk(backend: TestClient) -> AsyncIterator[openai.AsyncOpenAI]:
    client = sdk_for(backend)
    yield client
    await client.close()


@pytest.fixture
async def via_orchestrator(backend: TestClient,
                           aiohttp_client: Any) -> AsyncIterator[openai.AsyncOpenAI]:
    """The real orchestrator (cache off, so every request reaches the model) in front."""
    config = OrchestratorConfig(backend_url=(str(backend.make_url("")).rstrip("/"),),
                                api_key=API_KEY, read_timeout_s=600.0, cache_max_bytes=0)
    orchestrator = await aiohttp_client(create_orchestrator_app(config))
    client = openai.AsyncOpenAI(base_url=str(orchestrator.make_url("/v1")), api_key="unused",
                                max_retries=0, timeout=600)
    yield client
    await client.close()


async def json_answer(sdk: openai.AsyncOpenAI, topic: str) -> str:
    answer = await sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": f"Describe {topic} as JSON."}],
        response_format={"type": "json_object"}, max_tokens=300, temperature=0)
    return answer.choices[0].message.content or ""


async def test_json_mode_parses_for_20_varied_prompts(sdk) -> None:
    answers = await asyncio.gather(*(json_answer(sdk, topic) for topic in TOPICS))
    objects = [json.loads(answer) for answer in answers]  # raises on the first that fails
    assert all(isinstance(obj, dict) for obj in objects)


async def test_json_schema_output_validates(sdk) -> None:
    schema = {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer"},
        "languages": {"type": "array", "items": {"enum": ["python", "c", "rust"]},
                      "maxItems": 3}},
        "required": ["name", "age", "languages"], "additionalProperties": False}
    for stream in (False, True):
        kwargs: dict[str, Any] = {
            "model": MODEL, "max_tokens": 120, "temperature": 0.7, "seed": 3,
            "messages": [{"role": "user", "content": "Invent a programmer."}],
            "response_format": {"type": "json_schema", "json_schema": {
                "name": "programmer", "schema": schema, "strict": True}}}
        if stream:
            text = ""
            async for chunk in await sdk.chat.completions.create(stream=True, **kwargs):
                text += chunk.choices[0].delta.content or "" if chunk.choices else ""
        else:
            text = (await sdk.chat.completions.create(**kwargs)).choices[0].message.content
        jsonschema.validate(json.loads(text or ""), schema)


async def test_a_schema_the_grammar_cannot_enforce_is_a_400(sdk) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_schema", "json_schema": {
                "name": "n", "schema": {"type": "integer", "minimum": 0}}})
    assert caught.value.body["param"] == "response_format.json_schema.schema"
    assert "minimum" in caught.value.body["message"]


async def tool_loop(sdk: openai.AsyncOpenAI) -> tuple[Any, Any]:
    """Call (streamed, reassembled by the SDK) → tool result → final answer."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "What is the weather in Paris?"}]
    async with sdk.chat.completions.stream(
            model=MODEL, messages=messages, tools=[WEATHER, ADD],  # type: ignore[arg-type]
            tool_choice="required", max_tokens=60, temperature=0) as stream:
        async for _ in stream:
            pass
        first = await stream.get_final_completion()
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id,
         "content": json.dumps({"city": arguments["city"], "weather": "sunny", "celsius": 24})},
    ]
    final = await sdk.chat.completions.create(model=MODEL, messages=messages,  # type: ignore
                                              tools=[WEATHER, ADD], max_tokens=40,
                                              temperature=0)
    return first, final


async def test_a_two_step_tool_loop(sdk) -> None:
    _, final = await tool_loop(sdk)
    answer = final.choices[0]
    assert answer.finish_reason in ("stop", "length")
    assert answer.message.content and not answer.message.tool_calls


async def test_named_tool_choice_forces_that_function(sdk) -> None:
    answer = await sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER, ADD], tool_choice={"type": "function", "function": {"name": "add"}},
        max_tokens=60, temperature=0)
    (call,) = answer.choices[0].message.tool_calls or []
    assert call.function.name == "add"
    jsonschema.validate(json.loads(call.function.arguments), ADD["function"]["parameters"])


async def test_tool_choice_none_answers_in_text(sdk) -> None:
    answer = await sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER], tool_choice="none", max_tokens=12, temperature=0)
    assert answer.choices[0].message.content and not answer.choices[0].message.tool_calls


def check_top(entry: Any) -> None:
    """top_logprobs sorted, and at temperature 0 the chosen token is the first of them."""
    tops = [top.logprob for top in entry.top_logprobs]
    assert tops == sorted(tops, reverse=True) and len(tops) == 3
    assert entry.top_logprobs[0].token == entry.token
    assert math.isclose(entry.top_logprobs[0].logprob, entry.logprob)
    assert entry.logprob <= 0 and bytes(entry.bytes).decode("utf-8", "replace") == entry.token


async def test_chat_logprobs_whole_and_streamed_agree(sdk) -> None:
    kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 8, "temperature": 0,
                              "messages": [{"role": "user", "content": "Name a color."}],
                              "logprobs": True, "top_logprobs": 3}
    whole = await sdk.chat.completions.create(**kwargs)
    entries = whole.choices[0].logprobs.content  # type: ignore[union-attr]
    assert "".join(e.token for e in entries) == whole.choices[0].message.content
    assert len(entries) == whole.usage.completion_tokens  # type: ignore[union-attr]
    for entry in entries:
        check_top(entry)
    streamed = []
    async for chunk in await sdk.chat.completions.create(stream=True, **kwargs):
        if chunk.choices and chunk.choices[0].logprobs:
            streamed += chunk.choices[0].logprobs.content or []
    assert [(e.token, round(e.logprob, 4)) for e in streamed] == \
        [(e.token, round(e.logprob, 4)) for e in entries]


async def test_text_completion_logprobs_and_echo(sdk) -> None:
    answer = await sdk.completions.create(model=MODEL, prompt="def add(a, b):", max_tokens=6,
                                          temperature=0, logprobs=2)
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None and "".join(logprobs.tokens or []) == answer.choices[0].text
    assert all(len(top) <= 2 and max(top.values()) == lp for top, lp
               in zip(logprobs.top_logprobs or [], logprobs.token_logprobs or []))
    assert logprobs.text_offset == sorted(logprobs.text_offset or [])
    echoed = await sdk.completions.create(model=MODEL, prompt="def add(a, b):", max_tokens=6,
                                          temperature=0, echo=True)
    assert echoed.choices[0].text == "def add(a, b):" + answer.choices[0].text


async def test_suffix_needs_fim_tokens(sdk) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.completions.create(model=MODEL, prompt="def f(", suffix="    return 1",
                                     max_tokens=4)
    assert caught.value.body["param"] == "suffix"


async def test_logit_bias_and_penalties_change_the_answer(sdk) -> None:
    kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 16, "temperature": 0,
                              "messages": [{"role": "user", "content": "Count: one one one"}]}
    plain = await sdk.chat.completions.create(logprobs=True, **kwargs)
    first = plain.choices[0].logprobs.content[0]  # type: ignore[union-attr]
    token_id = _token_id(bytes(first.bytes))
    banned = await sdk.chat.completions.create(logit_bias={str(token_id): -100}, logprobs=True,
                                               **kwargs)
    assert banned.choices[0].logprobs.content[0].token != first.token  # type: ignore
    penalised = await sdk.chat.completions.create(
        frequency_penalty=2.0, presence_penalty=2.0, extra_body={"repeat_penalty": 1.5},
        **kwargs)
    assert penalised.choices[0].message.content != plain.choices[0].message.content
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(logit_bias={"99999999": 1}, **kwargs)
    assert caught.value.body["param"] == "logit_bias.99999999"


def _token_id(data: bytes) -> int:
    import llama_cpp

    llama = llama_cpp.Llama(str(embedded_model_path()), vocab_only=True, verbose=False)
    try:
        (token,) = llama.tokenize(data, add_bos=False, special=True)
        return int(token)
    finally:
        llama.close()


async def test_include_usage_sends_a_final_chunk_without_choices(backend) -> None:
    response = await backend.post("/v1/chat/completions", headers=AUTH, json={
        "model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
        "temperature": 0, "stream": True, "stream_options": {"include_usage": True}})
    events = [json.loads(line[6:]) for line in (await response.text()).splitlines()
              if line.startswith("data: {")]
    *chunks, last = events
    assert last["choices"] == [] and last["usage"]["completion_tokens"] > 0
    assert all(chunk["usage"] is None for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


async def test_embeddings_have_the_model_dimension_and_are_deterministic(sdk) -> None:
    import llama_cpp

    llama = llama_cpp.Llama(str(embedded_model_path()), vocab_only=True, verbose=False)
    dimension = int(llama.metadata["llama.embedding_length"])
    llama.close()
    texts = ["def add(a, b): return a + b", "def add(a, b): return a + b", "The sky is blue."]
    result = await sdk.embeddings.create(model=MODEL, input=texts)  # base64 on the wire
    vectors = [item.embedding for item in result.data]
    assert [item.index for item in result.data] == [0, 1, 2]
    assert all(len(v) == dimension for v in vectors)
    assert vectors[0] == vectors[1] and vectors[0] != vectors[2]
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-4)
    again = await sdk.embeddings.create(model=MODEL, input=texts[0], encoding_format="float")
    assert again.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)
    assert result.usage.prompt_tokens > again.usage.prompt_tokens > 0
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.embeddings.create(model=MODEL, input="x", dimensions=8)
    assert caught.value.body["param"] == "dimensions"


async def test_an_embedding_input_over_the_context_is_cut_when_truncate_is_asked(
        backend) -> None:
    long = "def f(x):\n    return x\n" * 700  # over the embedded model's 2048 tokens
    refused = await backend.post("/v1/embeddings", headers=AUTH,
                                 json={"model": MODEL, "input": long})
    assert refused.status == 400 and (await refused.json())["error"]["param"] == "input"
    cut = await backend.post("/v1/embeddings", headers=AUTH,
                             json={"model": MODEL, "input": [long, "short"], "truncate": True})
    assert cut.status == 200, await cut.text()
    answer = await cut.json()
    vectors = [item["embedding"] for item in answer["data"]]
    assert len(vectors) == 2 and math.isclose(sum(x * x for x in vectors[0]), 1.0,
                                              rel_tol=1e-4)
    # The long one counts its first 2048 tokens (the context), the short one its own few.
    assert 2048 < answer["usage"]["prompt_tokens"] <= 2048 + 8


async def test_retrieve_a_model(sdk) -> None:
    model = await sdk.models.retrieve(MODEL)
    assert model.id == MODEL
    with pytest.raises(openai.NotFoundError):
        await sdk.models.retrieve("nope")


async def test_through_the_orchestrator_tools_and_json_mode_pass_unchanged(
        via_orchestrator, sdk) -> None:
    first, final = await tool_loop(via_orchestrator)
    assert first.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert final.choices[0].message.content
    direct = await json_answer(sdk, TOPICS[0])
    assert await json_answer(via_orchestrator, TOPICS[0]) == direct
    with pytest.raises(openai.BadRequestError) as caught:
        await via_orchestrator.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}],
            extra_body={"mirostat": 2})
    assert caught.value.body["param"] == "mirostat"
    relayed = await via_orchestrator.embeddings.create(model=MODEL, input="same text")
    own = await sdk.embeddings.create(model=MODEL, input="same text")
    assert relayed.data[0].embedding == own.data[0].embedding
    assert (await via_orchestrator.models.retrieve(MODEL)).id == MODEL
