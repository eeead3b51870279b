"""Resource protection: refuse new generations when the host is short of CPU or RAM.

Readings come from a ``ResourceReader`` (psutil in production, a fake in
tests), are sampled in the background without blocking the loop, and CPU is
smoothed so one busy second does not turn clients away.

The CPU figure excludes this process's own use: our generations are already
serialised by the per-model queue, and a 2-thread model on a 2-core VPS would
otherwise refuse every request that arrives while it works. The guard is
there for pressure from *outside* (other services, a runaway job).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import attrs
import psutil

from cerebrum.errors import Unavailable

_LOGGER = logging.getLogger(__name__)


class ResourceReader(Protocol):
    """Where the guard's readings come from."""

    def cpu_percent(self) -> float:
        """CPU use by other processes since the last call, % of the whole machine."""

    def available_mb(self) -> float:
        """RAM available to new allocations, MiB."""


class PsutilReader:
    """Real readings. ``cpu_percent`` never blocks: it measures since its last call."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._cores = psutil.cpu_count() or 1
        psutil.cpu_percent(interval=None)
        self._process.cpu_percent(interval=None)

    def cpu_percent(self) -> float:
        total = float(psutil.cpu_percent(interval=None))
        own = float(self._process.cpu_percent(interval=None)) / self._cores
        return max(0.0, total - own)

    def available_mb(self) -> float:
        return float(psutil.virtual_memory().available) / (1024 * 1024)


@attrs.define
class ResourceGuard:
    """Smoothed readings and the admission check for new generations."""

    reader: ResourceReader
    max_cpu_percent: float
    min_free_ram_mb: float
    smoothing: float = 0.3
    """Weight of a new CPU sample in the moving average."""
    retry_after_s: float = 5.0
    cpu_percent: float = 0.0
    available_mb: float = attrs.field(default=float("inf"))

    def sample(self) -> None:
        """Take one reading (cheap; called about once a second)."""
        cpu = self.reader.cpu_percent()
        self.cpu_percent += self.smoothing * (cpu - self.cpu_percent)
        self.available_mb = self.reader.available_mb()

    def check(self) -> None:
        """Raise 503 naming the limit when a new generation should not start."""
        if self.available_mb < self.min_free_ram_mb:
            raise Unavailable(
                f"the backend is short of memory: {self.available_mb:.0f} MB available, "
                f"below the floor of {self.min_free_ram_mb:.0f} MB (CEREBRUM_MIN_FREE_RAM_MB)",
                retry_after=self.retry_after_s,
                code="insufficient_memory",
            )
        if self.cpu_percent > self.max_cpu_percent:
            raise Unavailable(
                f"the backend host is busy: CPU at {self.cpu_percent:.0f}%, above the limit "
                f"of {self.max_cpu_percent:.0f}% (CEREBRUM_MAX_CPU_PERCENT)",
                retry_after=self.retry_after_s,
                code="cpu_overloaded",
            )

    async def run(self, interval: float = 1.0) -> None:
        """Sample forever; started and cancelled by the app's cleanup context."""
        while True:
            try:
                self.sample()
            except (psutil.Error, OSError):
                _LOGGER.warning("resource reading failed", exc_info=True)
            await asyncio.sleep(interval)
