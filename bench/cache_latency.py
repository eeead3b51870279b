"""Response cache: a hit against a cold request, through the orchestrator, on the real model.

    .venv/bin/python bench/cache_latency.py [--prompts 8] [--max-tokens 64]

Starts the real backend (embedded SmolLM2-135M, 2 threads) and the real
orchestrator on loopback. For each of N distinct deterministic prompts
(temperature 0), it sends the request cold (the backend generates it), then
the identical request again (served from the cache), alternating cold and
hit, streamed. It reports time to the first generated token and total time, medians, and
the ratio cold ÷ hit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-cache-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(script: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen([sys.executable, str(ROOT / script), "--host", "127.0.0.1",
                             "--port", str(port), "--env-file", "/dev/null"],
                            env=env, stdout=handle, stderr=subprocess.STDOUT)


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not start") from None
            time.sleep(0.1)


FIRST_TOKEN = re.compile(rb'"content": ?"[^"]')


def wait_for_model(url: str, timeout: float = 30) -> None:
    """Until the orchestrator has read the backend's model list (the cache key names
    the model: before that, requests go to the backend's default under no name)."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url + "/v1/models", headers={"X-API-Key": KEY})
    while b"smollm2-135m" not in urllib.request.urlopen(request, timeout=5).read():
        if time.monotonic() > deadline:
            raise SystemExit("the orchestrator never saw the backend's models")
        time.sleep(0.2)


async def timed(session: aiohttp.ClientSession, url: str, body: dict) -> tuple[float, float, str]:
    """Time to the first generated token (a non-empty content delta) and to the end."""
    started = time.perf_counter()
    first = None
    seen = b""
    async with session.post(url + "/v1/chat/completions", json=body,
                            headers={"X-API-Key": KEY}) as response:
        response.raise_for_status()
        verdict = response.headers.get("X-Cerebrum-Cache", "-")
        async for data in response.content.iter_any():
            if first is None:
                seen += data
                if FIRST_TOKEN.search(seen):
                    first = time.perf_counter()
    end = time.perf_counter()
    return (first or end) - started, end - started, verdict


async def run(args: argparse.Namespace) -> None:
    backend_port, orchestrator_port = free_port(), free_port()
    env = {**os.environ, "CEREBRUM_API_KEY": KEY, "CEREBRUM_CLIENT_API_KEYS": KEY,
           "CEREBRUM_THREADS": "2", "CEREBRUM_MAX_CPU_PERCENT": "100",
           "CEREBRUM_BACKEND_URL": f"http://127.0.0.1:{backend_port}",
           "CEREBRUM_LOG_LEVEL": os.environ.get("CEREBRUM_LOG_LEVEL", "WARNING")}
    logs = Path(tempfile.mkdtemp(prefix="cerebrum-bench-"))
    services = [start("vps_app.py", backend_port, env, logs / "backend.log"),
                start("cm4_app.py", orchestrator_port, env, logs / "orchestrator.log")]
    url = f"http://127.0.0.1:{orchestrator_port}"
    try:
        wait_ready(f"http://127.0.0.1:{backend_port}")
        wait_ready(url)
        wait_for_model(url)
        cold, hit = [], []
        async with aiohttp.ClientSession() as session:
            # Warm-up: model load and first-request costs, not measured.
            await timed(session, url, {"messages": [{"role": "user", "content": "warm up"}],
                                       "max_tokens": 4, "temperature": 0, "stream": True})
            for i in range(args.prompts):
                body = {"messages": [{"role": "user",
                                      "content": f"Write a Python function number {i} that "
                                                 "sums a list."}],
                        "max_tokens": args.max_tokens, "temperature": 0, "stream": True}
                first = await timed(session, url, body)
                second = await timed(session, url, body)
                assert first[2] == "miss" and second[2] == "hit", (first, second)
                cold.append(first[:2])
                hit.append(second[:2])
    finally:
        for service in services:
            service.terminate()
            service.wait(timeout=30)

    def med(rows: list[tuple[float, float]], index: int) -> float:
        return statistics.median(row[index] for row in rows) * 1000

    print(f"{args.prompts} prompts, max_tokens {args.max_tokens}, temperature 0, streamed, "
          "through the orchestrator to the embedded model")
    print(f"{'':10} {'first token p50 ms':>19} {'total p50 ms':>13}")
    print(f"{'cold':10} {med(cold, 0):19.1f} {med(cold, 1):13.1f}")
    print(f"{'cache hit':10} {med(hit, 0):19.2f} {med(hit, 1):13.2f}")
    print(f"ratio cold/hit: first token {med(cold, 0) / med(hit, 0):.0f}x, "
          f"total {med(cold, 1) / med(hit, 1):.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
