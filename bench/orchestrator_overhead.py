"""What the orchestrator costs on the request path, against the floor of any Python gateway.

    .venv/bin/python bench/orchestrator_overhead.py [--rounds 5] [--requests 200]

A stand-in OpenAI upstream streams 64 chat chunks with no model behind it.
The same streamed request is measured three ways, alternating round by round
so drift on the machine hits all three alike:

- direct: client → upstream
- bare proxy: client → a minimal aiohttp pass-through (one ClientSession,
  bytes relayed as they arrive; the floor for a Python gateway) → upstream
- orchestrator: client → ``cm4_app.py`` (shedding limit raised, default
  settings otherwise: logging, request ids, optimiser, breaker) → upstream

at concurrency 1 and 8: time to first byte and to the last byte (p50/p99),
requests per second, and the orchestrator's RSS. Each server runs in its own
process; the client is this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.reliability.standin import CHUNKS, standin_app  # noqa: E402

BODY = {"model": "bench", "stream": True,
        "messages": [{"role": "user", "content": "Write a haiku about proxies."}]}


# -- the servers (each run as `--serve NAME` in its own process) ---------------------

def upstream_app() -> web.Application:
    """An OpenAI-compatible upstream that streams CHUNKS chunks at once, no model: the
    same stand-in the load test uses."""
    return standin_app()


SESSION = web.AppKey("session", aiohttp.ClientSession)


def bare_proxy_app(upstream: str) -> web.Application:
    """The floor: forward the body, relay the answer's bytes as they arrive."""

    async def session_ctx(app: web.Application) -> Any:
        async with aiohttp.ClientSession() as session:
            app[SESSION] = session
            yield

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with request.app[SESSION].post(upstream + request.path, data=body, headers={
                "Content-Type": "application/json"}) as upstream_response:
            response = web.StreamResponse(
                status=upstream_response.status,
                headers={"Content-Type": upstream_response.headers["Content-Type"]})
            await response.prepare(request)
            async for data in upstream_response.content.iter_any():
                await response.write(data)
            return response

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/chat/completions", forward)
    return app


# -- the driver -------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(args: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"could not start {args}") from None
            time.sleep(0.05)


async def one(session: aiohttp.ClientSession, url: str) -> tuple[float, float]:
    started = time.perf_counter()
    async with session.post(url, json=BODY) as response:
        assert response.status == 200, response.status
        first = await response.content.readany()
        ttfb = time.perf_counter() - started
        size = len(first)
        async for data in response.content.iter_any():
            size += len(data)
    total = time.perf_counter() - started
    assert size > CHUNKS * 100, size
    return ttfb, total


async def run_batch(session: aiohttp.ClientSession, url: str, requests: int,
                    concurrency: int) -> tuple[list[tuple[float, float]], float]:
    results: list[tuple[float, float]] = []
    remaining = iter(range(requests))

    async def worker() -> None:
        for _ in remaining:
            results.append(await one(session, url))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(urls: dict[str, str], rounds: int, requests: int, orchestrator_pid: int
                  ) -> dict[str, Any]:
    process = psutil.Process(orchestrator_pid)
    rss_peak = 0.0
    figures: dict[str, Any] = {}
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        for url in urls.values():  # warm-up: connections, caches, first model read
            await run_batch(session, url, 50, 4)
        for concurrency in (1, 8):
            samples: dict[str, list[tuple[float, float]]] = {name: [] for name in urls}
            wall: dict[str, float] = {name: 0.0 for name in urls}
            for _ in range(rounds):
                for name, url in urls.items():
                    results, elapsed = await run_batch(session, url, requests, concurrency)
                    samples[name].extend(results)
                    wall[name] += elapsed
                    rss_peak = max(rss_peak, process.memory_info().rss / 2**20)
            for name in urls:
                ttfb = [s[0] for s in samples[name]]
                total = [s[1] for s in samples[name]]
                figures[f"{name}@{concurrency}"] = {
                    "ttfb_p50": pct(ttfb, 0.5), "ttfb_p99": pct(ttfb, 0.99),
                    "total_p50": pct(total, 0.5), "total_p99": pct(total, 0.99),
                    "rps": len(samples[name]) / wall[name], "n": len(samples[name]),
                }
    figures["orchestrator_rss_mb"] = rss_peak
    return figures


def report(figures: dict[str, Any]) -> str:
    lines = ["| path | conc. | ttfb p50 ms | ttfb p99 ms | total p50 ms | total p99 ms | req/s |",
             "|---|---|---|---|---|---|---|"]
    for concurrency in (1, 8):
        for name in ("direct", "bare proxy", "orchestrator"):
            f = figures[f"{name}@{concurrency}"]
            lines.append(f"| {name} | {concurrency} | {f['ttfb_p50']:.2f} | {f['ttfb_p99']:.2f} "
                         f"| {f['total_p50']:.2f} | {f['total_p99']:.2f} | {f['rps']:.0f} |")
    lines.append("")
    for concurrency in (1, 8):
        bare, orch = figures[f"bare proxy@{concurrency}"], figures[f"orchestrator@{concurrency}"]
        lines.append(
            f"concurrency {concurrency}: orchestrator adds "
            f"{orch['ttfb_p50'] - bare['ttfb_p50']:+.3f} ms ttfb p50, "
            f"{orch['total_p50'] - bare['total_p50']:+.3f} ms total p50 over the bare proxy; "
            f"req/s {orch['rps'] / bare['rps']:.2f}x the bare proxy's")
    lines.append(f"orchestrator RSS (peak sampled): {figures['orchestrator_rss_mb']:.1f} MB")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200,
                        help="requests per round, path and concurrency")
    parser.add_argument("--serve", choices=("upstream", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = parser.parse_args()
    if args.serve == "upstream":
        web.run_app(upstream_app(), host="127.0.0.1", port=args.port, print=None,
                    access_log=None)
        return
    if args.serve == "bare":
        web.run_app(bare_proxy_app(args.upstream), host="127.0.0.1", port=args.port, print=None,
                    access_log=None)
        return

    script = str(Path(__file__).resolve())
    ports = {name: free_port() for name in ("upstream", "bare", "orchestrator")}
    upstream = f"http://127.0.0.1:{ports['upstream']}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBRUM_")}
    env.update(CEREBRUM_BACKEND_URL=upstream, CEREBRUM_MAX_CONCURRENT="100000")
    processes = [start([script, "--serve", "upstream", "--port", str(ports["upstream"])],
                       ports["upstream"])]
    try:
        processes.append(start([script, "--serve", "bare", "--port", str(ports["bare"]),
                                "--upstream", upstream], ports["bare"]))
        processes.append(start([str(ROOT / "cm4_app.py"), "--host", "127.0.0.1", "--port",
                                str(ports["orchestrator"]), "--env-file", os.devnull],
                               ports["orchestrator"], env))
        urllib.request.urlopen(f"http://127.0.0.1:{ports['orchestrator']}/v1/models").read()
        path = "/v1/chat/completions"
        urls = {"direct": upstream + path,
                "bare proxy": f"http://127.0.0.1:{ports['bare']}{path}",
                "orchestrator": f"http://127.0.0.1:{ports['orchestrator']}{path}"}
        figures = asyncio.run(measure(urls, args.rounds, args.requests, processes[2].pid))
    finally:
        for process in processes:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
    print(f"{CHUNKS} chunks per answer, {args.rounds} rounds x {args.requests} requests per "
          f"path and concurrency, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"aiohttp {aiohttp.__version__}")
    print(report(figures))
    if args.json:
        print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
