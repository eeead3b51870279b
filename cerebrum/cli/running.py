"""Where ``cerebrum up`` is serving, recorded next to its ``.env`` for the other commands.

``cerebrum up --port 17000 --backend-port 19000`` writes ``.cerebrum/up.json``
beside the ``.env`` it keeps the key in; ``ask``, ``chat``, ``optimize`` and
``status`` run with the same ``.env`` then find the services there instead of
the default ports. The record names the process that wrote it and the ``.env``
it belongs to; a record whose process is gone (``up`` killed outright) or that
belongs to another ``.env`` is ignored, and ``up`` removes its own when it stops.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import attrs

RECORD = Path(".cerebrum") / "up.json"
"""The record's place, relative to the folder of the ``.env``."""


@attrs.frozen
class UpRecord:
    """One running ``cerebrum up``."""

    url: str
    """The orchestrator."""
    backend_url: str
    pid: int
    """The ``cerebrum up`` process."""
    env_file: str
    """The ``.env`` it runs with, as an absolute path."""


def record_path(env_file: Path) -> Path:
    """Where the record for ``env_file`` lives."""
    return env_file.resolve().parent / RECORD


def write_record(env_file: Path, url: str, backend_url: str, pid: int | None = None) -> Path:
    """Record that this process (or ``pid``) serves ``url`` and ``backend_url``."""
    path = record_path(env_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = UpRecord(url, backend_url, os.getpid() if pid is None else pid,
                      str(env_file.resolve()))
    # Written whole, then renamed: a reader never sees half a record.
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(attrs.asdict(record)) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


def read_record(env_file: Path,
                alive: Callable[[int], bool] | None = None) -> UpRecord | None:
    """The live record for ``env_file``; None when there is none, it is unreadable, it
    belongs to another ``.env``, or its process has gone."""
    try:
        data = json.loads(record_path(env_file).read_text(encoding="utf-8"))
        record = UpRecord(url=str(data["url"]), backend_url=str(data["backend_url"]),
                          pid=int(data["pid"]), env_file=str(data["env_file"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if record.env_file != str(env_file.resolve()):
        return None
    return record if (alive or process_alive)(record.pid) else None


def remove_record(env_file: Path, pid: int | None = None) -> None:
    """Remove the record if it is this process's (or ``pid``'s): a later ``up`` with the
    same ``.env`` may have replaced it."""
    path = record_path(env_file)
    try:
        owner = json.loads(path.read_text(encoding="utf-8")).get("pid")
    except (OSError, ValueError, AttributeError):
        return
    if owner == (os.getpid() if pid is None else pid):
        with contextlib.suppress(OSError):
            path.unlink()


def process_alive(pid: int) -> bool:
    """True when a process ``pid`` exists (signal 0 checks without sending anything)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, but another user's
        return True
    except OSError:
        return False
    return True
