"""Conversation-aware routing through the real orchestrator, over two stub backends on real
sockets: turns return to their backend, pinning, imbalance overrides, failover, metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cerebrum.config import ConfigError, load_config
from cerebrum.orchestrator.affinity import SESSION_HEADER, Balancing, prefix_keys
from cerebrum.orchestrator.config import OrchestratorConfig
from cerebrum.orchestrator.state import ORCHESTRATOR
from tests.backend.sse import read_events
from tests.orchestrator.conftest import MakeOrchestrator, MakeStub
from tests.orchestrator.stub_upstream import Behaviour, StubUpstream
from tests.orchestrator.test_cache_and_metrics import scrape

ROUTE = "/v1/chat/completions"


def turn(name: str, n: int, **extra: Any) -> dict[str, Any]:
    """Turn ``n`` of conversation ``name``, the whole history re-sent."""
    messages = []
    for i in range(1, n + 1):
        messages.append({"role": "user", "content": f"{name} question {i}"})
        if i < n:
            messages.append({"role": "assistant", "content": f"{name} answer {i}"})
    return {"model": "stub-model", "messages": messages, "stream": True, **extra}


async def send(client: TestClient, body: dict[str, Any],
               headers: dict[str, str] | None = None) -> int:
    async with client.post(ROUTE, json=body, headers=headers or {}) as response:
        if response.status == 200:
            await read_events(response)
        else:
            await response.read()
        return response.status


def served_by(stubs: dict[str, StubUpstream], name: str) -> list[str]:
    """Which stub served each request of conversation ``name``, in order."""
    found = []
    for stub_name, stub in stubs.items():
        for received in stub.received:
            if received.body["messages"][0]["content"].startswith(f"{name} "):
                found.append((len(received.body["messages"]), stub_name))
    return [stub_name for _, stub_name in sorted(found)]


async def two_stubs(make_stub: MakeStub) -> tuple[dict[str, StubUpstream], list[str]]:
    one, url1 = await make_stub(name="one")
    two, url2 = await make_stub(name="two")
    return {"one": one, "two": two}, [url1, url2]


async def test_interleaved_conversations_keep_their_backend(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator) -> None:
    stubs, urls = await two_stubs(make_stub)
    client = await make_orchestrator(*urls)
    for n in (1, 2, 3, 4):
        for name in "abcd":
            assert await send(client, turn(name, n)) == 200
    homes = {name: served_by(stubs, name) for name in "abcd"}
    assert all(len(set(h)) == 1 and len(h) == 4 for h in homes.values()), homes
    # New conversations were spread: two per backend.
    assert sorted(h[0] for h in homes.values()) == ["one", "one", "two", "two"]
    await asyncio.sleep(0.05)
    samples = await scrape(client)
    assert samples[("cerebrum_affinity_hits_total", ())] == 12
    assert samples[("cerebrum_affinity_misses_total", ())] == 4
    assert samples[("cerebrum_affinity_overrides_total", ())] == 0
    for url in urls:
        backend = url.removeprefix("http://")
        assert samples[("cerebrum_backend_in_flight", (("backend", backend),))] == 0


async def test_affinity_keys_on_the_body_as_forwarded(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator) -> None:
    stubs, urls = await two_stubs(make_stub)
    client = await make_orchestrator(*urls)
    code = "def handler(event):\n    return event['x']\n" * 400  # trimmed by the optimiser
    body = {"model": "stub-model", "stream": True, "max_tokens": 1500,
            "messages": [{"role": "user", "content": f"Explain.\n```python\n{code}```"}]}
    assert await send(client, body) == 200
    (received,) = [r for stub in stubs.values() for r in stub.received]
    assert received.body["messages"] != body["messages"]  # the optimiser changed it
    state = client.app[ORCHESTRATOR]
    sent = prefix_keys("chat", received.body)
    assert any(state.affinity.held(url, sent) == sent[-1].chars for url in urls)
    assert not any(state.affinity.held(url, prefix_keys("chat", body)) for url in urls)


async def test_least_busy_balancing_keeps_the_old_preference(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator) -> None:
    stubs, urls = await two_stubs(make_stub)
    client = await make_orchestrator(*urls, balancing="least-busy")
    for name in "abcd":
        assert await send(client, turn(name, 1)) == 200
    assert len(stubs["one"].received) == 4 and not stubs["two"].received
    samples = await scrape(client)
    assert samples[("cerebrum_affinity_misses_total", ())] == 0


async def test_pinned_session_sticks_and_is_not_forwarded(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator) -> None:
    stubs, urls = await two_stubs(make_stub)
    client = await make_orchestrator(*urls)
    pin = {SESSION_HEADER: "agent-7"}
    assert await send(client, turn("a", 1), pin) == 200
    # Unrelated prompts with the same session (a client that rewrites its history)
    # follow it; an unpinned new conversation goes to the other backend.
    assert await send(client, turn("b", 1), pin) == 200
    assert await send(client, turn("c", 2, cerebrum={"session": "agent-7"})) == 200
    assert await send(client, turn("d", 1)) == 200
    assert served_by(stubs, "a") == served_by(stubs, "b") == served_by(stubs, "c")
    assert served_by(stubs, "d") != served_by(stubs, "a")
    assert all("cerebrum" not in r.body for stub in stubs.values() for r in stub.received)


async def test_bad_session_is_a_400_naming_it(make_stub: MakeStub,
                                              make_orchestrator: MakeOrchestrator) -> None:
    stubs, urls = await two_stubs(make_stub)
    client = await make_orchestrator(*urls)
    response = await client.post(ROUTE, json=turn("a", 1), headers={SESSION_HEADER: "x" * 200})
    assert response.status == 400
    assert (await response.json())["error"]["param"] == SESSION_HEADER
    response = await client.post(ROUTE, json=turn("a", 1, cerebrum={"session": ["x"]}))
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "cerebrum.session"
    assert not stubs["one"].received and not stubs["two"].received


async def test_a_much_busier_holder_is_skipped(make_stub: MakeStub,
                                               make_orchestrator: MakeOrchestrator) -> None:
    stubs, urls = await two_stubs(make_stub)
    client = await make_orchestrator(*urls, max_concurrent=4, affinity_max_imbalance=1)
    assert await send(client, turn("a", 1)) == 200
    (home,) = served_by(stubs, "a")
    other = "two" if home == "one" else "one"
    # A long answer keeps the holder busy: one more in flight than the other backend.
    stubs[home].streaming.clear()
    stubs[home].then(Behaviour(chunks=40, delay_s=0.02))
    busy = asyncio.create_task(send(client, turn("a", 2)))
    await asyncio.wait_for(stubs[home].streaming.wait(), 5)
    # /metrics shows where the load is while the long answer streams.
    samples = await scrape(client)
    names = dict(zip(("one", "two"), (url.removeprefix("http://") for url in urls),
                     strict=True))
    assert samples[("cerebrum_backend_in_flight", (("backend", names[home]),))] == 1
    assert samples[("cerebrum_backend_in_flight", (("backend", names[other]),))] == 0
    assert await send(client, turn("a", 3)) == 200  # so the other one serves this
    assert await busy == 200
    assert served_by(stubs, "a") == [home, home, other]
    samples = await scrape(client)
    assert samples[("cerebrum_affinity_overrides_total", ())] == 1
    assert samples[("cerebrum_affinity_hits_total", ())] == 1


async def test_a_dead_holder_moves_the_conversation_without_an_error(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator) -> None:
    stubs, urls = await two_stubs(make_stub)
    client = await make_orchestrator(*urls, breaker_failure_threshold=1)
    assert await send(client, turn("a", 1)) == 200
    (home,) = served_by(stubs, "a")
    other = "two" if home == "one" else "one"
    stubs[home].then(Behaviour(status=500))  # the holder fails before the first byte
    assert await send(client, turn("a", 2)) == 200
    # Its circuit is open now: the next turns go straight to the other backend.
    assert await send(client, turn("a", 3)) == 200
    def lengths(stub: StubUpstream) -> list[int]:
        return [len(r.body["messages"]) for r in stub.received]

    # Turn 2 failed at home and went to the other; turn 3 was not even tried at home.
    assert lengths(stubs[home]) == [1, 3] and lengths(stubs[other]) == [3, 5]
    samples = await scrape(client)
    assert samples[("cerebrum_affinity_failovers_total", ())] == 1
    assert samples[("cerebrum_affinity_hits_total", ())] == 1


async def test_a_pinned_session_leaves_a_backend_whose_circuit_is_open(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator) -> None:
    stubs, urls = await two_stubs(make_stub)
    client = await make_orchestrator(*urls, breaker_failure_threshold=1,
                                     breaker_cooldown_s=60)
    pin = {SESSION_HEADER: "editor-1"}
    assert await send(client, turn("a", 1), pin) == 200
    (home,) = served_by(stubs, "a")
    other = "two" if home == "one" else "one"
    stubs[home].then(Behaviour(status=500))
    assert await send(client, turn("b", 1), pin) == 200  # fails at home, served by the other
    health = await (await client.get("/health")).json()
    assert [b["breaker"] for b in health["backends"]] == [
        "open" if name == home else "closed" for name in ("one", "two")]
    # The circuit is open: the pinned session goes straight to the other backend, and
    # stays there (pinned) with prompts that share nothing with the earlier ones.
    before = len(stubs[home].received)
    assert await send(client, turn("c", 1), pin) == 200
    assert await send(client, turn("d", 1), pin) == 200
    assert len(stubs[home].received) == before
    assert served_by(stubs, "c") == served_by(stubs, "d") == [other]
    samples = await scrape(client)
    assert samples[("cerebrum_affinity_failovers_total", ())] == 1
    assert samples[("cerebrum_affinity_hits_total", ())] == 2


def test_balancing_settings_from_the_environment() -> None:
    base = {"CEREBRUM_BACKEND_URL": "http://127.0.0.1:9000"}
    config = load_config(OrchestratorConfig, base)
    assert (config.balancing, config.affinity_max_imbalance) == (Balancing.AFFINITY, 2)
    config = load_config(OrchestratorConfig, {**base, "CEREBRUM_BALANCING": " Round-Robin",
                                              "CEREBRUM_AFFINITY_PREFIXES": "64"})
    assert (config.balancing, config.affinity_prefixes) == (Balancing.ROUND_ROBIN, 64)
    for name, value in (("CEREBRUM_BALANCING", "random"),
                        ("CEREBRUM_AFFINITY_MAX_IMBALANCE", "0"),
                        ("CEREBRUM_AFFINITY_SESSIONS", "many")):
        with pytest.raises(ConfigError, match=name):
            load_config(OrchestratorConfig, {**base, name: value})
