"""An aiohttp client for Cerebrum's HTTP APIs: OpenAI chat completions (SSE), health, optimize.

It speaks only HTTP, so it works against the orchestrator, the backend, or any
OpenAI-compatible server. Every failure leaves this module as a ``CliError``
with a sentence for the user: transport errors, OpenAI-style JSON errors, and
``error`` events that end a stream early. The sentence names the service that
failed: the one the caller says it is talking to, else the one its public
``/health`` shows it to be (asked only once something has gone wrong).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Literal

import aiohttp
import attrs

from cerebrum.cli.errors import (
    AuthFailed,
    CliError,
    Overloaded,
    RequestFailed,
    Unreachable,
)
from cerebrum.cli.render import terminal_safe
from cerebrum.protocol import REQUEST_ID_HEADER, error_message, is_token_count

Service = Literal["orchestrator", "backend"]

_HEALTH_PROBE_BYTES = 64 * 1024

SSE_EVENT_TIMEOUT_S = 300.0
"""Longest wait for the next event of an answer (the first included); keep-alive
comments do not count, or a server pinging forever would hold ``ask`` for ever.
The orchestrator gives its backend as long (``sse_event_timeout_s``)."""

_MAX_MODEL_NAME = 200

_HOW_TO_START: dict[Service | None, str] = {
    "orchestrator": "Start it with `cerebrum up` (both services on this machine) or "
                    "`cerebrum serve orchestrator`, or point elsewhere with --url or CEREBRUM_URL.",
    "backend": "Start it with `cerebrum serve backend` (or `cerebrum up` for both), "
               "or point elsewhere with --backend-url or CEREBRUM_BACKEND_URL.",
    None: "Start Cerebrum with `cerebrum up` (both services on this machine) or "
          "`cerebrum serve orchestrator|backend`, or point elsewhere with --url or CEREBRUM_URL.",
}


def _the(service: Service | None) -> str:
    return f"the {service}" if service else "the service"


def unreachable(service: Service | None, url: str, why: str = "") -> Unreachable:
    """The sentence for a service nobody answers at ``url`` (``None``: not known which)."""
    detail = f" ({why})" if why else ""
    return Unreachable(f"Cannot reach {_the(service)} at {url}{detail}. "
                       f"{_HOW_TO_START[service]}")


def error_from_response(
    status: int, body: bytes, headers: Mapping[str, str], url: str, service: Service | None
) -> CliError:
    """Turn a non-2xx answer (OpenAI-style JSON, or anything else) into a sentence that
    blames ``service`` (``None``: a server that is neither of ours, or not known)."""
    message = _server_message(body) or f"HTTP {status}"
    the = _the(service).capitalize()
    if status == 401:
        return AuthFailed(
            f"{the} at {url} refused the API key ({message}). Set CEREBRUM_API_KEY "
            "(in the environment or .env) to the key the service was started with.")
    if status in (429, 503):
        retry = _retry_after(headers.get("Retry-After"))
        when = f" Try again in {_seconds(retry)}." if retry is not None else " Try again shortly."
        return Overloaded(f"{the} is busy and turned the request away: {message}.{when}",
                          retry_after=retry)
    if status in (502, 504) and service != "backend":
        return RequestFailed(f"{the} could not get an answer from its backend: {message}.")
    if status >= 500:
        return RequestFailed(f"{the} failed with an internal error ({message}).")
    return RequestFailed(f"{the} rejected the request: {message}.")


def service_from_health(health: object) -> Service | None:
    """Which of our services answered ``/health`` with ``health``; None for another server.

    The orchestrator lists its ``backends``; the backend its ``loaded`` models.
    """
    if not isinstance(health, dict):
        return None
    if "backends" in health:
        return "orchestrator"
    if "loaded" in health or isinstance(health.get("models"), dict):
        return "backend"
    return None


def _server_message(body: bytes) -> str:
    # The CLI ends its sentences itself; whatever prints them, the server's
    # words in them must not drive the terminal (nor start a line of their own).
    return terminal_safe(error_message(body, limit=200), one_line=True).strip().rstrip(".")


def not_openai(what: str) -> RequestFailed:
    """The sentence for an answer no OpenAI-compatible server would send (``what`` is odd)."""
    return RequestFailed(f"The answer is not what an OpenAI-compatible server sends ({what}); "
                         "is --url pointing at one?")


def json_kind(value: object) -> str:
    """What a decoded JSON value is, in words: ``a string``, ``an object``..."""
    if isinstance(value, bool):
        return "true or false"
    kinds = {str: "a string", int: "a number", float: "a number", list: "a list",
             dict: "an object", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _token_count(value: object) -> int | None:
    # Any other value means only that there is no count to show (and no tokens/s).
    return value if is_token_count(value) else None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _seconds(value: float) -> str:
    whole = max(1, round(value))
    return "1 second" if whole == 1 else f"{whole} seconds"


@attrs.define
class ChatStream:
    """One streamed chat completion: iterate for text pieces; figures are filled in as it goes."""

    response: aiohttp.ClientResponse
    request_id: str
    started: float
    model: str | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    pieces: int = 0
    event_timeout_s: float = SSE_EVENT_TIMEOUT_S

    @property
    def headers(self) -> Mapping[str, str]:
        return self.response.headers

    def __aiter__(self) -> AsyncIterator[str]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[str]:
        try:
            async for piece in self._read():
                yield piece
        except (aiohttp.ClientError, TimeoutError):
            raise RequestFailed("The connection to the service broke in the middle of the "
                                "answer; see its log for why.") from None
        self.finished_at = time.perf_counter()

    async def _read(self) -> AsyncIterator[str]:
        async for event, data in sse_events(self.response, self.event_timeout_s):
            if event == "error":
                raise RequestFailed(f"The answer stopped early: {_server_message(data.encode())}.")
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except (ValueError, RecursionError):
                continue  # a malformed event: skip it rather than lose the answer
            if not isinstance(chunk, dict):
                continue
            if isinstance(chunk.get("error"), dict):
                raise RequestFailed(f"The answer stopped early: {_server_message(data.encode())}.")
            self._note_figures(chunk)
            for text in self._texts(chunk):
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
                self.pieces += 1
                yield text

    def _note_figures(self, chunk: dict[str, Any]) -> None:
        """The model and token counts, where a chunk has them in a usable form."""
        model = chunk.get("model")
        if isinstance(model, str) and model:
            self.model = model[:_MAX_MODEL_NAME]
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = _token_count(usage.get("prompt_tokens"))
            self.completion_tokens = _token_count(usage.get("completion_tokens"))

    def _texts(self, chunk: dict[str, Any]) -> list[str]:
        """The text pieces of one chunk (noting a finish reason on the way).

        Raises a sentence, not a TypeError, for a shape no OpenAI server sends.
        """
        choices = chunk.get("choices")
        if choices is None:
            return []
        if not isinstance(choices, list):
            raise not_openai(f"its choices are {json_kind(choices)}, not a list")
        texts: list[str] = []
        for choice in choices:
            if not isinstance(choice, dict):
                raise not_openai(f"a choice is {json_kind(choice)}, not an object")
            if isinstance(choice.get("finish_reason"), str) and choice["finish_reason"]:
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta")
            if delta is not None and not isinstance(delta, dict):
                raise not_openai(f"a delta is {json_kind(delta)}, not an object")
            text = (delta or {}).get("content")
            if text is None or text == "":
                text = choice.get("text")  # a legacy completions chunk
            if text is None or text == "":
                continue
            if not isinstance(text, str):
                raise not_openai(f"a piece of the answer is {json_kind(text)}, not text")
            texts.append(text)
        return texts

    @property
    def tokens(self) -> int:
        """Generated tokens: the server's count, else the pieces seen."""
        return self.completion_tokens if self.completion_tokens is not None else self.pieces

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started

    @property
    def tokens_per_s(self) -> float | None:
        end = self.finished_at or time.perf_counter()
        if self.first_token_at is None or self.tokens < 2 or end <= self.first_token_at:
            return None
        # Tokens after the first over the time after the first: the generation speed.
        return (self.tokens - 1) / (end - self.first_token_at)


