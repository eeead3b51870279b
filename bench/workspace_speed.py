"""Workspace speed and memory: index CPython's standard library through the real orchestrator.

    python bench/workspace_speed.py [--stdlib DIR] [--questions N]

Starts ``cm4_app.py`` on loopback (no backend is needed to index), then, with
the CLI's own upload code (``cerebrum.cli.index.sync``):

1. indexes a copy of the standard library's ``.py`` files (``site-packages``
   and the top-level ``test`` package left out): wall time, and the
   orchestrator's RSS before, at its peak (sampled every 20 ms) and after;
2. indexes again with nothing changed, then after changing one file;
3. times retrieval per question, through ``POST /v1/workspaces/NAME/search``
   and in-process on the same SQLite file.

Side by side in the same run: the floor of reading and hashing every file
(what any incremental indexer pays), and parsing alone (the optimiser's
chunker, no SQLite). Targets (issue 17): index <= 60 s, one changed file
<= 1 s, retrieval <= 50 ms, RSS growth <= 100 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cerebrum.cli.client import Client  # noqa: E402
from cerebrum.cli.index import scan, sync  # noqa: E402
from cerebrum.cli.render import Output  # noqa: E402
from cerebrum.workspace.extract import extract_file  # noqa: E402
from cerebrum.workspace.paths import owner_id  # noqa: E402
from cerebrum.workspace.retrieve import retrieve  # noqa: E402
from cerebrum.workspace.store import WorkspaceStore, workspace_path  # noqa: E402
from tests.services import free_port, wait_healthy  # noqa: E402

KEY = "bench-key-0123456789"
QUESTIONS = [
    "why does shutil.copytree fail when the destination directory already exists?",
    "how does the json decoder report the line and column of a syntax error",
    "where does asyncio cancel a task's pending callbacks when the loop closes",
    "parse an email address with a display name",
    "what happens when a thread pool executor is shut down while tasks are queued",
    "how is the HTTP chunked transfer encoding read by http.client",
    "the zipfile module writes a wrong CRC for empty files",
    "retry a socket connect with a timeout",
    "format a datetime as ISO 8601 with a timezone offset",
    "how does argparse print the usage line for mutually exclusive groups",
    "subprocess communicate deadlocks when stdout is large",
    "where are csv dialects registered and looked up",
    "logging handler that rotates files by size",
    "urllib.parse.urljoin drops the last path segment",
    "pathlib resolve with symlinks that loop",
    "difflib SequenceMatcher ratio is slow for long sequences",
    "tarfile extraction filter refuses absolute paths",
    "the pickle protocol 5 out-of-band buffers",
    "sqlite3 connection context manager does not close the connection",
    "textwrap dedent with mixed tabs and spaces",
]


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def copy_stdlib(source: Path, target: Path) -> int:
    """Copy the ``.py`` files (not site-packages, not the top-level test package)."""
    count = 0
    for path in source.rglob("*.py"):
        relative = path.relative_to(source)
        if relative.parts[0] in ("site-packages", "test") or "__pycache__" in relative.parts:
            continue
        if path.is_symlink() or not path.is_file():
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
        count += 1
    return count


class PeakRss:
    """Samples a process's RSS in a thread; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def _index(url: str, root: Path, name: str) -> tuple[float, int]:
    async with Client(url, KEY) as client:
        started = time.perf_counter()
        summary = await sync(client, root, name, Output(io.StringIO()))
        return time.perf_counter() - started, summary.sent


async def _search(url: str, name: str, questions: list[str]) -> list[float]:
    timings = []
    async with Client(url, KEY) as client:
        for question in questions:
            started = time.perf_counter()
            await client.post_json(f"/v1/workspaces/{name}/search",
                                   {"query": question, "max_tokens": 1500})
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def _mb(value: float) -> str:
    return f"{value / 1e6:.0f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stdlib", type=Path, default=stdlib_dir())
    parser.add_argument("--questions", type=int, default=len(QUESTIONS))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        repo, data = Path(tmp) / "stdlib", Path(tmp) / "data"
        files = copy_stdlib(args.stdlib, repo)
        size = sum(p.stat().st_size for p in repo.rglob("*.py"))
        print(f"standard library: {files} files, {size / 1e6:.1f} MB, from {args.stdlib}")

        started = time.perf_counter()
        scanned = scan(repo)
        floor = time.perf_counter() - started
        started = time.perf_counter()
        for local in scanned.files:
            extract_file(local.path, (repo / local.path).read_text(encoding="utf-8"))
        parse_only = time.perf_counter() - started

        port = free_port()
        env = {**os.environ, "CEREBRUM_BACKEND_URL": "http://127.0.0.1:9",
               "CEREBRUM_CLIENT_API_KEYS": KEY, "CEREBRUM_WORKSPACE_DIR": str(data),
               "CEREBRUM_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
        log = Path(tmp) / "orchestrator.log"
        with open(log, "wb") as handle:
            service = subprocess.Popen([sys.executable, str(ROOT / "cm4_app.py"), "--host",
                                        "127.0.0.1", "--port", str(port)], env=env,
                                       stdout=handle, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, service, log)
            before = psutil.Process(service.pid).memory_info().rss
            with PeakRss(service.pid) as rss:
                first, sent = asyncio.run(_index(url, repo, "stdlib"))
            after = psutil.Process(service.pid).memory_info().rss
            unchanged, _ = asyncio.run(_index(url, repo, "stdlib"))
            target = repo / "json" / "decoder.py"
            with open(target, "a", encoding="utf-8") as handle:
                handle.write("\n\ndef bench_marker_function():\n    return 'changed'\n")
            one, one_sent = asyncio.run(_index(url, repo, "stdlib"))
            questions = (QUESTIONS * (1 + args.questions // len(QUESTIONS)))[:args.questions]
            http = asyncio.run(_search(url, "stdlib", questions))
        finally:
            service.terminate()
            service.wait(30)
        store = WorkspaceStore(workspace_path(data, owner_id(KEY, False), "stdlib"), "stdlib")
        status = store.status()
        in_process = []
        for question in questions:
            started = time.perf_counter()
            retrieve(store, question, 1500)
            in_process.append((time.perf_counter() - started) * 1000)
        db_bytes = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())

    print(f"indexed: {status.files} files, {status.units} units, {status.definitions} "
          f"definitions, database {db_bytes / 1e6:.1f} MB")
    print(f"index everything:     {first:6.2f} s  ({sent} files sent; target <= 60 s: "
          f"{first / 60:.2f} of it)")
    print(f"  floor, read + hash: {floor:6.2f} s  (index / floor = {first / floor:.1f}x)")
    print(f"  parse only:         {parse_only:6.2f} s  (index / parse = {first / parse_only:.2f}x)")
    print(f"index, nothing new:   {unchanged:6.2f} s")
    print(f"index, one changed:   {one:6.2f} s  ({one_sent} file sent; target <= 1 s)")
    print(f"retrieval over HTTP:  mean {statistics.mean(http):.1f} ms, p95 "
          f"{sorted(http)[int(0.95 * (len(http) - 1))]:.1f} ms ({len(http)} questions; "
          f"target <= 50 ms)")
    print(f"retrieval in-process: mean {statistics.mean(in_process):.1f} ms, p95 "
          f"{sorted(in_process)[int(0.95 * (len(in_process) - 1))]:.1f} ms")
    print(f"orchestrator RSS: {_mb(before)} before, peak {_mb(rss.peak)}, {_mb(after)} after; "
          f"growth at peak {_mb(rss.peak - before)} (target <= 100 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
