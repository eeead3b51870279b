"""The response cache through the real orchestrator, and its /metrics (parsed, not grepped)."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.backend.sse import read_events
from tests.orchestrator.conftest import MakeOrchestrator, MakeStub, chat
from tests.orchestrator.stub_upstream import Behaviour

DETERMINISTIC: dict[str, Any] = {"temperature": 0, "max_tokens": 16}


async def _stream(client, body, headers=None) -> tuple[str | None, bytes]:
    async with client.post("/v1/chat/completions", json=body, headers=headers or {}) as response:
        assert response.status == 200
        return response.headers.get("X-Cerebrum-Cache"), await response.read()


async def test_hit_replays_the_stream_byte_for_byte(make_stub: MakeStub,
                                                    make_orchestrator: MakeOrchestrator) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(url)
    body = chat(stream=True, **DETERMINISTIC)
    first_verdict, first = await _stream(client, body)
    second_verdict, second = await _stream(client, body)
    assert (first_verdict, second_verdict) == ("miss", "hit")
    assert second == first
    assert first.rstrip().endswith(b"data: [DONE]") and b'"usage"' in first
    assert len(stub.received) == 1


async def test_whole_answers_hit_separately_from_streams(make_stub: MakeStub,
                                                         make_orchestrator: MakeOrchestrator
                                                         ) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(url)
    body = chat(**DETERMINISTIC)
    first = await client.post("/v1/chat/completions", json=body)
    second = await client.post("/v1/chat/completions", json=body)
    assert second.headers["X-Cerebrum-Cache"] == "hit"
    assert await second.json() == await first.json()
    await _stream(client, {**body, "stream": True})  # another shape: a miss
    assert len(stub.received) == 2


async def test_sampled_requests_are_never_cached(make_stub: MakeStub,
                                                 make_orchestrator: MakeOrchestrator) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(url)
    for _ in range(2):
        verdict, _ = await _stream(client, chat(stream=True, temperature=0.7))
        assert verdict is None
    assert len(stub.received) == 2


async def test_no_cache_bypasses_and_no_store_keeps_nothing(make_stub: MakeStub,
                                                            make_orchestrator: MakeOrchestrator
                                                            ) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(url)
    body = chat(stream=True, **DETERMINISTIC)
    assert (await _stream(client, body, {"Cache-Control": "no-store"}))[0] == "bypass"
    assert (await _stream(client, body))[0] == "miss"  # no-store kept nothing
    assert (await _stream(client, body, {"Cache-Control": "no-cache"}))[0] == "bypass"
    assert (await _stream(client, body))[0] == "hit"
    assert len(stub.received) == 3
    # A browser's reload; max-age=60 is a plain lookup.
    assert (await _stream(client, body, {"Cache-Control": "private, max-age=0"}))[0] == "bypass"
    assert (await _stream(client, body, {"Cache-Control": "max-age=60"}))[0] == "hit"
    assert len(stub.received) == 4


async def test_cut_streams_are_not_stored(make_stub: MakeStub,
                                          make_orchestrator: MakeOrchestrator) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(url)
    body = chat(stream=True, **DETERMINISTIC)
    for behaviour in (Behaviour(chunks=5, die_after=2), Behaviour(chunks=5, skip_done=True)):
        stub.then(behaviour)
        async with client.post("/v1/chat/completions", json=body) as response:
            events = await read_events(response)
        assert events[-1][0] == "error"  # the client is told the answer is cut
        assert (await _stream(client, body, {"Cache-Control": "no-store"}))[0] == "bypass"
    assert (await _stream(client, body))[0] == "miss"


async def test_a_client_leaving_mid_stream_stores_nothing(make_stub: MakeStub,
                                                          make_orchestrator: MakeOrchestrator
                                                          ) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(url)
    body = chat(stream=True, **DETERMINISTIC)
    stub.then(Behaviour(chunks=50, delay_s=0.02))
    response = await client.post("/v1/chat/completions", json=body)
    await response.content.readline()
    response.close()
    await asyncio.wait_for(stub.disconnected.wait(), 5)
    assert (await _stream(client, body))[0] == "miss"


async def test_eviction_by_bytes(make_stub: MakeStub, make_orchestrator: MakeOrchestrator) -> None:
    stub, url = await make_stub()
    # Room for about two streamed answers of the stub's size.
    client = await make_orchestrator(url, cache_max_bytes=2500)
    bodies = [chat(f"question {i}", stream=True, **DETERMINISTIC) for i in range(3)]
    for body in bodies:
        await _stream(client, body)
    assert (await _stream(client, bodies[0]))[0] == "miss"  # the oldest went
    samples = await scrape(client)
    assert samples[("cerebrum_cache_evictions_total", ())] >= 1
    assert samples[("cerebrum_cache_bytes", ())] <= 2500


async def test_identical_requests_in_flight_share_one_generation(
        make_stub: MakeStub, make_orchestrator: MakeOrchestrator) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(url)
    stub.default = Behaviour(chunks=5, delay_s=0.05)
    body = chat(stream=True, **DETERMINISTIC)
    first = asyncio.create_task(_stream(client, body))
    await asyncio.wait_for(stub.streaming.wait(), 5)  # the first is generating
    second = asyncio.create_task(_stream(client, body))
    (v1, b1), (v2, b2) = await asyncio.gather(first, second)
    assert (v1, v2) == ("miss", "hit")
    assert b1 == b2
    assert len(stub.received) == 1


async def scrape(client) -> dict[tuple[str, tuple], float]:
    response = await client.get("/metrics")
    assert response.status == 200
    samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_move_with_requests(make_stub: MakeStub,
                                          make_orchestrator: MakeOrchestrator,
                                          refused_url: str, clock) -> None:
    stub, url = await make_stub()
    client = await make_orchestrator(refused_url, url, max_concurrent=1)
    code = "def handler(event):\n    return event['x']\n" * 120
    body = chat(f"Explain handler.\n```python\n{code}```", stream=True, **DETERMINISTIC)
    await _stream(client, body)
    await _stream(client, body)
    await client.post("/v1/chat/completions", json={"messages": "bad"})
    # Fill the one concurrency slot, then be shed.
    stub.then(Behaviour(chunks=30, delay_s=0.02))
    slow = await client.post("/v1/chat/completions", json=chat(stream=True, temperature=0.5))
    await asyncio.wait_for(stub.streaming.wait(), 5)
    shed = await client.post("/v1/chat/completions", json=chat())
    assert shed.status == 503
    await slow.read()
    await asyncio.sleep(0.05)  # completion lines and their figures land just after responses

    samples = await scrape(client)
    route = "/v1/chat/completions"
    assert samples[("cerebrum_http_requests_total",
                    (("method", "POST"), ("route", route), ("status", "200")))] == 3
    assert samples[("cerebrum_http_requests_total",
                    (("method", "POST"), ("route", route), ("status", "400")))] == 1
    assert samples[("cerebrum_rejected_total", (("reason", "concurrency"),))] == 1
    assert samples[("cerebrum_cache_hits_total", ())] == 1
    assert samples[("cerebrum_cache_stores_total", ())] == 1
    assert samples[("cerebrum_cache_bytes", ())] > 0
    # The stub's 3 tokens, once (the hit generated nothing), and the slow one's 30.
    assert samples[("cerebrum_tokens_total", (("direction", "completion"),))] == 3 + 30
    assert samples[("cerebrum_time_to_first_token_seconds_count", (("route", route),))] == 3
    assert samples[("cerebrum_optimizer_reduction_ratio_count", ())] >= 1
    assert samples[("cerebrum_optimizer_seconds_count", ())] >= 1
    # The refused backend failed until its circuit opened; answers came by failover.
    refused = refused_url.removeprefix("http://")
    assert samples[("cerebrum_breaker_state", (("backend", refused),))] == 2
    assert samples[("cerebrum_breaker_transitions_total", (
        ("backend", refused), ("from_state", "closed"), ("to_state", "open")))] == 1
    assert samples[("cerebrum_backend_requests_total", (("backend", url.removeprefix("http://")),))
                   ] == 2
    assert samples.get(("process_open_fds", ()), 0) > 0
    assert samples[("cerebrum_asyncio_tasks", ())] > 0
