#!/usr/bin/env python
"""Poll a server's /health every 10 ms from a process of its own, at real-time priority.

    .venv/bin/python bench/health_probe.py URL   # until stdin closes; prints JSON latencies (ms)

A poller on the same 2-core machine as the server and its model threads
measures its own wait for a core as well as the server's answer: beside two
busy threads an ordinary thread here oversleeps by 8–15 ms at the 99th
percentile, at any nice value. A real client of the backend is on another
host (the Pi), so that wait is not the server's. Where permitted (root, or an
RLIMIT_RTPRIO above 0) this probe runs at ``SCHED_RR`` 1 and measures the
server alone; it says on stderr when it could not.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.backend_throughput import poll_health
from cerebrum.backend.priority import make_this_thread_realtime


async def poll(url: str) -> list[float]:
    """Poll until stdin closes (the benchmark's signal that its streams are done)."""
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.run_in_executor(None, sys.stdin.read).add_done_callback(lambda _: stop.set())
    async with aiohttp.ClientSession() as session:
        await poll_health(session, url, stop, latencies)
    return latencies


def main() -> int:
    realtime = make_this_thread_realtime()
    if not realtime:
        print("health_probe: real-time priority refused; the figures include this "
              "poller's own wait for a core", file=sys.stderr)
    latencies = asyncio.run(poll(sys.argv[1]))
    print(json.dumps({"realtime": realtime, "latencies_ms": latencies}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
