"""Prefix affinity: send a conversation's next turn to the backend that still holds its history.

A chat client re-sends the whole conversation every turn. The backend that
served the previous turn still has that history in its KV cache and only has
to prefill the new messages; any other backend prefills all of it again (a
1,000-token history: ~2.4 s on SmolLM2-135M with 2 threads, tens of seconds on
a 7B model). So the orchestrator remembers, per backend, fingerprints of the
prompts it sent there and routes each request to the healthy backend holding
the longest prefix of it. Pure: plain data in, a decision out, no I/O.

**Fingerprints** (``prefix_keys``) are taken on the body actually forwarded
(after prompt optimisation), chained so each covers everything before it:

* chat: one per message boundary, a 16-byte BLAKE2b of the model, the
  ``tools``, and every message up to and including this one. Leading
  ``system``/``developer`` messages alone are no fingerprint: many
  conversations share a system prompt, and matching on it would pile every
  new conversation onto the first backend that saw it.
* text completions: one per ``BLOCK_CHARS`` characters of the prompt.

At most ``MAX_BOUNDARIES`` per request: a longer conversation still matches,
on its first ``MAX_BOUNDARIES`` messages (or blocks).

**Memory** is bounded: each backend keeps its ``max_prefixes`` most recently
sent fingerprints (LRU; one entry is a 16-byte key in an ordered dict, about
150 bytes, so the default 4096 is ~0.6 MB per backend), and pinned sessions
are an LRU of ``max_sessions`` names. A fingerprint can outlive the backend's
own cache: then the request pays the cold prefill it would have paid anywhere.

**The choice** among the candidates whose circuit lets a request through:

1. a pinned session (``X-Cerebrum-Session`` header or ``"cerebrum":
   {"session": ...}``) goes to the backend that served it last;
2. else the backend holding the longest matching prefix (in characters);
3. unless that backend has ``max_imbalance`` or more requests in flight than
   the least busy candidate: then it is skipped (an *override*), so one hot
   conversation cannot overload one VPS;
4. a conversation held nowhere (a *miss*) goes to the least busy candidate,
   ties going to the one that was given a new conversation longest ago, so
   new conversations spread over the backends.

The others follow in the pool's order as failover: a backend that is down or
whose circuit is open is not a candidate, so its conversations move at once
and pay one cold prefill; the backend that serves a request is the one that
holds it from then on (``served``).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from cerebrum.orchestrator.backends import Backend
from cerebrum.protocol import SESSION_HEADER

SESSION_FIELD = "session"
"""The same, as the body field ``"cerebrum": {"session": "..."}`` (never forwarded)."""
MAX_SESSION_CHARS = 128

BLOCK_CHARS = 512
"""Text prompts are fingerprinted every this many characters (~128 tokens)."""
MAX_BOUNDARIES = 128
"""Fingerprints per request at most (messages, or text blocks)."""

_LEADING_ROLES = ("system", "developer")


class Balancing(enum.Enum):
    """How a backend is chosen among the healthy ones (``CEREBRUM_BALANCING``)."""

    AFFINITY = "affinity"
    """Prefix affinity (this module), the default."""
    LEAST_BUSY = "least-busy"
    """Fewest requests in flight, ties to the earlier URL: no memory of conversations."""
    ROUND_ROBIN = "round-robin"
    """Each request to the next healthy backend in turn: a baseline, and for stateless backends."""

    @classmethod
    def _missing_(cls, value: object) -> Balancing | None:
        # Settings are forgiving about case and spaces: " Least-Busy " is least-busy.
        if isinstance(value, str):
            for member in cls:
                if member.value == value.strip().lower():
                    return member
        return None


class Outcome(enum.Enum):
    """What affinity did for one served request (counted in ``AffinityStats``)."""

    HIT = "hit"
    """Served by the backend that held its longest prefix (or its pinned session)."""
    MISS = "miss"
    """No backend held any prefix of it: a new conversation (or nothing to fingerprint)."""
    OVERRIDE = "override"
    """A backend held it but was too busy, so another served it."""
    FAILOVER = "failover"
    """A backend held it but was down, refused by its circuit, or failed the attempt."""


class InvalidSession(ValueError):
    """The session id is not a short printable string; ``param`` names where it came from."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@attrs.frozen
class PrefixKey:
    """A fingerprint of the prompt up to one boundary, and how many characters it covers."""

    digest: bytes
    chars: int


@attrs.frozen
class Load:
    """What the choice needs to know about one candidate backend."""

    name: str
    in_flight: int
    healthy: bool
    """Its circuit would let a request through now."""


