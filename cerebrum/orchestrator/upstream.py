"""Talking to the backends: the one shared client session, and one attempt at a backend.

``open_upstream`` walks the pool's candidates for a model, best first. An
attempt has failed (and the next backend is tried) if it could not connect,
timed out, got a 5xx, or, for a stream, ended or garbled before its first
event: up to that point nothing has reached the client, so failing over is
invisible to it. Every verdict goes to the backend's breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
import attrs
from aiohttp import web

from cerebrum.errors import ApiError, BadGateway, GatewayTimeout, ModelNotFound, Unavailable
from cerebrum.middlewares import REQUEST_ID_HEADER
from cerebrum.orchestrator.backends import Backend, BackendPool
from cerebrum.orchestrator.breaker import CircuitOpenError
from cerebrum.orchestrator.sse_relay import MalformedStream, SseRelayParser
from cerebrum.orchestrator.state import ORCHESTRATOR

_LOGGER = logging.getLogger(__name__)

UPSTREAM_SESSION = web.AppKey("upstream_session", aiohttp.ClientSession)

# An error body from a failing backend is read only this far: enough to log it.
_ERROR_BODY_LIMIT = 64 * 1024
# /v1/models is small and cheap; do not let a hung backend hold the refresher.
_MODELS_TIMEOUT_S = 10.0


def upstream_headers(api_key: str | None, request_id: str | None) -> dict[str, str]:
    """Headers for a backend request: JSON, correlation, and the key in both common spellings
    (``X-API-Key`` for this project's backend, ``Authorization: Bearer`` for llama-server,
    vLLM and Ollama)."""
    headers = {"Content-Type": "application/json"}
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    if api_key:
        headers["X-API-Key"] = api_key
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


async def upstream_session(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the one pooled ClientSession, and the model-list refresher."""
    state = app[ORCHESTRATOR]
    config = state.config
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout_s,
                                    sock_read=config.read_timeout_s)
    # Keep-alive connections to a handful of backends; the limit is a safety net,
    # load shedding keeps the real number far lower.
    connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     auto_decompress=False) as session:
        app[UPSTREAM_SESSION] = session
        refresher = asyncio.create_task(
            state.pool.run_refresher(session, upstream_headers(config.api_key, None),
                                     models_timeout(config), config.models_refresh_s),
            name="models-refresher")
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher


def models_timeout(config: Any) -> aiohttp.ClientTimeout:
    """The timeout of one ``/v1/models`` read."""
    return aiohttp.ClientTimeout(total=_MODELS_TIMEOUT_S, sock_connect=config.connect_timeout_s)


# -- one attempt ---------------------------------------------------------------

@attrs.define
class Answered:
    """A whole answer: a non-streamed completion, or any 4xx, to pass through."""

    status: int
    body: bytes
    content_type: str
    usage: dict[str, Any] | None = None


@attrs.define
class Opened:
    """A stream whose first event has arrived; the rest is still to read."""

    response: aiohttp.ClientResponse
    parser: SseRelayParser
    first: bytes


Reply = Answered | Opened


class UpstreamFailure(Exception):
    """One backend failed before anything reached the client."""

    def __init__(self, error: ApiError, *, breaker_failure: bool = True) -> None:
        super().__init__(error.message)
        self.error = error
        self.breaker_failure = breaker_failure
        """False when the backend answered but is busy (503): alive, so not a breaker failure."""


async def _attempt(session: aiohttp.ClientSession, backend: Backend, path: str, payload: bytes,
                   headers: Mapping[str, str], *, stream: bool, max_body: int) -> Reply:
    name = backend.name
    try:
        response = await session.post(backend.url + path, data=payload, headers=headers)
    except TimeoutError:
        raise UpstreamFailure(GatewayTimeout(f"backend {name} did not answer in time")) from None
    except aiohttp.ClientError as exc:
        raise UpstreamFailure(Unavailable(f"backend {name} is unreachable ({type(exc).__name__})",
                                          code="backend_unreachable")) from None
    try:
        return await _read_reply(response, name, stream=stream, max_body=max_body)
    except UpstreamFailure:
        response.close()
        raise
    except TimeoutError:
        response.close()
        raise UpstreamFailure(GatewayTimeout(f"backend {name} stopped answering")) from None
    except aiohttp.ClientError as exc:
        response.close()
        raise UpstreamFailure(BadGateway(
            f"backend {name} dropped the connection ({type(exc).__name__})")) from None
    except MalformedStream as exc:
        response.close()
        raise UpstreamFailure(
            BadGateway(f"backend {name} sent a malformed stream: {exc}")) from None
    except BaseException:
        response.close()  # cancelled: the client left; the backend must stop too
        raise


