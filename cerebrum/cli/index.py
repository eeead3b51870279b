"""``cerebrum index``: upload a repository to the orchestrator as a workspace, incrementally.

    cerebrum index [PATH] [--name NAME]    index PATH (default .) as workspace NAME (its dir name)
    cerebrum index [PATH] --status         what is indexed, and what changed since

Files come from ``git ls-files`` (tracked and untracked-but-not-ignored) in a
git work tree, else from a walk that honours the top ``.gitignore``; only
source files the optimiser parses are sent. Every file is hashed locally
(read one at a time, never all at once); the orchestrator answers which
hashes it lacks and only those files travel, in batches. An interrupted run
leaves the served index as it was; the next run sends what is still missing.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from cerebrum.cli.client import Client
from cerebrum.cli.errors import (
    EXIT_OK,
    Overloaded,
    RequestFailed,
    UsageError,
    orchestrator_only,
)
from cerebrum.cli.render import Output, terminal_safe
from cerebrum.cli.settings import resolve
from cerebrum.workspace.extract import language_for
from cerebrum.workspace.paths import InvalidPath, check_path, name_for_directory
from cerebrum.workspace.store import sha256_hex

MAX_FILE_BYTES = 1024 * 1024
"""Larger files are skipped (the orchestrator's default limit too)."""
BATCH_BYTES = 1024 * 1024
BATCH_FILES = 200
RETRIES = 8
_SKIP_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv",
                        ".tox", ".mypy_cache", ".pytest_cache", ".ruff_cache", "build", "dist"})


@attrs.frozen
class LocalFile:
    path: str
    """Relative to the repository, with ``/``."""
    sha256: str
    size: int


@attrs.define
class Scan:
    """The source files of a repository, and what was skipped and why."""

    files: list[LocalFile] = attrs.field(factory=list)
    skipped: Counter[str] = attrs.field(factory=Counter)


@attrs.frozen
class Summary:
    name: str
    files: int
    sent: int
    unchanged: int
    removed: int
    units: int
    definitions: int
    skipped: Counter[str]
    seconds: float
    vectors: tuple[int, int] | None = None
    """(units with a vector, units that get one) when the orchestrator has vectors on."""


def workspace_name(root: Path, name: str | None) -> str:
    """``--name``, else the repository directory's name made valid."""
    return name or name_for_directory(root.name)


def candidate_paths(root: Path) -> Iterator[str]:
    """Paths under ``root`` (relative, ``/``): git's list in a work tree, else a walk."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"], capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        yield from _walk(root)
        return
    for raw in listed.stdout.split(b"\0"):
        if raw:
            yield raw.decode("utf-8", "surrogateescape")


def _ignore_patterns(root: Path) -> list[str]:
    try:
        lines = (root / ".gitignore").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "!"))]


def _ignored(relative: str, patterns: Sequence[str], is_dir: bool) -> bool:
    name = relative.rsplit("/", 1)[-1]
    for pattern in patterns:
        if pattern.endswith("/"):
            if not is_dir:
                continue
            pattern = pattern.rstrip("/")
        anchored = pattern.startswith("/") or "/" in pattern
        pattern = pattern.lstrip("/")
        if fnmatch.fnmatch(relative, pattern) or (not anchored and fnmatch.fnmatch(name, pattern)):
            return True
    return False


def _walk(root: Path) -> Iterator[str]:
    """A walk that skips hidden and tool directories and the top ``.gitignore``'s patterns."""
    patterns = _ignore_patterns(root)
    for directory, dirs, files in os.walk(root):
        base = Path(directory).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith(".")
                         and not _ignored(prefix + d, patterns, True))
        for name in sorted(files):
            if not _ignored(prefix + name, patterns, False):
                yield prefix + name