@attrs.frozen
class Route:
    """The decision for one request: the backends to try, in order, and why."""

    order: tuple[str, ...]
    keys: tuple[PrefixKey, ...] = ()
    session: str | None = None
    holder: str | None = None
    """The healthy backend that held the longest prefix (or the session), if any."""
    outcome: Outcome | None = None
    """The expected outcome if the first backend serves it; None when affinity is off."""
    matched_chars: int = 0


@attrs.define
class AffinityStats:
    """Counters read by ``/metrics``."""

    hits: int = 0
    misses: int = 0
    overrides: int = 0
    failovers: int = 0


_COUNTERS = {Outcome.HIT: "hits", Outcome.MISS: "misses", Outcome.OVERRIDE: "overrides",
             Outcome.FAILOVER: "failovers"}


def session_of(headers: Mapping[str, str], body: Mapping[str, Any]) -> str | None:
    """The pinned session id from the header (first) or the body's ``cerebrum`` options.

    Raises InvalidSession for a value that is not 1-128 printable characters.
    """
    value = headers.get(SESSION_HEADER)
    param = SESSION_HEADER
    if value is None:
        options = body.get("cerebrum")
        if not isinstance(options, Mapping) or options.get(SESSION_FIELD) is None:
            return None
        value, param = options[SESSION_FIELD], f"cerebrum.{SESSION_FIELD}"
    if not isinstance(value, str):
        raise InvalidSession(f"'{param}' must be a string", param)
    value = value.strip()
    if not 0 < len(value) <= MAX_SESSION_CHARS or not value.isprintable():
        raise InvalidSession(f"'{param}' must be 1 to {MAX_SESSION_CHARS} printable characters",
                             param)
    return value


def prefix_keys(kind: str, body: Mapping[str, Any]) -> tuple[PrefixKey, ...]:
    """The fingerprints of a forwarded body at each boundary, shortest first (see the module
    docstring); empty when nothing identifies a conversation."""
    hasher = hashlib.blake2b(digest_size=16)
    model = body.get("model")
    _feed(hasher, kind.encode(), (model if isinstance(model, str) else "").encode())
    if body.get("tools") is not None:
        _feed(hasher, _canonical(body["tools"]))
    keys: list[PrefixKey] = []
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list):
            return ()
        chars = 0
        identified = False
        for message in messages:
            if len(keys) >= MAX_BOUNDARIES:
                break
            if not isinstance(message, Mapping):
                return tuple(keys)
            content = message.get("content")
            text = content if isinstance(content, str) else _canonical(content).decode()
            rest = {k: v for k, v in message.items() if k != "content"}
            _feed(hasher, _canonical(rest), text.encode("utf-8", "surrogatepass"))
            chars += len(text)
            identified = identified or message.get("role") not in _LEADING_ROLES
            if identified:
                keys.append(PrefixKey(hasher.digest(), chars))
        return tuple(keys)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        return ()
    for start in range(0, min(len(prompt), BLOCK_CHARS * MAX_BOUNDARIES), BLOCK_CHARS):
        block = prompt[start:start + BLOCK_CHARS]
        if len(block) < BLOCK_CHARS:
            break  # a partial block would never match the next, longer prompt's
        hasher.update(block.encode("utf-8", "surrogatepass"))
        keys.append(PrefixKey(hasher.digest(), start + BLOCK_CHARS))
    return tuple(keys)


def _feed(hasher: Any, *parts: bytes) -> None:
    # Length-prefixed, so ("ab", "c") and ("a", "bc") never hash alike.
    for part in parts:
        hasher.update(len(part).to_bytes(8, "little"))
        hasher.update(part)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      default=str).encode("utf-8", "surrogatepass")


