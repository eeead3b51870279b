"""How many cores other processes kept busy while the engine was idle.

While running, the engine cannot read the host's CPU use cleanly: its own
spinning threads, the client reading the stream and sampling jitter blur the
figure (``scheduler.ThreadTuner`` asks the decoder instead). While it is idle
none of that runs, so the CPU the host spent during the pause is the
neighbours' own, and it is the best guess of what the next request will meet.
"""

from __future__ import annotations

import os
import time

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
        self._start: tuple[float, float, float] | None = None

    def start(self) -> None:
        self._start = (time.monotonic(), _host_busy_seconds(), self._own_seconds())

    def busy_cores(self) -> float | None:
        """Cores' worth of CPU other processes used since ``start``; None before it,
        or when the host will not tell."""
        if self._start is None:
            return None
        began, host, own = self._start
        try:
            elapsed = time.monotonic() - began
            if elapsed <= 0:
                return None
            others = (_host_busy_seconds() - host) - (self._own_seconds() - own)
        except (psutil.Error, OSError):
            return None
        return max(0.0, others / elapsed)

    def free_cores(self) -> float | None:
        """The cores the neighbours left free since ``start`` (None as ``busy_cores``)."""
        busy = self.busy_cores()
        return None if busy is None else self._cores - busy

    def _own_seconds(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)


def _host_busy_seconds() -> float:
    """CPU seconds the whole host has spent on anything but idling, all cores summed.

    ``steal`` counts: on a VPS it is time another guest held our core, and
    the model's threads stall on it just as on a local neighbour."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return float(sum(times) - idle - getattr(times, "guest", 0.0)
                 - getattr(times, "guest_nice", 0.0))
