"""The prompt cache: saved KV states of sequences, in RAM, least recently used out first.

When a new request must take a slot that holds another conversation, the
engine saves that slot's state (``llama_state_seq_get_data``) here; when a
later request shares a saved prefix, the state is loaded back into a slot
(``llama_state_seq_set_data``) and only the new tail is prefilled. So two
chats that alternate on one slot each re-prefill a turn, not their history.

Bounded twice: by ``CEREBRUM_PROMPT_CACHE_MB`` and by the RAM floor (an entry
that would take available RAM below ``CEREBRUM_MIN_FREE_RAM_MB`` is refused
and older ones are dropped). Only the engine's thread touches it.

A budget VPS has far more disk than RAM, and reading a saved state back
costs milliseconds where prefilling a long history costs seconds to tens of
seconds. So with ``CEREBRUM_PROMPT_CACHE_DISK_MB`` set, an entry pushed out
of RAM is written to a file in ``CEREBRUM_PROMPT_CACHE_DIR`` (the ``DiskTier``,
LRU under its own cap) instead of being lost, and comes back from there the
same way. The directory is the model's own and emptied at load: a saved
state is only valid for the context it was taken from.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable
from pathlib import Path

import attrs

from cerebrum.backend.scheduler import CacheInfo, choose_evictions, common_prefix

_LOGGER = logging.getLogger(__name__)


@attrs.define(eq=False)
class CacheEntry:
    key: int
    tokens: tuple[int, ...]
    data: bytes
    last_used: int


@attrs.define
class CacheStats:
    """Counters for ``/metrics`` and the tests."""

    saves: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    refused: int = 0
    spilled: int = 0
    """Entries pushed out of RAM and written to the disk tier."""
    disk_hits: int = 0
    """Hits (counted in ``hits`` too) served from the disk tier."""


@attrs.define(eq=False)
class _DiskEntry:
    key: int
    tokens: tuple[int, ...]
    size: int
    last_used: int


class DiskTier:
    """Saved states in files, one per entry, bounded in bytes, LRU; tokens stay in RAM."""

    def __init__(self, directory: Path, capacity_bytes: int) -> None:
        self.directory = directory
        self.capacity = capacity_bytes
        self.entries: dict[int, _DiskEntry] = {}
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stale in directory.glob("*.kv"):  # from an earlier load: another context
            stale.unlink(missing_ok=True)

    @property
    def size_bytes(self) -> int:
        return sum(e.size for e in self.entries.values())

    def _path(self, key: int) -> Path:
        return self.directory / f"{key}.kv"

    def put(self, key: int, tokens: tuple[int, ...], data: bytes, last_used: int) -> list[int]:
        """Write an entry; returns the keys dropped to make room (empty if it did not fit)."""
        drop = choose_evictions([(e.key, e.size, e.last_used) for e in self.entries.values()],
                                self.capacity, len(data))
        if len(data) > self.capacity:
            return []
        for old in drop:
            self.remove(old)
        path = self._path(key)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        except OSError:
            _LOGGER.warning("could not write a prompt state to %s", path, exc_info=True)
            path.unlink(missing_ok=True)
            return drop
        self.entries[key] = _DiskEntry(key, tokens, len(data), last_used)
        return drop

    def take(self, key: int) -> bytes | None:
        """Read an entry and forget it (it lives in a slot now); None if unreadable."""
        self.entries.pop(key, None)
        path = self._path(key)
        try:
            return path.read_bytes()
        except OSError:
            _LOGGER.warning("could not read a prompt state from %s", path, exc_info=True)
            return None
        finally:
            path.unlink(missing_ok=True)

    def remove(self, key: int) -> None:
        self.entries.pop(key, None)
        self._path(key).unlink(missing_ok=True)

    def clear(self) -> None:
        for key in list(self.entries):
            self.remove(key)


class PromptCache:
    """Saved sequence states keyed by their tokens, bounded in bytes, LRU."""

    def __init__(self, capacity_bytes: int,
                 room_bytes: Callable[[], float] = lambda: float("inf"),
                 disk: DiskTier | None = None) -> None:
        """``room_bytes`` says how much RAM is available above the floor right now;
        ``disk`` keeps what RAM pushes out."""
        self.capacity = capacity_bytes
        self.disk = disk
        self._room = room_bytes
        self._entries: dict[int, CacheEntry] = {}
        self._keys = itertools.count()
        self._clock = itertools.count()
        self.stats = CacheStats()

    @property
    def size_bytes(self) -> int:
        return sum(len(e.data) for e in self._entries.values())

    @property
    def disk_bytes(self) -> int:
        return self.disk.size_bytes if self.disk is not None else 0

    def __len__(self) -> int:
        return len(self._entries) + (len(self.disk.entries) if self.disk is not None else 0)

    def infos(self) -> list[CacheInfo]:
        """What the scheduler compares prompts against (both tiers)."""
        infos = [CacheInfo(e.key, e.tokens) for e in self._entries.values()]
        if self.disk is not None:
            infos += [CacheInfo(e.key, e.tokens) for e in self.disk.entries.values()]
        return infos

    def holds(self, tokens: tuple[int, ...]) -> bool:
        """Whether an entry already keeps the state of ``tokens`` (or of a longer run
        starting with them): saving them again would copy the same bytes. A RAM
        entry found counts as used now."""
        for entry in self._entries.values():
            if _starts_with(entry.tokens, tokens):
                entry.last_used = next(self._clock)
                return True
        return self.disk is not None and any(
            _starts_with(e.tokens, tokens) for e in self.disk.entries.values())

    def put(self, tokens: tuple[int, ...], data: bytes) -> bool:
        """Keep ``data`` (the state of ``tokens``); False when it does not fit."""
        size = len(data)
        # An entry whose tokens are a prefix of the new one is redundant now.
        for info in self.infos():
            if _starts_with(tokens, info.tokens):
                self._forget(info.key)
        capacity = int(min(float(self.capacity), self.size_bytes + self._room()))
        drop = choose_evictions(
            [(e.key, len(e.data), e.last_used) for e in self._entries.values()], capacity, size)
        if size > capacity:
            if self.disk is not None and size <= self.disk.capacity:
                # Too big for RAM now, not for the disk: straight there.
                entry = CacheEntry(next(self._keys), tokens, data, next(self._clock))
                self._push_out(entry, counted=False)
                if entry.key in self.disk.entries:
                    self.stats.saves += 1
                    return True
            self.stats.refused += 1
            return False
        for key in drop:
            self._push_out(self._entries.pop(key))
        key = next(self._keys)
        self._entries[key] = CacheEntry(key, tokens, data, next(self._clock))
        self.stats.saves += 1
        return True

    @property
    def largest_entry(self) -> int:
        """The most bytes one saved state may take (RAM's cap or the disk's)."""
        return max(self.capacity, self.disk.capacity if self.disk is not None else 0)

    def take(self, key: int) -> CacheEntry | None:
        """Remove and return an entry that is being loaded into a slot (it lives there
        now); None when its file could not be read back."""
        entry = self._entries.pop(key, None)
        if entry is None and self.disk is not None and key in self.disk.entries:
            tokens = self.disk.entries[key].tokens
            data = self.disk.take(key)
            if data is None:
                return None
            self.stats.disk_hits += 1
            entry = CacheEntry(key, tokens, data, next(self._clock))
        if entry is None:
            raise KeyError(key)
        self.stats.hits += 1
        return entry

    def _push_out(self, entry: CacheEntry, counted: bool = True) -> None:
        """An entry leaves RAM: to the disk tier if there is one, else it is gone.
        ``counted``: it was in RAM (a spill or an eviction, not a direct write)."""
        if self.disk is None:
            self.stats.evictions += 1
            return
        dropped = self.disk.put(entry.key, entry.tokens, entry.data, entry.last_used)
        self.stats.evictions += len(dropped)
        if entry.key in self.disk.entries:
            self.stats.spilled += counted
        elif counted:
            self.stats.evictions += 1  # larger than the disk tier, or the write failed

    def _forget(self, key: int) -> None:
        if self._entries.pop(key, None) is None and self.disk is not None:
            self.disk.remove(key)

    def miss(self) -> None:
        self.stats.misses += 1

    def trim(self) -> int:
        """Drop LRU entries while RAM is below the floor; returns how many were dropped."""
        dropped = 0
        while self._entries and self._room() < 0:
            lru = min(self._entries.values(), key=lambda e: e.last_used)
            self._push_out(self._entries.pop(lru.key))
            dropped += 1
        return dropped

    def clear(self) -> None:
        self._entries.clear()
        if self.disk is not None:
            self.disk.clear()


def _starts_with(tokens: tuple[int, ...], prefix: tuple[int, ...]) -> bool:
    """Whether ``tokens`` begins with all of ``prefix``."""
    return len(tokens) >= len(prefix) and common_prefix(tokens, prefix) == len(prefix)
