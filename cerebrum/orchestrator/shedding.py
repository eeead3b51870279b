"""Load shedding: past ``max_concurrent`` requests in flight, refuse new ones at once.

A Pi with 4 GB and a backend that generates a couple of tokens a second gain
nothing from a queue: a fast 503 with ``Retry-After`` lets the client decide.
Health checks and metrics are never shed, so an overloaded orchestrator still
says how it is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler

from cerebrum.errors import Unavailable

_LOGGER = logging.getLogger(__name__)

NEVER_SHED = ("/health", "/metrics")
RETRY_AFTER_S = 1.0


class Concurrency:
    """How many requests are being served (``count``) and may be (``limit``), shared by the
    middleware and ``/health``; ``what`` names them in the 503."""

    def __init__(self, limit: int, what: str = "requests") -> None:
        self.limit = limit
        self.what = what
        self.count = 0


def setup_load_shedding(app: web.Application, concurrency: Concurrency, *,
                        exempt: Iterable[str] = NEVER_SHED,
                        pools: Mapping[str, Concurrency] | None = None) -> None:
    """Install the shedding middleware, counting into ``concurrency``.

    Paths in ``exempt`` take no slot. A path under one of the ``pools``'
    prefixes counts in that pool instead (the workspace uploads: indexing a
    repository must not shed the chats the main slots are for).
    """
    exempt_paths = frozenset(exempt)
    by_prefix = tuple((pools or {}).items())

    def pool_of(path: str) -> Concurrency:
        for prefix, pool in by_prefix:
            if path.startswith(prefix):
                return pool
        return concurrency

    @web.middleware
    async def shed_load(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse with 503 + Retry-After when the path's pool is full."""
        if request.path in exempt_paths:
            return await handler(request)
        pool = pool_of(request.path)
        if pool.count >= pool.limit:
            _LOGGER.warning("shedding %s %s: %d %s in flight", request.method,
                            request.path, pool.count, pool.what)
            raise Unavailable(f"the orchestrator is busy ({pool.count} {pool.what} in "
                              "flight); retry shortly", retry_after=RETRY_AFTER_S,
                              code="overloaded")
        pool.count += 1
        try:
            return await handler(request)
        finally:
            pool.count -= 1

    app.middlewares.append(shed_load)
