"""Forwarding one completion, as one pipeline in ``complete``: parse → prepare → cache →
relay → record.

Each step is one call out, and nothing it calls calls back: ``preparation``
(optimise and route, pure), ``response_cache.lookup`` (a hit, or the lead
on the key), ``Upstream.open`` (a backend leased from the pool for the
block), ``sse_relay`` (the stream's events, checked), and one
``CompletionRecord`` written as the request's log line.

Streams are relayed event by event as they arrive (batched only when several
arrived together), never buffered whole. Before the first byte reaches the
client a failing backend is skipped for the next (``Upstream.open``); after
it, a failure ends the stream with an SSE ``error`` event in OpenAI's error
shape and a clean close. When the client leaves, aiohttp cancels the handler
and the backend connection is closed, so the backend stops generating.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from typing import Any, Literal

import aiohttp
from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from cerebrum.bodies import read_json
from cerebrum.completion_log import CompletionRecord
from cerebrum.errors import ApiError, BadGateway, BadRequest, GatewayTimeout, ModelNotFound
from cerebrum.metrics import METRICS, route_label
from cerebrum.middlewares import REQUEST_ID_KEY, presented_key
from cerebrum.openai_wire import AnyCompletionRequest, ChatCompletionRequest, structure_request
from cerebrum.orchestrator import affinity, response_cache
from cerebrum.orchestrator.backends import Backend
from cerebrum.orchestrator.metrics import ORCHESTRATOR_METRICS
from cerebrum.orchestrator.preparation import (
    Catalogue,
    PreparedRequest,
    check_options,
    prepare_request,
    prompt_chars,
    wants_optimization,
)
from cerebrum.orchestrator.response_cache import CachedCompletion, Capture, client_identity
from cerebrum.orchestrator.sse_relay import MalformedStream
from cerebrum.orchestrator.state import ORCHESTRATOR
from cerebrum.orchestrator.token_count import counter_for, fit_to_context
from cerebrum.orchestrator.upstream import UPSTREAM, Answered, Opened, Upstream
from cerebrum.orchestrator.workspace_views import retriever_for
from cerebrum.protocol import CACHE_HEADER, PROMPT_STATS_HEADER, named_model

_LOGGER = logging.getLogger(__name__)

_PATHS = {"chat": "/v1/chat/completions", "text": "/v1/completions"}
_INLINE_PREPARE_CHARS = 16_000
# Preparing costs per message too, not just per character: 1,500 one-letter
# messages took 24 ms, so each counts as this many characters.
_MESSAGE_COST_CHARS = 64


def _new_record(kind: str) -> CompletionRecord:
    """The completion record of one request, with the orchestrator's own fields."""
    return CompletionRecord(kind, logger=_LOGGER, extra={
        "backend": None, "prompt_chars_before": None, "prompt_chars_after": None,
        "optimized": False, "cache": None, "affinity": None})