async def sse_events(response: aiohttp.ClientResponse,
                     event_timeout_s: float = SSE_EVENT_TIMEOUT_S,
                     ) -> AsyncIterator[tuple[str, str]]:
    """The (event name, data) pairs of an SSE response, as they arrive.

    A ``RequestFailed`` when no event comes for ``event_timeout_s``, whatever
    comments (keep-alive pings) come meanwhile.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + event_timeout_s
    event = "message"
    data: list[str] = []
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                raw = await response.content.readline()
        except TimeoutError:
            raise RequestFailed(
                f"No answer came for {event_timeout_s:g} s (the service sent "
                "nothing, or only keep-alive comments); stopped waiting.") from None
        if not raw:
            break
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                deadline = loop.time() + event_timeout_s
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield event, "\n".join(data)


class Client:
    """One ``aiohttp.ClientSession`` to one service; use as ``async with``."""

    def __init__(self, url: str, api_key: str | None, service: Service | None = None,
                 *, connect_timeout: float = 10.0, read_timeout: float = 600.0) -> None:
        """``service``: what the caller knows ``url`` to be; None to find out when needed."""
        self.url = url
        self.service = service
        self._identified = service is not None
        headers = {"User-Agent": "cerebrum-cli"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # No total timeout: a long answer may stream for minutes. A read timeout
        # still catches a service that stops sending anything.
        self._session = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, connect=connect_timeout,
                                          sock_read=read_timeout))

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()

    async def get_json(self, path: str) -> Any:
        """GET ``path`` and return its JSON body."""
        response = await self._request("GET", path)
        async with response:
            return await self._json(response)

    async def post_json(self, path: str, body: Any,
                        headers: Mapping[str, str] | None = None) -> tuple[Any, Mapping[str, str]]:
        """POST a JSON body; return the JSON answer and its headers."""
        response = await self._request("POST", path, json=body, headers=dict(headers or {}))
        async with response:
            return await self._json(response), response.headers

    async def chat_stream(self, body: dict[str, Any],
                          headers: Mapping[str, str] | None = None) -> ChatStream:
        """Start a streamed chat completion; the caller must ``close()`` its response."""
        request_id = uuid.uuid4().hex
        started = time.perf_counter()
        response = await self._request(
            "POST", "/v1/chat/completions", json={**body, "stream": True},
            headers={REQUEST_ID_HEADER: request_id, "Accept": "text/event-stream",
                     **(headers or {})})
        if response.status >= 400:
            async with response:
                raw = await response.read()
            raise error_from_response(response.status, raw, response.headers, self.url,
                                      await self.identify())
        return ChatStream(response, response.headers.get(REQUEST_ID_HEADER, request_id), started,
                          event_timeout_s=SSE_EVENT_TIMEOUT_S)

    async def identify(self) -> Service | None:
        """Which service ``url`` is: as given, else from its public ``/health`` (read once,
        briefly; None when it is another server or does not say)."""
        if not self._identified:
            self._identified = True
            try:
                async with self._session.get(self.url + "/health",
                                             timeout=aiohttp.ClientTimeout(total=3)) as response:
                    if response.status == 200:
                        # A health body is small; another server's need not be.
                        raw = await response.content.read(_HEALTH_PROBE_BYTES)
                        self.service = service_from_health(json.loads(raw))
            except (aiohttp.ClientError, TimeoutError, ValueError, RecursionError):
                pass  # no answer is no evidence: the sentence says "the service"
        return self.service

    async def _request(self, method: str, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        url = self.url + path
        try:
            return await self._session.request(method, url, **kwargs)
        except aiohttp.ClientConnectorError as exc:
            raise unreachable(self.service, self.url, _os_reason(exc)) from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise unreachable(self.service, self.url, "it did not answer in time") from None
        except aiohttp.InvalidURL:
            raise CliError(f"{self.url} is not a valid URL.") from None
        except aiohttp.ClientError as exc:
            raise unreachable(self.service, self.url, type(exc).__name__) from None

    async def _json(self, response: aiohttp.ClientResponse) -> Any:
        try:
            body = await response.read()
        except (aiohttp.ClientError, TimeoutError):
            raise unreachable(self.service, self.url, "the connection broke") from None
        if response.status >= 400:
            raise error_from_response(response.status, body, response.headers,
                                      self.url, await self.identify())
        try:
            return json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: JSON nested past Python's stack
            raise RequestFailed(
                f"{_the(self.service).capitalize()} at {self.url} did not answer with JSON; "
                "is that the right URL?") from None


def _os_reason(exc: aiohttp.ClientConnectorError) -> str:
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, ConnectionRefusedError):
        return "nothing is listening there"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "unknown host name"
    reason = getattr(os_error, "strerror", None) or str(os_error or "")
    return reason.lower() if reason else "connection failed"