def scan(root: Path, max_file_bytes: int = MAX_FILE_BYTES) -> Scan:
    """Hash every source file under ``root``, one at a time; count the rest by reason."""
    result = Scan()
    real_root = root.resolve()
    for relative in candidate_paths(root):
        if language_for(relative) is None:
            result.skipped["not source code"] += 1
            continue
        try:
            check_path(relative)
        except InvalidPath:
            result.skipped["unusable path"] += 1
            continue
        path = root / relative
        try:
            if path.is_symlink() and not path.resolve().is_relative_to(real_root):
                result.skipped["symlink outside the repository"] += 1
                continue
            if not path.is_file():
                result.skipped["not a regular file"] += 1
                continue
            size = path.stat().st_size
            if size > max_file_bytes:
                result.skipped[f"larger than {max_file_bytes // 1024} KB"] += 1
                continue
            data = path.read_bytes()
        except OSError:
            result.skipped["unreadable"] += 1
            continue
        if b"\0" in data[:8192] or not _is_utf8(data):
            result.skipped["binary or not UTF-8"] += 1
            continue
        result.files.append(LocalFile(relative, sha256_hex(data), len(data)))
    return result


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def batches(root: Path, paths: Sequence[str], *, max_bytes: int = BATCH_BYTES,
            max_files: int = BATCH_FILES) -> Iterator[list[dict[str, str]]]:
    """The files to send, read lazily, in batches of at most ``max_bytes`` / ``max_files``."""
    batch: list[dict[str, str]] = []
    size = 0
    for relative in paths:
        content = (root / relative).read_bytes().decode("utf-8")
        if batch and (size + len(content) > max_bytes or len(batch) >= max_files):
            yield batch
            batch, size = [], 0
        batch.append({"path": relative, "content": content})
        size += len(content)
    if batch:
        yield batch


async def _post(client: Client, path: str, body: Any) -> dict[str, Any]:
    """POST, waiting out a busy orchestrator (503 + Retry-After) a few times."""
    for attempt in range(RETRIES):
        try:
            answer, _ = await client.post_json(path, body)
            if not isinstance(answer, dict):
                raise RequestFailed(f"{client.url} answered {path} with JSON that is not an "
                                    "object; is it a Cerebrum orchestrator?")
            return answer
        except Overloaded as exc:
            if attempt == RETRIES - 1:
                raise
            await asyncio.sleep(min(10.0, exc.retry_after or 1.0))
    raise AssertionError("unreachable")


