"""How many cores other processes kept busy while the engine was idle.

While running, the engine cannot read the host's CPU use cleanly: its own
spinning threads, the client reading the stream and sampling jitter blur the
figure (``scheduler.ThreadTuner`` asks the decoder instead). While it is idle
none of that runs, so the CPU the host spent during the pause is the
neighbours' own, and it is the best guess of what the next request will meet.

Only a guess: a neighbour that worked through the pause and stopped just
before the request (another server answering the request before ours, a
build that has just finished) looks the same as one still at work, and the
next request would start on too few threads. So at its end the pause's
local figure is capped by the processes runnable at that moment (the
kernel's own count, less this process's threads), read again and again
for up to 8 ms until it shows none, so that what wakes with the request
itself does not count. Steal (time another guest held our core on a VPS) has no
such snapshot and counts as read.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil


def host_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


class IdleWatch:
    """Start at the beginning of a pause; ``busy_cores`` at its end."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._cores = host_cores()
        self._start: tuple[float, float, float, float] | None = None

    def start(self) -> None:
        self._start = (time.monotonic(), _host_busy_seconds(), self._own_seconds(),
                       _steal_seconds())

    def busy_cores(self) -> float | None:
        """Cores' worth of CPU other processes used since ``start``, capped by those
        still runnable now (see the module docstring); None before ``start``, or
        when the host will not tell."""
        if self._start is None:
            return None
        began, host, own, steal = self._start
        try:
            elapsed = time.monotonic() - began
            if elapsed <= 0:
                return None
            stolen = _steal_seconds() - steal
            local = (_host_busy_seconds() - host) - (self._own_seconds() - own) - stolen
        except (psutil.Error, OSError):
            return None
        local = max(0.0, local / elapsed)
        if local >= 0.5:  # (the snapshots cost up to 8 ms: only where they can matter)
            now = runnable_neighbours()
            if now is not None:
                local = min(local, float(now))
        return local + max(0.0, stolen / elapsed)

    def free_cores(self) -> float | None:
        """The cores the neighbours left free since ``start`` (None as ``busy_cores``)."""
        busy = self.busy_cores()
        return None if busy is None else self._cores - busy

    def _own_seconds(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)


def runnable_neighbours(window_s: float = 0.008, gap_s: float = 0.0005) -> int | None:
    """Other processes' runnable threads: the fewest seen in snapshots ``gap_s``
    apart over ``window_s``, ending at the first that shows none. A spinning
    neighbour is runnable in every one; what wakes with a request is not for
    long (traced here at the first request after a pause: one other thread
    runnable for 1-5 ms, then none). None where ``/proc`` cannot tell."""
    fewest: int | None = None
    deadline = time.monotonic() + window_s
    while True:
        try:
            others = max(0, _runnable_on_host() - _runnable_here())
        except (OSError, ValueError, IndexError):
            return None
        fewest = others if fewest is None else min(fewest, others)
        if fewest == 0 or time.monotonic() >= deadline:
            return fewest
        time.sleep(gap_s)


def _runnable_on_host() -> int:
    # /proc/loadavg's fourth field: runnable scheduling entities / all of them.
    return int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])


def _runnable_here() -> int:
    count = 0
    for task in os.scandir("/proc/self/task"):
        try:
            stat = Path(task.path, "stat").read_text()
        except OSError:  # the thread has just ended
            continue
        count += stat[stat.rindex(")") + 2] == "R"
    return count


def _steal_seconds() -> float:
    return float(getattr(psutil.cpu_times(), "steal", 0.0))


def _host_busy_seconds() -> float:
    """CPU seconds the whole host has spent on anything but idling, all cores summed.

    ``steal`` counts: on a VPS it is time another guest held our core, and
    the model's threads stall on it just as on a local neighbour."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return float(sum(times) - idle - getattr(times, "guest", 0.0)
                 - getattr(times, "guest_nice", 0.0))
