"""Response cache for deterministic requests (temperature 0, or a fixed seed).

Pure logic: no aiohttp. The key covers the model, the optimised messages or
prompt, every generation parameter and ``stream``, so only requests that must
produce the same answer in the same shape share an entry. It also covers the
client's identity (a digest of the API key it presented): a client never
gets another's answer, which would also tell it what the other asked.
``CEREBRUM_CACHE_SHARED=1`` shares entries across keys on purpose (one team,
one key set); without client keys every client is the same anonymous one. An entry holds the
backend's answer byte for byte: the SSE events (chunks, the final ``usage``
chunk, ``[DONE]``) of a stream, or the JSON body of a whole answer, so a hit
replays exactly what the backend sent. A streamed and a whole request for
the same prompt are cached separately; that costs a second generation once
and keeps the replay faithful without re-encoding anything.

Bounded by bytes (least recently used goes first) and by age (TTL). Only
complete answers are stored: the proxy calls ``put`` after the final chunk,
never for a stream cut by a disconnect or a backend failure.

Identical requests arriving while the first is still generating wait for it
(``wait_for_leader``) and are then served from the cache, instead of asking a
backend that would only queue them behind the first.

``lookup`` is one request's whole dealing with the cache, as a block: the
verdict, the hit or the lead, and storing the answer it relays.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import attrs

from cerebrum.openai_wire import HARMLESS_FIELDS
from cerebrum.orchestrator.sse_relay import validate_events
from cerebrum.protocol import OPTIONS_FIELD

_MAX_AGE_0 = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?0+\"?(?:$|[,\s])")

# Body fields that change neither the answer nor its shape.
_NOT_IN_KEY = frozenset({"user", OPTIONS_FIELD})


# llama.cpp reads these seeds as "pick one at random" (-1 in llama-cpp-python,
# LLAMA_DEFAULT_SEED = 0xFFFFFFFF in llama.cpp); seeds are 32-bit unsigned.
_RANDOM_SEED = 0xFFFFFFFF


def is_deterministic_seed(seed: Any) -> bool:
    """A seed that fixes the sampling: an int in [0, 2**32 - 2]."""
    return (isinstance(seed, int) and not isinstance(seed, bool)
            and 0 <= seed < _RANDOM_SEED)


def is_cacheable(body: Mapping[str, Any]) -> bool:
    """Deterministic requests only: temperature 0, or an explicit seed that is not random."""
    temperature = body.get("temperature")
    return (isinstance(temperature, int | float) and not isinstance(temperature, bool)
            and temperature == 0) or is_deterministic_seed(body.get("seed"))


def client_identity(presented_key: str | None, *, shared: bool) -> str:
    """The part of the key that says whose answer it is: a digest of the client's key
    (never the key itself), or "" when entries are shared on purpose."""
    if shared or not presented_key:
        return ""
    return hashlib.sha256(presented_key.encode("utf-8", "surrogateescape")).hexdigest()


def cache_key(kind: str, model: str, body: Mapping[str, Any], *, client: str = "") -> str:
    """A digest of everything that decides the answer, and of whose answer it is.

    Every field the backend honours is in it (tools, tool_choice,
    response_format, logprobs, penalties, logit_bias, stream_options, echo,
    suffix, ...), since each changes the answer or its shape; only the fields
    the API accepts and ignores (``HARMLESS_FIELDS``: user, metadata, ...) are
    left out, and a field sent as null counts as not sent.
    """
    relevant = {k: v for k, v in body.items()
                if k not in _NOT_IN_KEY and k not in HARMLESS_FIELDS and v is not None}
    relevant["model"] = model
    canonical = json.dumps([kind, client, relevant], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()


class Capture:
    """A stream's events kept for the cache while they are relayed, up to ``limit`` bytes:
    past it capturing stops (the answer would not be stored anyway) and what was kept is
    dropped, so an endless stream costs no memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.overflowed = False

    def add(self, raw: bytes) -> None:
        if self.overflowed:
            return
        if len(self.data) + len(raw) > self.limit:
            self.overflowed = True
            self.data = bytearray()
            return
        self.data += raw

    def complete(self) -> bool:
        """Whether what was captured is a whole, valid stream worth storing."""
        return not self.overflowed and validate_events(bytes(self.data))


@attrs.frozen
class CachedCompletion:
    """One complete answer, as the backend sent it."""

    body: bytes
    """The SSE events of a stream, or the JSON of a whole answer."""
    stream: bool
    content_type: str = "application/json"
    usage: Mapping[str, Any] | None = None
    """The answer's token counts, for the completion log line of a hit."""

    @property
    def size(self) -> int:
        """Bytes this entry is charged for (the body and a little bookkeeping)."""
        return len(self.body) + 256


@attrs.define
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0
    stores: int = 0


