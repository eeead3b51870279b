"""Talking to the backends: ``Upstream``, the one shared client, and one attempt at a backend.

``Upstream.open`` walks the pool's candidates for a model, best first. An
attempt has failed (and the next backend is tried) if it could not connect,
timed out, got a 5xx, or, for a stream, ended or garbled before its first
event: up to that point nothing has reached the client, so failing over is
invisible to it. Every verdict goes to the backend's breaker.

Everything a backend sends is bounded (it may be hostile, or a stranger's
server on the path): a whole answer is read to its end but never past
``max_upstream_body_bytes``, whatever its framing and however many TCP
segments it arrives in (a tunnel delivers it 1,400 bytes at a time); a
stream's events are bounded in size and in the time between real events.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
import attrs
from aiohttp import web

from cerebrum.bodies import read_at_most
from cerebrum.completion_log import token_counts
from cerebrum.errors import (
    ApiError,
    BadGateway,
    BadRequest,
    GatewayTimeout,
    ModelNotFound,
    Unavailable,
)
from cerebrum.orchestrator.backends import Backend, BackendPool, ModelListLimits
from cerebrum.orchestrator.breaker import CircuitOpenError
from cerebrum.orchestrator.config import OrchestratorConfig
from cerebrum.orchestrator.sse_relay import MalformedStream, SseRelayParser
from cerebrum.orchestrator.state import ORCHESTRATOR
from cerebrum.protocol import API_KEY_HEADER, REQUEST_ID_HEADER, error_message

_LOGGER = logging.getLogger(__name__)

# An error body from a failing backend is read only this far: enough to log it.
_ERROR_BODY_LIMIT = 64 * 1024
# /v1/models is small and cheap; do not let a hung backend hold the refresher.
_MODELS_TIMEOUT_S = 10.0


@attrs.frozen
class UpstreamLimits:
    """What one backend answer may cost (settings of the same names, see the README)."""

    max_body_bytes: int = 16 * 1024 * 1024
    """Largest whole (non-streamed) answer."""
    max_event_bytes: int = 1024 * 1024
    """Largest SSE line or event; a backend line without a newline fails past it."""
    event_timeout_s: float = 300.0
    """Longest time without a real event (keep-alive comments do not count)."""
    max_retry_after_s: float = 300.0
    """A backend's ``Retry-After`` is clamped to this before it reaches a client."""

    @classmethod
    def from_config(cls, config: OrchestratorConfig) -> UpstreamLimits:
        return cls(max_body_bytes=config.max_upstream_body_bytes,
                   max_event_bytes=config.max_sse_event_bytes,
                   event_timeout_s=config.sse_event_timeout_s,
                   max_retry_after_s=config.max_retry_after_s)


@attrs.define
class Upstream:
    """The backends as one client: the pooled session, with the key, limits and timeouts
    of the configuration bound once at start-up (``UPSTREAM``)."""

    pool: BackendPool
    session: aiohttp.ClientSession
    api_key: str | None = None
    limits: UpstreamLimits = UpstreamLimits()
    models_timeout: aiohttp.ClientTimeout = aiohttp.ClientTimeout(total=_MODELS_TIMEOUT_S)
    """The timeout of one ``/v1/models`` read."""

    @classmethod
    def from_config(cls, pool: BackendPool, session: aiohttp.ClientSession,
                    config: OrchestratorConfig) -> Upstream:
        return cls(pool, session, config.api_key, UpstreamLimits.from_config(config),
                   aiohttp.ClientTimeout(total=_MODELS_TIMEOUT_S,
                                         sock_connect=config.connect_timeout_s))

    def headers(self, request_id: str | None = None) -> dict[str, str]:
        """Headers for one backend request: JSON, correlation (``request_id``: the client's),
        and the key in both common spellings (``X-API-Key`` for this project's backend,
        ``Authorization: Bearer`` for llama-server, vLLM and Ollama)."""
        # identity: the session reads bodies as sent (auto_decompress off, so a
        # bounded read bounds what is held), so it must not ask for gzip.
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        if self.api_key:
            headers[API_KEY_HEADER] = self.api_key
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    async def refresh_models(self) -> None:
        """Read the backends' model lists now, unless that was just done."""
        await self.pool.refresh_if_stale(self.session, self.headers(), self.models_timeout)

    async def run_refresher(self, interval_s: float) -> None:
        """Keep the model lists fresh (a background task, cancelled at shutdown)."""
        await self.pool.run_refresher(self.session, self.headers(), self.models_timeout,
                                      interval_s)

    @contextlib.asynccontextmanager
    async def open(self, path: str, payload: bytes, model: str | None, *, stream: bool,
                   request_id: str | None = None,
                   candidates: Sequence[Backend] | None = None,
                   expect: str = "choices",
                   ) -> AsyncIterator[tuple[Backend, Reply]]:
        """The answer (or the start of one) from the first backend that gives one, with
        that backend leased from the pool until the block ends.

        ``candidates`` is the order to try them in (default: ``pool.candidates(model)``;
        the proxy passes that list reordered by prefix affinity). ``expect`` is the
        list a whole success must hold (``choices``; ``data`` for embeddings).
        """
        headers = self.headers(request_id)
        last: tuple[Backend, ApiError] | None = None
        waits: list[float] = []
        if candidates is None:
            candidates = self.pool.candidates(model)
        if not candidates:
            raise ModelNotFound(f"no backend serves the model '{model}'", param="model")
        for backend in candidates:
            try:
                backend.breaker.before_request()
            except CircuitOpenError as exc:
                waits.append(exc.retry_after)
                continue
            # Leased during the attempt too, so concurrent requests see it busy.
            async with self.pool.lease(backend):
                try:
                    reply = await _attempt(self.session, backend, path, payload, headers,
                                           stream=stream, limits=self.limits, expect=expect)
                except UpstreamFailure as failure:
                    _judge(backend, failure)
                    last = (backend, failure.error)
                    continue
                except BaseException:
                    backend.breaker.record_abandoned()
                    raise
                backend.breaker.record_success()
                backend.touch()
                try:
                    yield backend, reply
                finally:
                    if isinstance(reply, Opened):
                        # Whoever relayed it released it when complete; else the
                        # connection must drop, so the backend stops generating.
                        reply.response.close()
                return
        raise _no_backend(model, last, waits)

    async def fetch(self, path: str, payload: bytes, model: str | None, *, expect: str,
                    request_id: str | None = None) -> Answered:
        """A whole answer (any status below 500) from the first backend that gives one."""
        async with self.open(path, payload, model, stream=False, request_id=request_id,
                             expect=expect) as (_, reply):
            if isinstance(reply, Answered):
                return reply
        # A non-streamed request is always answered whole (see _read_reply).
        raise BadGateway("the backend answered a whole request with a stream")