async def complete(request: web.Request, kind: Literal["chat", "text"]) -> web.StreamResponse:
    """Serve one chat or text completion: parse → prepare → cache → relay → record."""
    state = request.app[ORCHESTRATOR]
    upstream = request.app[UPSTREAM]
    record = _new_record(kind)
    try:
        body = await read_json(request, state.config.max_body_bytes)
        parsed = structure_request(body, kind)
        record.requested(parsed.model, parsed.stream)
        pinned = _pinned_session(request, body)
        prepared = await prepare_and_fit(request, body, parsed)
        record.model = prepared.model
        record.note(prompt_chars_before=prepared.prompt_chars_before,
                    prompt_chars_after=prepared.prompt_chars_after,
                    optimized=prepared.optimized)
        request.app[ORCHESTRATOR_METRICS].optimized(prepared.report)
        headers = _stats_header(prepared)
        async with response_cache.lookup(
                state.cache, kind, prepared.model or "", prepared.body,
                client=client_identity(presented_key(request), shared=state.config.cache_shared),
                cache_control=request.headers.get("Cache-Control", ""),
                wait_s=state.config.read_timeout_s) as cached:
            if cached.verdict is not None:
                headers[CACHE_HEADER] = cached.verdict
                record.note(cache=cached.verdict)
            if cached.hit is not None:
                return await _replay(request, cached.hit, record, headers)
            # Keyed on the body as forwarded: what the backend's cache will hold.
            candidates, route = affinity.plan(state.affinity, state.pool.candidates(prepared.model),
                                              kind, prepared.body, pinned)
            payload = json.dumps(prepared.body, ensure_ascii=False).encode()
            async with upstream.open(_PATHS[kind], payload, prepared.model, stream=parsed.stream,
                                     request_id=request.get(REQUEST_ID_KEY),
                                     candidates=candidates) as (backend, reply):
                outcome = state.affinity.served(route, backend.url)
                record.note(backend=backend.name,
                            affinity=outcome.value if outcome is not None else None)
                request.app[ORCHESTRATOR_METRICS].backend_requests.labels(backend.name).inc()
                if isinstance(reply, Answered):
                    if reply.status == 200:
                        cached.store(CachedCompletion(reply.body, stream=False,
                                                      content_type=reply.content_type,
                                                      usage=reply.usage))
                    return _pass_through(reply, record, headers)
                capture = cached.capture()
                sse = await _relay(request, backend, reply, record, headers, capture)
                if record.outcome == "ok":
                    cached.store_stream(capture, reply.parser.usage)
                return sse
    except ApiError as exc:
        record.status = exc.status
        record.outcome = exc.code or exc.error_type
        raise
    except asyncio.CancelledError:
        if record.outcome != "ok":  # gone after the whole answer is not a disconnect
            record.outcome = "client_disconnected"
        raise
    finally:
        # Written just after the response is finished rather than before its
        # last bytes leave: formatting a log line costs as much as the rest of
        # a short request. call_soon copies the context, so the line still
        # carries the request id.
        asyncio.get_running_loop().call_soon(record.write, request.app[METRICS],
                                             route_label(request))


async def prepare_and_fit(request: web.Request, body: Any, parsed: AnyCompletionRequest, *,
                          optimize: bool | None = None) -> PreparedRequest:
    """``preparation.prepare_request`` for this request (the model checked first; off the
    event loop when the prompt is large), then fitted to the context by the backend's
    own token count.

    ``optimize`` overrides the configured default and the request's opt-out.
    """
    check_options(body)
    state = request.app[ORCHESTRATOR]
    upstream = request.app[UPSTREAM]
    await _check_model(upstream, parsed.model)
    catalogue = Catalogue(state.pool.contexts(), state.pool.default_model(),
                          state.language_models)
    retriever = retriever_for(request, body)
    call = functools.partial(
        prepare_request, body, parsed, catalogue=catalogue, retriever=retriever,
        optimize=(optimize if optimize is not None
                  else wants_optimization(state.config.optimize, request.headers, body)))
    messages = len(parsed.messages) if isinstance(parsed, ChatCompletionRequest) else 1
    if prompt_chars(parsed) + messages * _MESSAGE_COST_CHARS < _INLINE_PREPARE_CHARS \
            and retriever is None:
        # Small prompts take microseconds; a thread hop would cost more.
        prepared = call()
    else:
        # A 100 KB prompt takes tens of milliseconds (more on a Pi): keep the loop
        # free for the streams already running.
        prepared = await asyncio.get_running_loop().run_in_executor(None, call)

    async def again(shrink: int) -> PreparedRequest:
        return await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(call, shrink_tokens=shrink))

    # Counted by the model's own tokenizer where the backend can tell (POST /tokenize).
    return await fit_to_context(counter_for(state.pool), upstream, prepared,
                                request.get(REQUEST_ID_KEY), again)


async def _check_model(upstream: Upstream, model: str | None) -> None:
    """Raise ModelNotFound for a model no backend serves, reading the lists again first
    when they may be out of date."""
    pool = upstream.pool
    named = named_model(model)
    if named is not None:
        if pool.is_known(named) is not True:
            await upstream.refresh_models()
        if pool.is_known(named) is False:
            raise ModelNotFound(f"the model '{model}' is not served by any backend",
                                param="model")
    elif all(backend.models is None for backend in pool.backends):
        # Routing needs some list; wait only when none is known at all (just
        # started), not on every request while one backend stays down.
        await upstream.refresh_models()


