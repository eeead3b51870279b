"""Load: 10,000 requests at concurrency 32 through the real orchestrator (shedding limit 2)
in front of a stand-in upstream (no model). Every reply is a 200 with a whole answer or
a 503 with Retry-After, none hangs, and afterwards the orchestrator's open file
descriptors, asyncio tasks and RSS are back at their baseline (read from its /metrics).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.services import Service, free_port

pytestmark = pytest.mark.reliability

REQUESTS = int(os.environ.get("CEREBRUM_LOAD_REQUESTS", "10000"))
CONCURRENCY = 32
REQUEST_TIMEOUT_S = 15.0
BODY = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


async def _metrics(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    return {sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples if not sample.labels}


async def _hammer(session: aiohttp.ClientSession, url: str, count: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    queue = iter(range(count))

    async def worker() -> None:
        for _ in queue:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    async with session.post(url + "/v1/chat/completions", json=BODY) as response:
                        body = await response.read()
                        if response.status == 200:
                            ok = body.rstrip().endswith(b"data: [DONE]")
                            outcomes["200" if ok else "200 without [DONE]"] += 1
                        elif response.status == 503:
                            has_retry = int(response.headers.get("Retry-After", "0")) >= 1
                            outcomes["503" if has_retry else "503 without Retry-After"] += 1
                        else:
                            outcomes[str(response.status)] += 1
            except TimeoutError:
                outcomes["timeout"] += 1
            except aiohttp.ClientError as exc:
                outcomes[type(exc).__name__] += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return outcomes


async def test_ten_thousand_requests_then_back_to_baseline(tmp_path: Path) -> None:
    upstream_port, orchestrator_port = free_port(), free_port()
    upstream = Service("tests/reliability/standin.py", [], {}, tmp_path / "upstream.log",
                       upstream_port)
    orchestrator = Service("cm4_app.py", [], {
        "CEREBRUM_BACKEND_URL": f"http://127.0.0.1:{upstream_port}",
        "CEREBRUM_MAX_CONCURRENT": "2", "CEREBRUM_LOG_LEVEL": "ERROR"},
        tmp_path / "cm4.log", orchestrator_port)
    upstream.start()
    orchestrator.start()
    url = f"http://127.0.0.1:{orchestrator_port}"
    try:
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as session:
            warm = await _hammer(session, url, 500)  # first-use allocations, pools
            assert warm["200"] > 0
            await asyncio.sleep(0.5)
            baseline = await _metrics(session, url)
            started = time.monotonic()
            outcomes = await _hammer(session, url, REQUESTS)
            elapsed = time.monotonic() - started
        # Let connections close and the last completion lines land.
        await asyncio.sleep(1.0)
        async with aiohttp.ClientSession() as session:
            after = await _metrics(session, url)
    finally:
        orchestrator.stop()
        upstream.stop()
    print(f"\n{REQUESTS} requests at concurrency {CONCURRENCY} in {elapsed:.1f} s: "
          f"{dict(outcomes)}; fds {baseline['process_open_fds']:.0f} -> "
          f"{after['process_open_fds']:.0f}, tasks {baseline['cerebrum_asyncio_tasks']:.0f} -> "
          f"{after['cerebrum_asyncio_tasks']:.0f}, RSS "
          f"{baseline['process_resident_memory_bytes'] / 2**20:.1f} -> "
          f"{after['process_resident_memory_bytes'] / 2**20:.1f} MiB", file=sys.stderr)
    assert set(outcomes) <= {"200", "503"}, outcomes
    assert sum(outcomes.values()) == REQUESTS
    assert outcomes["200"] > 0 and outcomes["503"] > 0  # both served and shed
    # The scrapes' own connections differ by at most a couple of descriptors.
    assert after["process_open_fds"] <= baseline["process_open_fds"] + 2
    assert after["cerebrum_asyncio_tasks"] <= baseline["cerebrum_asyncio_tasks"] + 2
    rss_growth = after["process_resident_memory_bytes"] - baseline["process_resident_memory_bytes"]
    assert rss_growth < 8 * 2**20, f"RSS grew {rss_growth / 2**20:.1f} MiB"
