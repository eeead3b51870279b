"""The prompt cache: saved KV states of sequences, in RAM, least recently used out first.

When a new request must take a slot that holds another conversation, the
engine saves that slot's state (``llama_state_seq_get_data``) here; when a
later request shares a saved prefix, the state is loaded back into a slot
(``llama_state_seq_set_data``) and only the new tail is prefilled. So two
chats that alternate on one slot each re-prefill a turn, not their history.

Bounded twice: by ``CEREBRUM_PROMPT_CACHE_MB`` and by the RAM floor (an entry
that would take available RAM below ``CEREBRUM_MIN_FREE_RAM_MB`` is refused
and older ones are dropped). Only the engine's thread touches it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import attrs

from cerebrum.backend.scheduler import CacheInfo, choose_evictions, common_prefix


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


class PromptCache:
    """Saved sequence states keyed by their tokens, bounded in bytes, LRU."""

    def __init__(self, capacity_bytes: int,
                 room_bytes: Callable[[], float] = lambda: float("inf")) -> None:
        """``room_bytes`` says how much RAM is available above the floor right now."""
        self.capacity = capacity_bytes
        self._room = room_bytes
        self._entries: dict[int, CacheEntry] = {}
        self._keys = itertools.count()
        self._clock = itertools.count()
        self.stats = CacheStats()

    @property
    def size_bytes(self) -> int:
        return sum(len(e.data) for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def infos(self) -> list[CacheInfo]:
        """What the scheduler compares prompts against."""
        return [CacheInfo(e.key, e.tokens) for e in self._entries.values()]

    def put(self, tokens: tuple[int, ...], data: bytes) -> bool:
        """Keep ``data`` (the state of ``tokens``); False when it does not fit."""
        size = len(data)
        # An entry whose tokens are a prefix of the new one is redundant now.
        for entry in list(self._entries.values()):
            if len(entry.tokens) <= len(tokens) and common_prefix(entry.tokens, tokens) == len(
                    entry.tokens):
                del self._entries[entry.key]
        capacity = int(min(float(self.capacity), self.size_bytes + self._room()))
        drop = choose_evictions(
            [(e.key, len(e.data), e.last_used) for e in self._entries.values()], capacity, size)
        if size > capacity:
            self.stats.refused += 1
            return False
        for key in drop:
            del self._entries[key]
            self.stats.evictions += 1
        key = next(self._keys)
        self._entries[key] = CacheEntry(key, tokens, data, next(self._clock))
        self.stats.saves += 1
        return True

    def take(self, key: int) -> CacheEntry:
        """Remove and return an entry that is being loaded into a slot (it lives there now)."""
        self.stats.hits += 1
        return self._entries.pop(key)

    def miss(self) -> None:
        self.stats.misses += 1

    def trim(self) -> int:
        """Drop LRU entries while RAM is below the floor; returns how many were dropped."""
        dropped = 0
        while self._entries and self._room() < 0:
            lru = min(self._entries.values(), key=lambda e: e.last_used)
            del self._entries[lru.key]
            self.stats.evictions += 1
            dropped += 1
        return dropped

    def clear(self) -> None:
        self._entries.clear()