def _pinned_session(request: web.Request, body: Any) -> str | None:
    """The client's ``X-Cerebrum-Session`` (or ``"cerebrum": {"session": ...}``), if any."""
    try:
        return affinity.session_of(request.headers, body if isinstance(body, dict) else {})
    except affinity.InvalidSession as exc:
        raise BadRequest(str(exc), param=exc.param) from None


def _stats_header(prepared: PreparedRequest) -> dict[str, str]:
    if prepared.stats is None:
        return {}
    return {PROMPT_STATS_HEADER: json.dumps(prepared.stats, separators=(",", ":"))}


def _pass_through(reply: Answered, record: CompletionRecord,
                  headers: dict[str, str]) -> web.Response:
    record.status = reply.status
    record.take_usage(reply.usage)
    record.outcome = "ok" if reply.status < 400 else f"backend_{reply.status}"
    record.mark_first_byte()
    return web.Response(body=reply.body, status=reply.status,
                        headers={"Content-Type": reply.content_type, **headers})


async def _relay(request: web.Request, backend: Backend, opened: Opened,
                 record: CompletionRecord, headers: dict[str, str],
                 capture: Capture | None = None) -> EventSourceResponse:
    response, parser = opened.response, opened.parser
    try:
        async with sse_response(request, allow_all_methods=True, headers=headers) as sse:
            try:
                await _relay_events(sse, backend, opened, record, capture)
            except ConnectionResetError:
                # The client went away between two writes.
                record.outcome = "client_disconnected"
            except Exception:
                # A bug past the first bytes: no JSON error can replace the stream, so
                # it ends with an error event (and no [DONE]) that the client can read.
                _LOGGER.exception("relaying the stream failed part way")
                record.outcome = "error"
                await ApiError("internal server error").send_as_event(sse)
        return sse
    finally:
        # Closing (not releasing) an unfinished response drops the connection,
        # which is how the backend learns the client is gone.
        record.take_usage(parser.usage)
        if record.outcome == "ok":
            response.release()
        else:
            response.close()


async def _relay_events(sse: EventSourceResponse, backend: Backend, opened: Opened,
                        record: CompletionRecord, capture: Capture | None) -> None:
    response, parser = opened.response, opened.parser
    await sse.write(opened.first)
    if capture is not None:
        capture.add(opened.first)
    record.mark_first_byte()
    error: ApiError | None = None
    # The answer is complete at [DONE]: finish then rather than wait for the
    # backend's end of stream, which a client that has what it wanted may not
    # stay for.
    while not parser.done:
        try:
            data = await response.content.readany()
            if not data:
                parser.finish()
                # A clean end without [DONE]: the backend died between two
                # events. The client must not take a cut answer for a whole one.
                error = BadGateway(f"backend {backend.name} ended the stream before it was "
                                   "complete")
                break
            batch = parser.feed(data)
        except TimeoutError:
            error = GatewayTimeout(f"backend {backend.name} stopped answering mid-stream")
            break
        except (aiohttp.ClientError, MalformedStream) as exc:
            error = BadGateway(f"backend {backend.name} failed mid-stream ({type(exc).__name__})")
            break
        if batch is not None:
            await sse.write(batch.raw)
            if capture is not None:
                capture.add(batch.raw)
    if error is not None:
        backend.breaker.record_failure()
        record.outcome = "backend_failed_midstream"
        _LOGGER.warning("%s", error.message, extra={"backend": backend.name})
        await error.send_as_event(sse)
    elif parser.error is not None:
        record.outcome = "backend_error_event"
    else:
        record.outcome = "ok"


async def _replay(request: web.Request, hit: CachedCompletion, record: CompletionRecord,
                  headers: dict[str, str]) -> web.StreamResponse:
    """Answer from the cache exactly as the backend answered the first time."""
    record.note(backend="cache")
    record.take_usage(hit.usage)
    record.count_tokens = False  # generated once already, and counted then
    record.mark_first_byte()
    record.outcome = "ok"
    if not hit.stream:
        return web.Response(body=hit.body, headers={"Content-Type": hit.content_type, **headers})
    async with sse_response(request, allow_all_methods=True, headers=headers) as sse:
        await sse.write(hit.body)
    return sse