async def _read_reply(response: aiohttp.ClientResponse, name: str, *, stream: bool,
                      max_body: int) -> Reply:
    status = response.status
    if status >= 500:
        detail = await response.content.read(_ERROR_BODY_LIMIT)
        message = _error_message(detail)
        if status == 503:
            # The backend is alive and says it is busy (queue full, CPU, RAM):
            # try another, but do not count it towards opening the circuit.
            retry_after = _retry_after(response.headers.get("Retry-After"))
            raise UpstreamFailure(Unavailable(f"backend {name} is busy: {message}",
                                              retry_after=retry_after, code="backend_busy"),
                                  breaker_failure=False)
        raise UpstreamFailure(BadGateway(f"backend {name} failed with HTTP {status}: {message}"))
    content_type = response.headers.get("Content-Type", "application/json")
    if status >= 400 or not stream or not content_type.startswith("text/event-stream"):
        body = await response.content.read(max_body + 1)
        if len(body) > max_body:
            raise UpstreamFailure(
                BadGateway(f"backend {name} sent an answer over {max_body} bytes"))
        usage = None
        if status == 200:
            try:
                decoded = json.loads(body)
            except ValueError:
                raise MalformedStream("a completion that is not JSON") from None
            if isinstance(decoded, dict) and isinstance(decoded.get("usage"), dict):
                usage = decoded["usage"]
        response.release()
        return Answered(status, body, content_type, usage)
    parser = SseRelayParser()
    while True:
        data = await response.content.readany()
        if not data:
            parser.finish()
            raise UpstreamFailure(BadGateway(f"backend {name} ended the stream before any event"))
        batch = parser.feed(data)
        # Keep-alive comments before the first event are dropped: relaying one
        # would commit this backend before it has produced anything.
        if batch is not None and batch.has_data:
            return Opened(response, parser, batch.raw)


def _error_message(body: bytes) -> str:
    try:
        decoded = json.loads(body)
        message = decoded["error"]["message"]
        if isinstance(message, str):
            return message[:300]
    except (ValueError, KeyError, TypeError):
        pass
    return body[:300].decode("utf-8", "replace") or "no details"


def _retry_after(value: str | None) -> float:
    try:
        return max(1.0, float(value or 1))
    except ValueError:
        return 1.0


# -- walking the candidates --------------------------------------------------------

async def open_upstream(pool: BackendPool, session: aiohttp.ClientSession, path: str,
                        payload: bytes, headers: Mapping[str, str], model: str | None, *,
                        stream: bool, max_body: int,
                        candidates: Sequence[Backend] | None = None) -> tuple[Backend, Reply]:
    """Get an answer (or the start of one) from the first backend that gives one.

    ``candidates`` is the order to try them in (default: ``pool.candidates(model)``;
    the proxy passes that list reordered by prefix affinity). On return the
    backend's ``in_flight`` has been incremented: the caller decrements it when it
    has finished with the reply.
    """
    last: tuple[Backend, ApiError] | None = None
    waits: list[float] = []
    if candidates is None:
        candidates = pool.candidates(model)
    if not candidates:
        raise ModelNotFound(f"no backend serves the model '{model}'", param="model")
    for backend in candidates:
        try:
            backend.breaker.before_request()
        except CircuitOpenError as exc:
            waits.append(exc.retry_after)
            continue
        backend.in_flight += 1
        try:
            reply = await _attempt(session, backend, path, payload, headers, stream=stream,
                                   max_body=max_body)
        except UpstreamFailure as failure:
            backend.in_flight -= 1
            if failure.breaker_failure:
                backend.breaker.record_failure()
            else:
                backend.breaker.record_success()
                backend.touch()
            _LOGGER.warning("backend %s failed: %s", backend.name, failure.error.message,
                            extra={"backend": backend.name})
            last = (backend, failure.error)
            continue
        except BaseException:
            backend.in_flight -= 1
            backend.breaker.record_abandoned()
            raise
        backend.breaker.record_success()
        backend.touch()
        return backend, reply
    if last is None:
        raise Unavailable(
            f"every backend for '{model or 'the default model'}' is failing; "
            "its circuit is open", retry_after=min(waits), code="circuit_open")
    backend, error = last
    if isinstance(error, Unavailable) and error.code == "backend_unreachable":
        # Tell the client when trying again can help: after the cooldown if
        # this failure has just opened the circuit.
        error = Unavailable(error.message, retry_after=max(1.0, backend.breaker.retry_after()),
                            code=error.code)
    raise error
