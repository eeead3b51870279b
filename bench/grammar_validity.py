"""Grammar-constrained output on the embedded model: validity on vs off, and what it costs.

    .venv/bin/python bench/grammar_validity.py [--prompts 50] [--speed-rounds 4] \
        [--sections json,tool,speed]

Runs the real backend app in-process (embedded SmolLM2-135M, 2 threads) and
drives it with the openai SDK over loopback, at temperature 0:

- **JSON**: ``--prompts`` varied "describe X" prompts. *On*: ``response_format:
  json_object`` (the grammar). *Off*: prompting only ("Answer with only a JSON
  object", no grammar). Valid = the content parses as a JSON object (a
  ```json fence is forgiven when off).
- **Tool calls**: the same number of varied requests over three tools. *On*:
  ``tools`` with ``tool_choice: required``. *Off*: the same tool instructions
  in the prompt (the backend's generic format, ``cerebrum.backend.tools``) but
  no ``tools`` field, so nothing is constrained; the text is parsed with the
  backend's own parser. Valid = one call of an offered function whose
  arguments validate against its JSON Schema.
- **Speed**: one prompt, ``--speed-rounds`` times with the grammar and without,
  alternated, 128 tokens each (``ignore`` of EOS is not available, so only
  answers that used the whole budget count); decode tokens/s, median, and the
  ratio grammar ÷ unconstrained.

The resource guard is given an idle reading so a busy shared machine does not
refuse requests; on such a machine the speed figures are noisy: compare the
ratio, not the absolute rates. Prints every figure; takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import openai
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cerebrum.backend import tools as tool_format
from cerebrum.backend.app import create_backend_app
from cerebrum.backend.config import BackendConfig
from cerebrum.openai_wire import structure_request

KEY = "bench-grammar-key-0123"
MODEL = "smollm2-135m"
SUBJECTS = [
    "a cat", "a city", "a book", "a car", "a planet", "a recipe", "a user account", "a movie",
    "a song", "a country", "a laptop", "a tree", "a football team", "a programming language",
    "a bank transfer", "an airport", "a hotel room", "a dog", "a mountain", "a restaurant order",
    "a museum", "a train ride", "a bicycle", "a chess game", "a coffee order", "a river",
    "a smartphone", "a birthday party", "a job offer", "a garden", "a concert", "a hospital",
    "a school class", "a flight booking", "a pizza", "a volcano", "a spaceship", "a library",
    "a customer review", "a weather report", "a marathon", "a painting", "a bakery",
    "a web server", "a database table", "a git commit", "a python function", "a shopping cart",
    "a calendar event", "a video game",
]
TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "The current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "add", "description": "Add two numbers",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"},
                                                        "b": {"type": "number"}},
                       "required": ["a", "b"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "search_files", "description": "Search the project's files for a text",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string"}, "max_results": {"type": "integer"}},
            "required": ["query"], "additionalProperties": False}}},
]
TOOL_ASKS = [
    "What is the weather in {}?", "Is it raining in {} right now?", "How warm is it in {}?",
    "What is {} plus 17?", "Add 3.5 and {}.", "Find the files that mention {}.",
    "Search the code for {}.", "Where is {} defined in the project?",
]
TOOL_FILLERS = ["Paris", "Tokyo", "42", "Lima", "parse_config", "Oslo", "1000", "TODO",
                "Nairobi", "7", "main()", "Berlin", "12.25"]


class IdleReader:
    """Resource readings that never trip the guard (the bench measures the model)."""

    def cpu_percent(self) -> float:
        return 0.0

    def available_mb(self) -> float:
        return 64_000.0


def json_valid(text: str, forgive_fence: bool) -> bool:
    candidate = text.strip()
    if forgive_fence and candidate.startswith("```"):
        candidate = candidate.strip("`").removeprefix("json").strip()
    try:
        return isinstance(json.loads(candidate), dict)
    except ValueError:
        return False


def call_valid(name: str, arguments: str) -> bool:
    schema = next((t["function"]["parameters"] for t in TOOLS
                   if t["function"]["name"] == name), None)
    if schema is None:
        return False
    try:
        jsonschema.validate(json.loads(arguments), schema)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


async def json_case(sdk: openai.AsyncOpenAI, subject: str, grammar: bool) -> bool:
    if grammar:
        answer = await sdk.chat.completions.create(
            model=MODEL, temperature=0, max_tokens=300, response_format={"type": "json_object"},
            messages=[{"role": "user", "content": f"Describe {subject} as JSON."}])
    else:
        answer = await sdk.chat.completions.create(
            model=MODEL, temperature=0, max_tokens=300,
            messages=[{"role": "user", "content": f"Describe {subject} as JSON. Answer with "
                                                  "only a JSON object."}])
    return json_valid(answer.choices[0].message.content or "", forgive_fence=not grammar)


async def tool_case(sdk: openai.AsyncOpenAI, ask: str, grammar: bool) -> bool:
    messages = [{"role": "user", "content": ask}]
    if grammar:
        answer = await sdk.chat.completions.create(
            model=MODEL, temperature=0, max_tokens=60, messages=messages,  # type: ignore
            tools=TOOLS, tool_choice="required")
        calls = answer.choices[0].message.tool_calls or []
        return len(calls) == 1 and call_valid(calls[0].function.name, calls[0].function.arguments)
    parsed = structure_request({"messages": messages, "tools": TOOLS,
                                "tool_choice": "required"}, "chat")
    rendered = tool_format.render_chat(parsed.messages, parsed.tools,  # type: ignore[union-attr]
                                       native=False)
    answer = await sdk.chat.completions.create(model=MODEL, temperature=0, max_tokens=60,
                                               messages=rendered.messages)  # type: ignore
    _, calls = tool_format.parse_output(answer.choices[0].message.content or "",
                                        parsed.tools)  # type: ignore[union-attr, arg-type]
    return len(calls) == 1 and call_valid(calls[0].name, calls[0].arguments)


async def rate(cases: list[Any]) -> tuple[int, int]:
    results = await asyncio.gather(*cases)
    return sum(results), len(results)


async def speed(sdk: openai.AsyncOpenAI, rounds: int) -> tuple[list[float], list[float]]:
    """Decode tokens/s with and without the JSON grammar, alternated, one at a time."""
    rates: dict[bool, list[float]] = {True: [], False: []}
    messages = [{"role": "user", "content": "Describe a city, its streets and its people, as "
                                            "JSON with many fields."}]
    for index in range(rounds * 2):
        grammar = index % 2 == 0
        extra: dict[str, Any] = {"response_format": {"type": "json_object"}} if grammar else {}
        first: float | None = None
        tokens = 0
        async for chunk in await sdk.chat.completions.create(
                model=MODEL, temperature=0, max_tokens=128, messages=messages,  # type: ignore
                stream=True, stream_options={"include_usage": True}, **extra):
            if chunk.choices and chunk.choices[0].delta.content and first is None:
                first = time.perf_counter()
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        if first is not None and tokens > 1:
            rates[grammar].append((tokens - 1) / (time.perf_counter() - first))
    return rates[True], rates[False]


async def main(args: argparse.Namespace) -> None:
    config = BackendConfig(api_key=KEY, threads=2, max_queue=256)
    server = TestServer(create_backend_app(config, reader=IdleReader()))
    await server.start_server()
    sdk = openai.AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key=KEY, max_retries=0,
                             timeout=600)
    try:
        subjects = (SUBJECTS * (args.prompts // len(SUBJECTS) + 1))[: args.prompts]
        asks = [TOOL_ASKS[i % len(TOOL_ASKS)].format(TOOL_FILLERS[i % len(TOOL_FILLERS)])
                for i in range(args.prompts)]
        started = time.perf_counter()
        print(f"{args.prompts} prompts each, temperature 0, embedded {MODEL}")
        sections = [(label, case, items) for label, case, items in (
            ("JSON object", json_case, subjects), ("tool call", tool_case, asks))
            if label.split()[0].lower() in args.sections]
        for label, case, items in sections:
            for grammar in (True, False):
                valid, total = await rate([case(sdk, item, grammar) for item in items])
                print(f"  {label:11s} grammar {'on ' if grammar else 'off'}: {valid}/{total} "
                      f"valid ({100 * valid / total:.0f}%)")
        print(f"  (validity runs took {time.perf_counter() - started:.0f} s)")
        with_grammar, without = (await speed(sdk, args.speed_rounds) if "speed" in args.sections
                                 else ([], []))
        if with_grammar and without:
            on, off = statistics.median(with_grammar), statistics.median(without)
            print(f"decode speed, median of {len(with_grammar)}/{len(without)} streamed answers: "
                  f"grammar {on:.1f} tok/s, unconstrained {off:.1f} tok/s; "
                  f"grammar / unconstrained = {on / off:.3f} (cost {100 * (1 - on / off):.1f}%)")
    finally:
        await sdk.close()
        await server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--speed-rounds", type=int, default=4)
    parser.add_argument("--sections", default="json,tool,speed",
                        help="comma-separated: json, tool, speed")
    asyncio.run(main(parser.parse_args()))
