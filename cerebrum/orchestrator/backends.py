"""The backends: one per configured URL, each with its breaker, its models and its last contact.

The pool answers "which backends may serve model X, best first": those that
list the model (or whose list is not known yet), with a circuit that would let
a request through first, then the least busy. It also keeps each backend's
model list fresh by reading its ``/v1/models`` periodically; a failed read
keeps the last list, since a backend that is down for a minute still has the
same models when it returns.

A backend's model list is bounded (``ModelListLimits``): its body in bytes
and its length in models, so a hostile or broken backend cannot fill the
Pi's memory or make the public ``/health`` megabytes long. A backend whose
circuit is open is not asked for its list: it is down, and a connect that
never completes would cost every request waiting for the list its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import attrs

from cerebrum.bodies import read_at_most
from cerebrum.orchestrator.breaker import (
    BreakerState,
    CircuitBreaker,
    TransitionListener,
)

_LOGGER = logging.getLogger(__name__)

_MAX_MODEL_ID = 256
"""Longer model ids are dropped: no real one is, and each appears on ``/health``."""


@attrs.frozen
class ModelListLimits:
    """Bounds on one backend's ``/v1/models`` (``CEREBRUM_MAX_MODELS``, ``_MAX_MODELS_BYTES``)."""

    max_models: int = 256
    max_bytes: int = 1024 * 1024


def backend_name(url: str) -> str:
    """``host:port`` of a backend URL: never any ``user:password@`` part (names are public)."""
    return urlsplit(url).netloc.rpartition("@")[2]


