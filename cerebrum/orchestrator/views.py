"""HTTP handlers of the orchestrator: thin, parse → call → respond."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from cerebrum.bodies import read_json
from cerebrum.errors import BadRequest, ModelNotFound
from cerebrum.middlewares import REQUEST_ID_KEY
from cerebrum.openai_wire import (
    AnyCompletionRequest,
    ChatCompletionRequest,
    structure_embedding_request,
    structure_request,
)
from cerebrum.orchestrator import proxy
from cerebrum.orchestrator.breaker import BreakerState
from cerebrum.orchestrator.state import ORCHESTRATOR
from cerebrum.orchestrator.upstream import UPSTREAM
from cerebrum.protocol import ROUTING_ALIASES, named_model


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions``: forwarded to a backend, streamed or whole."""
    return await proxy.complete(request, "chat")


async def completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/completions``: forwarded to a backend, streamed or whole."""
    return await proxy.complete(request, "text")


async def optimize(request: web.Request) -> web.Response:
    """``POST /v1/optimize``: a dry run of prompt preparation, nothing is generated.

    Body: ``{"prompt": "..."}`` or ``{"messages": [...]}``, optional ``model``
    and ``max_tokens``. Answer: the text that would be sent, its language, the
    model it would go to, and the optimiser's figures.
    """
    state = request.app[ORCHESTRATOR]
    body = await read_json(request, state.config.max_body_bytes)
    if not isinstance(body, dict) or ("prompt" in body) == ("messages" in body):
        raise BadRequest("send either 'prompt' (a string) or 'messages' (a list)")
    parsed = structure_request(body, "chat" if "messages" in body else "text")
    prepared = await proxy.prepare_and_fit(request, body, parsed, optimize=True)
    answer: dict[str, Any] = {
        "prompt": prepared.prompt if prepared.prompt is not None else _original_text(parsed),
        "language": prepared.language or "text",
        "model": prepared.model,
        "stats": prepared.stats,  # optimize=True: always a report, also on a failure
    }
    if isinstance(parsed, ChatCompletionRequest):
        answer["messages"] = prepared.body["messages"]
    if prepared.retrieval is not None:
        answer["retrieval"] = prepared.retrieval
    return web.json_response(answer)


def _original_text(parsed: AnyCompletionRequest) -> str:
    if isinstance(parsed, ChatCompletionRequest):
        return max((m.content for m in parsed.messages if m.role == "user"), key=len, default="")
    return parsed.prompt


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: the union of the backends' models, then the routing aliases."""
    pool = request.app[ORCHESTRATOR].pool
    if pool.lists_pending():
        # Just started, or a backend never answered: ask now rather than show a partial list.
        await request.app[UPSTREAM].refresh_models()
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
        "in_flight": state.concurrency.count,
        "max_concurrent": state.concurrency.limit,
        "uptime_s": round(time.monotonic() - state.started, 1),
        "backends": backends,
    })


async def get_model(request: web.Request) -> web.Response:
    """``GET /v1/models/{id}``: one entry of the list (a backend's model or an alias)."""
    listed = json.loads((await list_models(request)).body)  # type: ignore[arg-type]
    name = request.match_info["model"]
    for entry in listed["data"]:
        if entry.get("id") == name:
            return web.json_response(entry)
    raise ModelNotFound(f"the model {name!r} is not served by any backend", param="model")


async def embeddings(request: web.Request) -> web.Response:
    """``POST /v1/embeddings``: checked as the backend would, then forwarded unchanged."""
    body = await read_json(request, request.app[ORCHESTRATOR].config.max_body_bytes)
    parsed = structure_embedding_request(body)
    reply = await request.app[UPSTREAM].fetch(
        "/v1/embeddings", json.dumps(body, ensure_ascii=False).encode(), named_model(parsed.model),
        expect="data", request_id=request.get(REQUEST_ID_KEY))
    return web.Response(body=reply.body, status=reply.status,
                        headers={"Content-Type": reply.content_type})