class PrefixAffinity:
    """Per backend, the fingerprints recently sent there; per pinned session, its backend."""

    def __init__(self, *, balancing: Balancing = Balancing.AFFINITY, max_prefixes: int = 4096,
                 max_sessions: int = 4096, max_imbalance: int = 2) -> None:
        if max_prefixes < 1 or max_sessions < 1 or max_imbalance < 1:
            raise ValueError("max_prefixes, max_sessions and max_imbalance must be >= 1")
        self.balancing = balancing
        self.max_prefixes = max_prefixes
        self.max_sessions = max_sessions
        self.max_imbalance = max_imbalance
        self.stats = AffinityStats()
        self._prefixes: dict[str, OrderedDict[bytes, None]] = {}
        self._sessions: OrderedDict[str, str] = OrderedDict()
        self._placed: dict[str, int] = {}
        """Backend → the sequence number of the last new conversation placed there."""
        self._placements = 0
        self._turn = 0

    def choose(self, loads: Sequence[Load], keys: Sequence[PrefixKey] = (),
               session: str | None = None) -> Route:
        """The order to try the backends in (``loads`` in the pool's order of preference:
        healthy first, then least busy). Unhealthy backends stay at the end, as the pool
        puts them, so the caller still learns how long their circuits refuse."""
        healthy = [load for load in loads if load.healthy]
        unhealthy = tuple(load.name for load in loads if not load.healthy)
        if not healthy:
            return Route(tuple(load.name for load in loads), tuple(keys), session)
        if self.balancing is Balancing.LEAST_BUSY:
            return Route(tuple(load.name for load in loads), tuple(keys), session)
        if self.balancing is Balancing.ROUND_ROBIN:
            self._turn += 1
            start = self._turn % len(healthy)
            turn = healthy[start:] + healthy[:start]
            return Route(tuple(load.name for load in turn) + unhealthy, tuple(keys), session)
        least = min(load.in_flight for load in healthy)
        holder, matched = self._holder(healthy, keys, session)
        if holder is not None and holder.in_flight - least < self.max_imbalance:
            first, outcome = holder, Outcome.HIT
        else:
            outcome = Outcome.MISS if holder is None else Outcome.OVERRIDE
            if holder is None and self._held_by_any(unhealthy, keys, session):
                outcome = Outcome.FAILOVER
            # Least busy; among equals, the one given a new conversation longest ago.
            first = min(healthy, key=lambda c: (c.in_flight, self._placed.get(c.name, -1)))
        order = (first.name,) + tuple(c.name for c in healthy if c is not first) + unhealthy
        return Route(order, tuple(keys), session, holder.name if holder else None, outcome,
                     matched)

    def served(self, route: Route, backend: str) -> Outcome | None:
        """Note that ``backend`` served the request routed by ``route``: it now holds the
        request's prefixes (and session). Returns the outcome, as counted (None when
        affinity is off)."""
        outcome = route.outcome
        if outcome is None:
            return None
        if outcome is Outcome.HIT and backend != route.holder:
            outcome = Outcome.FAILOVER  # the holder failed the attempt; the next one served it
        elif outcome is not Outcome.HIT:
            self._placements += 1
            self._placed[backend] = self._placements
        counter = _COUNTERS[outcome]
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        record = self._prefixes.setdefault(backend, OrderedDict())
        for key in route.keys:
            record[key.digest] = None
            record.move_to_end(key.digest)
        while len(record) > self.max_prefixes:
            record.popitem(last=False)
        if route.session is not None:
            self._sessions[route.session] = backend
            self._sessions.move_to_end(route.session)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return outcome

    def forget(self, backend: str) -> None:
        """The backend went down (its circuit opened): whatever it cached is presumed lost."""
        self._prefixes.pop(backend, None)
        for session in [s for s, b in self._sessions.items() if b == backend]:
            del self._sessions[session]

    def pinned(self, session: str) -> str | None:
        """The backend a session is pinned to, if it is remembered."""
        return self._sessions.get(session)

    def prefixes_held(self, backend: str) -> int:
        """How many fingerprints are remembered for ``backend``."""
        return len(self._prefixes.get(backend, ()))

    # -- internals ----------------------------------------------------------

    def _holder(self, healthy: Sequence[Load], keys: Sequence[PrefixKey],
                session: str | None) -> tuple[Load | None, int]:
        if session is not None:
            pinned = self._sessions.get(session)
            for load in healthy:
                if load.name == pinned:
                    return load, keys[-1].chars if keys else 0
        best: Load | None = None
        best_chars = 0
        for load in healthy:
            chars = self.held(load.name, keys)
            # Strictly longer wins; on a tie the earlier (less busy) candidate stays.
            if chars > best_chars:
                best, best_chars = load, chars
        return best, best_chars

    def held(self, backend: str, keys: Sequence[PrefixKey]) -> int:
        """The characters of the longest of ``keys`` remembered for ``backend`` (0: none)."""
        record = self._prefixes.get(backend)
        if not record:
            return 0
        for key in reversed(keys):
            if key.digest in record:
                return key.chars
        return 0

    def _held_by_any(self, backends: Sequence[str], keys: Sequence[PrefixKey],
                     session: str | None) -> bool:
        if session is not None and self._sessions.get(session) in backends:
            return True
        return any(self.held(name, keys) for name in backends)


def plan(affinity: PrefixAffinity, candidates: Sequence[Backend], kind: str,
         body: Mapping[str, Any], session: str | None) -> tuple[list[Backend], Route]:
    """The pool's candidates for a request, reordered by ``affinity``; with the route to
    hand back to ``PrefixAffinity.served``."""
    # Keyed by URL, which the configuration keeps unique (two backends may share a host).
    by_url = {backend.url: backend for backend in candidates}
    keys = prefix_keys(kind, body) if affinity.balancing is Balancing.AFFINITY else ()
    route = affinity.choose([Load(b.url, b.in_flight, b.breaker.would_allow())
                             for b in candidates], keys, session)
    return [by_url[url] for url in route.order], route