UPSTREAM = web.AppKey("upstream", Upstream)


async def upstream_session(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the one pooled ClientSession (as ``UPSTREAM``), and the model-list
    refresher."""
    state = app[ORCHESTRATOR]
    config = state.config
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout_s,
                                    sock_read=config.read_timeout_s)
    # Keep-alive connections to a handful of backends; the limit is a safety net,
    # load shedding keeps the real number far lower.
    connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=60)
    state.pool.model_limits = ModelListLimits(config.max_models, config.max_models_bytes)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     auto_decompress=False) as session:
        upstream = app[UPSTREAM] = Upstream.from_config(state.pool, session, config)
        refresher = asyncio.create_task(upstream.run_refresher(config.models_refresh_s),
                                        name="models-refresher")
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher


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


class Verdict(enum.Enum):
    """What a failed attempt says about the backend, for its breaker."""

    DOWN = "down"
    """It could not be reached, timed out, failed or garbled: counts towards opening."""
    ALIVE = "alive"
    """It answered but is busy (503): alive, so not a failure."""
    UNKNOWN = "unknown"
    """The network cut its answer short, or the answer was too large: says nothing about
    whether the backend is up, so neither counts nor resets the count."""


class UpstreamFailure(Exception):
    """One backend failed before anything reached the client."""

    def __init__(self, error: ApiError, *, verdict: Verdict = Verdict.DOWN) -> None:
        super().__init__(error.message)
        self.error = error
        self.verdict = verdict


async def _attempt(session: aiohttp.ClientSession, backend: Backend, path: str, payload: bytes,
                   headers: Mapping[str, str], *, stream: bool,
                   limits: UpstreamLimits, expect: str) -> Reply:
    name = backend.name
    try:
        # Never followed: a redirect would send the prompt wherever the backend says,
        # and credit that server's answer to this backend.
        response = await session.post(backend.url + path, data=payload, headers=headers,
                                      allow_redirects=False)
    except aiohttp.ConnectionTimeoutError:
        # Never connected: the backend is unreachable (down, or a black-holed
        # address), not slow; a client can try again later.
        raise UpstreamFailure(Unavailable(f"backend {name} is unreachable (connect timed out)",
                                          code="backend_unreachable")) from None
    except TimeoutError:
        raise UpstreamFailure(GatewayTimeout(f"backend {name} did not answer in time")) from None
    except aiohttp.ClientError as exc:
        raise UpstreamFailure(Unavailable(f"backend {name} is unreachable ({type(exc).__name__})",
                                          code="backend_unreachable")) from None
    try:
        return await _read_reply(response, name, stream=stream, limits=limits, expect=expect)
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


class BodyTooLarge(Exception):
    """A whole answer is over its limit."""


async def read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (BodyTooLarge past it). A body the
    network cut short raises ``aiohttp.ClientPayloadError``."""
    if response.content_length is not None and response.content_length > limit:
        raise BodyTooLarge
    body = await read_at_most(response.content, limit + 1)
    if len(body) > limit:
        raise BodyTooLarge
    return body


async def _error_body(response: aiohttp.ClientResponse) -> bytes:
    """As much of an error body as is worth logging; a cut or large one is no further error."""
    return await read_at_most(response.content, _ERROR_BODY_LIMIT, keep_cut=True)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def _read_reply(response: aiohttp.ClientResponse, name: str, *, stream: bool,
                      limits: UpstreamLimits, expect: str) -> Reply:
    status = response.status
    if status >= 500:
        message = _error_message(await _error_body(response))
        if status == 503:
            # The backend is alive and says it is busy (queue full, CPU, RAM):
            # try another, but do not count it towards opening the circuit.
            retry_after = _retry_after(response.headers.get("Retry-After"),
                                       limits.max_retry_after_s)
            raise UpstreamFailure(Unavailable(f"backend {name} is busy: {message}",
                                              retry_after=retry_after, code="backend_busy"),
                                  verdict=Verdict.ALIVE)
        raise UpstreamFailure(BadGateway(f"backend {name} failed with HTTP {status}: {message}"))
    if 300 <= status < 400:  # (_attempt closes the response)
        raise UpstreamFailure(BadGateway(f"backend {name} answered with a redirect (HTTP "
                                         f"{status}), which is not followed"))
    content_type = response.headers.get("Content-Type", "application/json")
    if status >= 400 or not stream or not content_type.startswith("text/event-stream"):
        return await _read_whole(response, name, status, content_type, limits.max_body_bytes,
                                 expect, stream)
    parser = SseRelayParser(max_event_bytes=limits.max_event_bytes,
                            event_timeout_s=limits.event_timeout_s)
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


async def _read_whole(response: aiohttp.ClientResponse, name: str, status: int,
                      content_type: str, limit: int, expect: str, stream: bool) -> Answered:
    try:
        body = await read_body(response, limit)
    except BodyTooLarge:
        raise UpstreamFailure(BadGateway(f"backend {name} sent an answer over {limit} bytes"),
                              verdict=Verdict.UNKNOWN) from None
    except aiohttp.ClientPayloadError as exc:
        # Headers came, then the connection ended early: a network fault on
        # the path (a tunnel restarting) as likely as a dying backend.
        raise UpstreamFailure(BadGateway(
            f"backend {name}'s answer was cut short ({type(exc).__name__})"),
            verdict=Verdict.UNKNOWN) from None
    if status >= 400:
        if not _is_json(content_type) or not isinstance(_json_or_none(body), dict):
            # Relay the backend's refusal in the shape clients parse.
            body = json.dumps(BadRequest(_error_message(body)).body()).encode()
            body_type = "application/json"
        else:
            body_type = content_type
        response.release()
        return Answered(status, body, body_type)
    decoded = _json_or_none(body) if _is_json(content_type) else None
    if not isinstance(decoded, dict):
        what = "not JSON" if _is_json(content_type) else f"of type {content_type[:60]!r}"
        raise MalformedStream(f"a completion that is {what}")
    if not isinstance(decoded.get(expect), list):
        error = decoded.get("error")
        if isinstance(error, dict):
            # An error dressed as a success: relayed as the failure it is, and
            # never cached as the answer to this prompt.
            raise UpstreamFailure(BadGateway(
                f"backend {name} answered HTTP {status} with an error: {_error_message(body)}"))
        raise MalformedStream(f"an answer without a {expect!r} list")
    if stream:
        # A client that asked for a stream cannot read a whole answer.
        raise MalformedStream("a whole answer to a streamed request")
    response.release()
    return Answered(status, body, content_type, token_counts(decoded.get("usage")))


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _error_message(body: bytes) -> str:
    return error_message(body) or "no details"


def _retry_after(value: str | None, ceiling: float) -> float:
    """A backend's ``Retry-After`` in seconds, within [1, ceiling]; ``inf``, ``nan``,
    ``1e300`` and HTTP dates become something a client can act on."""
    try:
        seconds = float(value or 1)
    except ValueError:
        return 1.0
    if not math.isfinite(seconds):
        return ceiling if seconds > 0 else 1.0
    return min(max(1.0, seconds), ceiling)


# -- walking the candidates --------------------------------------------------------

def _judge(backend: Backend, failure: UpstreamFailure) -> None:
    """Tell the backend's breaker what a failed attempt says about it, and log it."""
    if failure.verdict is Verdict.DOWN:
        backend.breaker.record_failure()
    elif failure.verdict is Verdict.ALIVE:
        backend.breaker.record_success()
        backend.touch()
    else:
        backend.breaker.record_abandoned()
        backend.touch()
    _LOGGER.warning("backend %s failed: %s", backend.name, failure.error.message,
                    extra={"backend": backend.name})


def _no_backend(model: str | None, last: tuple[Backend, ApiError] | None,
                waits: list[float]) -> ApiError:
    """The error for a request no candidate answered: the last failure, or open circuits."""
    if last is None:
        return Unavailable(
            f"every backend for '{model or 'the default model'}' is failing; "
            "its circuit is open", retry_after=min(waits), code="circuit_open")
    backend, error = last
    if isinstance(error, Unavailable) and error.code == "backend_unreachable":
        # Tell the client when trying again can help: after the cooldown if
        # this failure has just opened the circuit.
        return Unavailable(error.message, retry_after=max(1.0, backend.breaker.retry_after()),
                           code=error.code)
    return error