class Progress:
    """A one-line progress bar on a terminal; silent otherwise."""

    def __init__(self, err: Output, total: int, label: str) -> None:
        self.err, self.total, self.label, self.done = err, total, label, 0

    def advance(self, count: int) -> None:
        self.done += count
        if not self.err.tty or not self.total:
            return
        width = 30
        filled = int(width * self.done / self.total)
        self.err.write(f"\r\x1b[K{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                       f"{self.done}/{self.total} files")

    def finish(self) -> None:
        if self.err.tty and self.total:
            self.err.write("\r\x1b[K")


async def sync(client: Client, root: Path, name: str, err: Output) -> Summary:
    """Bring workspace ``name`` up to date with ``root``; only changed files travel."""
    started = time.perf_counter()
    found = await asyncio.to_thread(scan, root)
    manifest = [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in found.files]
    try:
        plan = await _post(client, f"/v1/workspaces/{name}/begin", {"files": manifest})
    except RequestFailed as exc:
        raise orchestrator_only(exc, client.url, "workspace API") from None
    listed = plan.get("need")
    need = [path for path in listed if isinstance(path, str)] if isinstance(listed, list) else []
    # Named in every later step: another client's begin meanwhile makes them refuse (409).
    update = {"update": plan["update"]} if isinstance(plan.get("update"), str) else {}
    progress = Progress(err, len(need), f"indexing {name}")
    try:
        for batch in batches(root, need):
            await _post(client, f"/v1/workspaces/{name}/files", {"files": batch, **update})
            progress.advance(len(batch))
    finally:
        progress.finish()
    status = await _post(client, f"/v1/workspaces/{name}/commit", update)
    return Summary(name, _count(status, "files"), len(need), _count(plan, "unchanged"),
                   _count(plan, "removed"), _count(status, "units"),
                   _count(status, "definitions"), found.skipped,
                   time.perf_counter() - started, _vectors(status))


def _count(answer: dict[str, Any], field: str) -> int:
    """A count the orchestrator reports; a server's non-number shows as 0, not a traceback."""
    value = answer.get(field)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _vectors(status: dict[str, Any]) -> tuple[int, int] | None:
    if not status.get("vectors_enabled"):
        return None
    return _count(status, "vectors"), _count(status, "embeddable")


def vectors_line(vectors: tuple[int, int] | None) -> str:
    """`` · vectors for 12 of 1043 units (the rest ...)``, or nothing."""
    if vectors is None:
        return ""
    done, total = vectors
    return f" · vectors for {done} of {total} units" + (
        " (the rest are being embedded in the background)" if done < total else "")


def summary_line(summary: Summary) -> str:
    """``workspace cerebrum: 137 files (3 sent, 134 unchanged, 0 removed) · 1118 units ...``."""
    line = (f"workspace {summary.name}: {summary.files} files ({summary.sent} sent, "
            f"{summary.unchanged} unchanged, {summary.removed} removed) · {summary.units} units, "
            f"{summary.definitions} definitions · {summary.seconds:.1f} s"
            f"{vectors_line(summary.vectors)}")
    if summary.skipped:
        reasons = ", ".join(f"{why} {count}" for why, count in summary.skipped.most_common())
        line += f"\nskipped {sum(summary.skipped.values())} files: {reasons}"
    return line


def repo_root(path: Path) -> Path:
    """A directory to index, or a sentence."""
    if not path.exists():
        raise UsageError(f"There is no directory {path}.")
    if not path.is_dir():
        raise UsageError(f"{path} is not a directory; give the repository's directory.")
    return path.resolve()


def add_parser(commands: argparse._SubParsersAction, *, parents: list[argparse.ArgumentParser],
               **kwargs: object) -> None:
    parser = commands.add_parser(
        "index", parents=parents, help="index a repository for retrieval (incremental)",
        description="Upload a repository's source files to the orchestrator as a workspace, "
                    "so `ask --repo` and `chat --repo` draw on it. Only files whose hash "
                    "changed are sent; .gitignore is respected (git ls-files in a git work "
                    "tree). A progress bar on a terminal, a summary at the end.")
    parser.add_argument("path", nargs="?", type=Path, default=Path("."),
                        help="the repository (default: the current directory)")
    parser.add_argument("--name", help="workspace name (default: the directory's name)")
    parser.add_argument("--status", action="store_true",
                        help="show what is indexed and what changed since, without uploading")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    root = repo_root(args.path)
    name = workspace_name(root, args.name)
    settings = resolve(url=args.url, env_file=args.env_file)
    out, err = Output(sys.stdout), Output(sys.stderr)
    if args.status:
        # Its figures and generation are the orchestrator's words.
        out.line(terminal_safe(asyncio.run(_status(settings.url, settings.api_key, root, name))))
        return EXIT_OK

    async def index() -> Summary:
        async with Client(settings.url, settings.api_key) as client:
            return await sync(client, root, name, err)

    out.line(summary_line(asyncio.run(index())))
    return EXIT_OK


async def _status(url: str, key: str | None, root: Path, name: str) -> str:
    async with Client(url, key) as client:
        try:
            remote = await client.get_json(f"/v1/workspaces/{name}?files=1")
        except RequestFailed as exc:
            if "no workspace" in exc.message:
                return f"workspace {name}: not indexed yet; run `cerebrum index {root}`"
            raise
    local = {f.path: f.sha256 for f in (await asyncio.to_thread(scan, root)).files}
    indexed: dict[str, str] = remote.get("files") or {}
    changed = sum(1 for p, h in local.items() if p in indexed and indexed[p] != h)
    new = sum(1 for p in local if p not in indexed)
    deleted = sum(1 for p in indexed if p not in local)
    when = remote.get("indexed_at")
    ago = f", indexed {_ago(time.time() - when)} ago" if isinstance(when, int | float) else ""
    pending = (f"; an update was interrupted with {remote['pending']} files to go"
               if remote.get("pending") else "")
    state = ("up to date" if not (changed or new or deleted)
             else f"since then {changed} changed, {new} new, {deleted} deleted: run "
                  f"`cerebrum index {root}`")
    return (f"workspace {name}: {len(indexed)} files, {remote.get('units', 0)} units, "
            f"{remote.get('definitions', 0)} definitions, generation {remote.get('generation')}"
            f"{ago}{pending}{vectors_line(_vectors(remote))}\n{state}")


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    if seconds < 36 * 3600:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} days"