class Backend:
    """One OpenAI-compatible server."""

    def __init__(self, url: str, breaker: CircuitBreaker,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.name = backend_name(url)
        self.breaker = breaker
        self.models: dict[str, dict[str, Any]] | None = None
        """Model id → the backend's ``/v1/models`` entry; None until first read."""
        self.in_flight = 0
        """Requests this backend holds now (``BackendPool.lease``): its load, for routing."""
        self.last_contact: float | None = None
        """Wall-clock time of the last answer from this backend (any status below 500)."""
        self._wall_clock = wall_clock
        self._models_error: str | None = None

    def has_model(self, model: str) -> bool | None:
        """True/False when the model list is known, None when it is not yet."""
        return None if self.models is None else model in self.models

    def default_model(self) -> str | None:
        """The model the backend marks as default, else its first one."""
        if not self.models:
            return None
        for model_id, entry in self.models.items():
            if entry.get("default") is True:
                return model_id
        return next(iter(self.models))

    def touch(self) -> None:
        """Note that the backend answered just now."""
        self.last_contact = self._wall_clock()

    def snapshot(self) -> dict[str, Any]:
        """This backend's state for ``/health``."""
        now = self._wall_clock()
        return {
            "name": self.name,
            "breaker": self.breaker.state.value,
            "consecutive_failures": self.breaker.consecutive_failures,
            "retry_after_s": round(self.breaker.retry_after(), 1),
            "in_flight": self.in_flight,
            "last_contact": self.last_contact,
            "last_contact_age_s": (round(now - self.last_contact, 1)
                                   if self.last_contact is not None else None),
            "models": sorted(self.models) if self.models is not None else None,
            "models_error": self._models_error,
        }

    def set_models(self, entries: Iterable[Mapping[str, Any]], max_models: int = 256) -> None:
        """Replace the model list from ``/v1/models`` ``data`` entries (the first
        ``max_models`` usable ones)."""
        models: dict[str, dict[str, Any]] = {}
        dropped = 0
        for entry in entries:
            if not (isinstance(entry, Mapping) and isinstance(entry.get("id"), str)
                    and 0 < len(entry["id"]) <= _MAX_MODEL_ID):
                continue
            if len(models) >= max_models:
                dropped += 1
                continue
            models[entry["id"]] = dict(entry)
        note = (f"lists {len(models) + dropped} models; only the first {max_models} are "
                "used (CEREBRUM_MAX_MODELS)" if dropped else None)
        if (self.models is None or models.keys() != self.models.keys()
                or self._models_error != note):
            _LOGGER.info("backend %s serves %s", self.name, ", ".join(sorted(models)) or "nothing",
                         extra={"backend": self.name})
        self.models = models
        if note is not None:
            self.models_failed(note)
        self._models_error = note
        self.touch()

    def models_failed(self, error: str) -> None:
        """Reading ``/v1/models`` failed; keep the last list."""
        if error != self._models_error:
            # Log changes only: a backend down for an hour must not log every refresh.
            _LOGGER.warning("backend %s: cannot read its models: %s", self.name, error,
                            extra={"backend": self.name})
        self._models_error = error


class BackendPool:
    """All backends, and the choice among them."""

    def __init__(self, backends: list[Backend],
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not backends:
            raise ValueError("at least one backend")
        self.backends = backends
        self.model_limits = ModelListLimits()
        """Set from the configuration when the upstream session starts."""
        self._clock = clock
        self._last_refresh = -1e9
        self._refresh_lock = asyncio.Lock()

    @classmethod
    def from_urls(cls, urls: Iterable[str], *, failure_threshold: int, cooldown_s: float,
                  clock: Callable[[], float] = time.monotonic,
                  on_transition: TransitionListener | None = None) -> BackendPool:
        """A pool with a fresh breaker per URL."""
        backends = []
        for url in urls:
            breaker = CircuitBreaker(backend_name(url), failure_threshold=failure_threshold,
                                     cooldown_s=cooldown_s, clock=clock,
                                     on_transition=on_transition)
            backends.append(Backend(url, breaker))
        return cls(backends, clock)

    def is_known(self, model: str) -> bool | None:
        """True if some backend lists the model, False if every list is known and none
        does, None if it could still be on a backend whose list is unknown."""
        answers = [backend.has_model(model) for backend in self.backends]
        if any(answers):
            return True
        return None if None in answers else False

    def candidates(self, model: str | None) -> list[Backend]:
        """Backends that may serve ``model`` (None: any), best first."""
        found = [b for b in self.backends if model is None or b.has_model(model) is not False]
        # Stable sort: configuration order breaks ties, so the first URL is preferred.
        return sorted(found, key=lambda b: (not b.breaker.would_allow(), b.in_flight))

    @contextlib.asynccontextmanager
    async def lease(self, backend: Backend) -> AsyncIterator[Backend]:
        """Hold ``backend`` for one request: counted in its ``in_flight`` (which orders
        ``candidates``) until the block ends, however it ends."""
        backend.in_flight += 1
        try:
            yield backend
        finally:
            backend.in_flight -= 1

    def default_model(self) -> str | None:
        """The model to use when a request names none: the first healthy backend's default."""
        for backend in self.candidates(None):
            model = backend.default_model()
            if model is not None:
                return model
        return None

    def contexts(self) -> dict[str, int | None]:
        """Every known model with its context size in tokens, where a backend reports it
        (``context_length`` here, ``max_model_len`` in vLLM, ``meta.n_ctx`` in llama-server)."""
        found: dict[str, int | None] = {}
        for backend in self.backends:
            for model_id, entry in (backend.models or {}).items():
                meta = entry.get("meta")
                size = entry.get("context_length", entry.get("max_model_len"))
                if size is None and isinstance(meta, dict):
                    size = meta.get("n_ctx")
                if isinstance(size, int) and not isinstance(size, bool) and size > 0:
                    found[model_id] = size
                else:
                    found.setdefault(model_id, None)
        return found

    def models(self) -> list[dict[str, Any]]:
        """The union of the backends' models, each with the backends that serve it."""
        union: dict[str, dict[str, Any]] = {}
        for backend in self.backends:
            for model_id, entry in (backend.models or {}).items():
                merged = union.setdefault(model_id, {**entry, "backends": []})
                merged["backends"].append(backend.name)
        return list(union.values())

    # -- refreshing the model lists ------------------------------------------

    async def refresh(self, session: aiohttp.ClientSession, headers: Mapping[str, str],
                      timeout: aiohttp.ClientTimeout) -> None:
        """Read every backend's ``/v1/models`` concurrently."""
        async with self._refresh_lock:
            await self._refresh_all(session, headers, timeout)

    async def refresh_if_stale(self, session: aiohttp.ClientSession,
                               headers: Mapping[str, str], timeout: aiohttp.ClientTimeout,
                               min_interval_s: float = 2.0) -> None:
        """Refresh unless that happened in the last ``min_interval_s``, so a flood of
        requests for an unknown model cannot become a flood of refreshes. Waits for a
        refresh already running (the first one at start-up) instead of starting another."""
        async with self._refresh_lock:
            if self._clock() - self._last_refresh >= min_interval_s:
                await self._refresh_all(session, headers, timeout)

    def lists_pending(self) -> bool:
        """Whether some backend's model list has never been read."""
        return any(backend.models is None for backend in self.backends)

    async def _refresh_all(self, session: aiohttp.ClientSession, headers: Mapping[str, str],
                           timeout: aiohttp.ClientTimeout) -> None:
        # An open circuit means the backend is down: asking it would only make
        # the requests waiting for this refresh wait for its connect timeout.
        await asyncio.gather(*(self._refresh_one(b, session, headers, timeout)
                               for b in self.backends
                               if b.breaker.state is not BreakerState.OPEN))
        self._last_refresh = self._clock()

    async def _refresh_one(self, backend: Backend, session: aiohttp.ClientSession,
                           headers: Mapping[str, str], timeout: aiohttp.ClientTimeout) -> None:
        try:
            async with session.get(backend.url + "/v1/models", headers=headers,
                                   timeout=timeout, allow_redirects=False) as response:
                if response.status != 200:
                    backend.models_failed(f"HTTP {response.status}")
                    return
                raw = await _read_capped(response, self.model_limits.max_bytes)
                if raw is None:
                    backend.models_failed(f"the list is over {self.model_limits.max_bytes} "
                                          "bytes (CEREBRUM_MAX_MODELS_BYTES)")
                    return
                body = json.loads(raw)
        except (aiohttp.ClientError, TimeoutError, ValueError, RecursionError) as exc:
            backend.models_failed(f"{type(exc).__name__}: {str(exc)[:200]}".rstrip(": "))
            return
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            backend.models_failed("the answer has no 'data' list")
            return
        backend.set_models(data, self.model_limits.max_models)

    async def run_refresher(self, session: aiohttp.ClientSession, headers: Mapping[str, str],
                            timeout: aiohttp.ClientTimeout, interval_s: float) -> None:
        """Refresh forever (a background task, cancelled at shutdown)."""
        while True:
            await self.refresh(session, headers, timeout)
            await asyncio.sleep(interval_s)


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or None past ``limit`` bytes (read no further: the connection closes)."""
    if response.content_length is not None and response.content_length > limit:
        return None
    body = await read_at_most(response.content, limit + 1)
    return body if len(body) <= limit else None
