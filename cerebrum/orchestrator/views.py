"""HTTP handlers of the orchestrator: thin, parse → call → respond."""

from __future__ import annotations

import time

from aiohttp import web

from cerebrum.orchestrator import proxy
from cerebrum.orchestrator.backends import ROUTING_ALIASES
from cerebrum.orchestrator.breaker import BreakerState
from cerebrum.orchestrator.state import ORCHESTRATOR


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions``: forwarded to a backend, streamed or whole."""
    return await proxy.complete(request, "chat")


async def completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/completions``: forwarded to a backend, streamed or whole."""
    return await proxy.complete(request, "text")


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: the union of the backends' models, then the routing aliases."""
    pool = request.app[ORCHESTRATOR].pool
    data = pool.models()
    for alias in ROUTING_ALIASES:
        data.append({"id": alias, "object": "model", "created": 0, "owned_by": "cerebrum",
                     "description": "the orchestrator chooses the model"})
    return web.json_response({"object": "list", "data": data})


async def health(request: web.Request) -> web.Response:
    """``GET /health`` (public): own state, and each backend's circuit and last contact."""
    state = request.app[ORCHESTRATOR]
    backends = [backend.snapshot() for backend in state.pool.backends]
    closed = sum(b["breaker"] == BreakerState.CLOSED.value for b in backends)
    status = "ok" if closed == len(backends) else "degraded" if closed else "unavailable"
    return web.json_response({
        "status": status,
        "in_flight": state.in_flight.count,
        "max_concurrent": state.in_flight.limit,
        "uptime_s": round(time.monotonic() - state.started, 1),
        "backends": backends,
    })
