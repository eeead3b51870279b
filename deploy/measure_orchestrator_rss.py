"""Measure the orchestrator's memory (RSS) idle and under a burst of requests.

    .venv/bin/python deploy/measure_orchestrator_rss.py [--requests 400] [--clients 16]

Starts ``cm4_app.py`` as its own process (as systemd would) in front of the
tests' stand-in upstream (no model: the backend's cost is not the Pi's), and
reads VmRSS / VmHWM from /proc/PID/status:

1. idle: 5 s after start, before any request;
2. warm idle: after one request of each kind (lazy imports, first buffers);
3. under load: ``--requests`` streamed chat completions from ``--clients``
   concurrent clients, half with an 8 KB code prompt (chunking work), sampled
   every 20 ms; the peak and the level 5 s after the burst.

Prints one JSON object (docs/benchmarks.md explains the figures).
Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.orchestrator.stub_upstream import Behaviour, StubUpstream  # noqa: E402

CODE = "\n".join(f"def f{i}(x):\n    return x * {i}  # line {i}\n" for i in range(200))[:8192]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of ``pid``, MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = round(int(rest.split()[0]) / 1024, 1)
    return values


async def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"cm4_app.py exited with {proc.returncode}")
            try:
                async with session.get(url + "/health") as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("cm4_app.py did not answer /health")


async def one_request(session: aiohttp.ClientSession, url: str, big: bool) -> int:
    content = ("Explain this code.\n```python\n" + CODE + "\n```") if big else "Say hi."
    body = {"model": "stub-model", "stream": True,
            "messages": [{"role": "user", "content": content}]}
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        await response.read()
        return response.status


async def measure(args: argparse.Namespace) -> dict[str, object]:
    stub = StubUpstream()
    stub.default = Behaviour(chunks=args.chunks, delay_s=args.chunk_delay_s)
    runner = web.AppRunner(stub.app())
    await runner.setup()
    upstream_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", upstream_port).start()

    port = free_port()
    env = {**os.environ, "CEREBRUM_BACKEND_URL": f"http://127.0.0.1:{upstream_port}",
           "CEREBRUM_API_KEY": "rss-measurement-key", "CEREBRUM_LOG_LEVEL": "ERROR"}
    if args.max_concurrent:
        env["CEREBRUM_MAX_CONCURRENT"] = str(args.max_concurrent)
    proc = subprocess.Popen([sys.executable, "cm4_app.py", "--host", "127.0.0.1",
                             "--port", str(port), "--env-file", os.devnull], cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    result: dict[str, object] = {
        "python": platform.python_version(), "machine": platform.machine(),
        "requests": args.requests, "clients": args.clients,
        "max_concurrent": args.max_concurrent or "default",
    }
    try:
        await wait_ready(url, proc)
        await asyncio.sleep(5)
        result["idle"] = memory_mb(proc.pid)

        async with aiohttp.ClientSession() as session:
            await one_request(session, url, big=False)
            await one_request(session, url, big=True)
            async with session.get(url + "/v1/models") as response:
                await response.read()
        await asyncio.sleep(2)
        result["warm_idle"] = memory_mb(proc.pid)

        samples: list[float] = []
        done = asyncio.Event()

        async def sample() -> None:
            while not done.is_set():
                samples.append(memory_mb(proc.pid)["VmRSS"])
                await asyncio.sleep(0.02)

        statuses: dict[int, int] = {}
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(args.requests):
            queue.put_nowait(i)

        async def client(session: aiohttp.ClientSession) -> None:
            while not queue.empty():
                i = queue.get_nowait()
                status = await one_request(session, url, big=i % 2 == 0)
                statuses[status] = statuses.get(status, 0) + 1

        sampler = asyncio.create_task(sample())
        started = time.monotonic()
        connector = aiohttp.TCPConnector(limit=args.clients)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(client(session) for _ in range(args.clients)))
        elapsed = time.monotonic() - started
        done.set()
        await sampler
        result["load"] = {"seconds": round(elapsed, 1), "statuses": statuses,
                          "rss_max_sampled": max(samples), **memory_mb(proc.pid)}
        await asyncio.sleep(5)
        result["after_load"] = memory_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        await runner.cleanup()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--chunks", type=int, default=20, help="SSE chunks per stand-in answer")
    parser.add_argument("--chunk-delay-s", type=float, default=0.01)
    parser.add_argument("--max-concurrent", type=int, default=0,
                        help="CEREBRUM_MAX_CONCURRENT (0: the orchestrator's default)")
    print(json.dumps(asyncio.run(measure(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
