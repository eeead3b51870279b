"""Load shedding: past ``max_concurrent`` requests in flight, refuse new ones at once.

A Pi with 4 GB and a backend that generates a couple of tokens a second gain
nothing from a queue: a fast 503 with ``Retry-After`` lets the client decide.
Health checks and metrics are never shed, so an overloaded orchestrator still
says how it is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler

from cerebrum.errors import Unavailable

_LOGGER = logging.getLogger(__name__)

NEVER_SHED = ("/health", "/metrics")
RETRY_AFTER_S = 1.0


class Concurrency:
    """How many requests are being served (``count``) and may be (``limit``), shared by the
    middleware and ``/health``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0


def setup_load_shedding(app: web.Application, concurrency: Concurrency, *,
                        exempt: Iterable[str] = NEVER_SHED,
                        exempt_prefixes: Iterable[str] = ()) -> None:
    """Install the shedding middleware, counting into ``concurrency``.

    Paths in ``exempt``, or under one of ``exempt_prefixes``, take no slot
    (their routes may count themselves elsewhere, as the workspace uploads do).
    """
    exempt_paths = frozenset(exempt)
    prefixes = tuple(exempt_prefixes)

    @web.middleware
    async def shed_load(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse with 503 + Retry-After when ``concurrency.limit`` requests are already
        served."""
        if request.path in exempt_paths or (prefixes and request.path.startswith(prefixes)):
            return await handler(request)
        if concurrency.count >= concurrency.limit:
            _LOGGER.warning("shedding %s %s: %d requests in flight", request.method,
                            request.path, concurrency.count)
            raise Unavailable(f"the orchestrator is busy ({concurrency.count} requests in "
                              "flight); retry shortly", retry_after=RETRY_AFTER_S,
                              code="overloaded")
        concurrency.count += 1
        try:
            return await handler(request)
        finally:
            concurrency.count -= 1

    app.middlewares.append(shed_load)