class ResponseCache:
    """LRU by bytes with a TTL."""

    def __init__(self, max_bytes: int, ttl_s: float,
                 clock: Callable[[], float] = time.monotonic, *,
                 max_entry_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.max_entry_bytes = max_bytes if max_entry_bytes is None else max_entry_bytes
        """Largest answer worth keeping (``CEREBRUM_CACHE_MAX_ENTRY_BYTES``)."""
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, CachedCompletion]] = OrderedDict()
        self._bytes = 0
        self._leaders: dict[str, asyncio.Event] = {}
        self.stats = CacheStats()

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> CachedCompletion | None:
        """The entry for ``key`` if present and fresh; counts a hit or a miss."""
        found = self._entries.get(key)
        if found is not None and self._clock() - found[0] > self.ttl_s:
            self._remove(key)
            self.stats.expirations += 1
            found = None
        if found is None:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return found[1]

    def put(self, key: str, entry: CachedCompletion) -> None:
        """Store a complete answer, evicting least recently used entries to fit."""
        if entry.size > self.max_bytes or len(entry.body) > self.max_entry_bytes:
            return
        if key in self._entries:
            self._remove(key)
        self._entries[key] = (self._clock(), entry)
        self._bytes += entry.size
        self.stats.stores += 1
        while self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            self.stats.evictions += 1

    def _remove(self, key: str) -> None:
        _, entry = self._entries.pop(key)
        self._bytes -= entry.size

    # -- coalescing identical requests in flight -----------------------------

    def lead(self, key: str) -> bool:
        """Claim ``key`` for generation; False if another request already leads it."""
        if key in self._leaders:
            return False
        self._leaders[key] = asyncio.Event()
        return True

    def release(self, key: str) -> None:
        """The leader finished (stored or not): wake its followers."""
        event = self._leaders.pop(key, None)
        if event is not None:
            event.set()

    async def wait_for_leader(self, key: str, timeout: float) -> None:
        """Wait (bounded) until the request leading ``key`` is done."""
        event = self._leaders.get(key)
        if event is None:
            return
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass


# -- one request's dealings with the cache ------------------------------------

@attrs.define
class Lookup:
    """What the cache said to one request, and where its answer goes."""

    cache: ResponseCache | None = None
    """None: the cache is off, or the request is not deterministic."""
    key: str = ""
    verdict: str | None = None
    """``hit``, ``miss`` or ``bypass`` (``Cache-Control: no-cache``, ``max-age=0`` or
    ``no-store``);
    None when the request is not cacheable (no ``X-Cerebrum-Cache`` header)."""
    storing: bool = False
    """False under ``no-store``: the answer is not kept either."""
    hit: CachedCompletion | None = None
    leading: bool = False

    def capture(self) -> Capture | None:
        """A capture for a stream about to be relayed, if its answer is to be kept."""
        if self.cache is None or not self.storing:
            return None
        return Capture(self.cache.max_entry_bytes)

    def store(self, entry: CachedCompletion) -> None:
        """Keep a complete answer (the caller has checked it is one)."""
        if self.cache is not None and self.storing:
            self.cache.put(self.key, entry)

    def store_stream(self, capture: Capture | None, usage: Mapping[str, Any] | None) -> None:
        """Keep a relayed stream, if it was captured whole and valid."""
        if capture is not None and capture.complete():
            self.store(CachedCompletion(bytes(capture.data), stream=True,
                                        content_type="text/event-stream", usage=usage))


@contextlib.asynccontextmanager
async def lookup(cache: ResponseCache | None, kind: str, model: str, body: Mapping[str, Any], *,
                 client: str, cache_control: str, wait_s: float) -> AsyncIterator[Lookup]:
    """One request's lookup, held for the block: a hit to replay, or the lead on its key
    (so identical requests wait for this one's answer) until the block ends.

    ``client`` is ``client_identity(...)``; ``cache_control`` the request's
    ``Cache-Control``; ``wait_s`` how long to wait for an identical request
    still generating.
    """
    if cache is None or not is_cacheable(body):
        yield Lookup()
        return
    directives = cache_control.lower()
    no_store = "no-store" in directives
    # max-age=0 is what browsers send on a reload: as no-cache, a fresh answer.
    fresh = no_store or "no-cache" in directives or _MAX_AGE_0.search(directives) is not None
    found = Lookup(cache, cache_key(kind, model, body, client=client),
                   "bypass" if fresh else "miss", storing=not no_store)
    if found.verdict == "miss":
        await cache.wait_for_leader(found.key, wait_s)
        found.hit = cache.get(found.key)
        if found.hit is not None:
            found.verdict = "hit"
    if found.hit is None:
        found.leading = cache.lead(found.key)
    try:
        yield found
    finally:
        if found.leading:
            cache.release(found.key)
