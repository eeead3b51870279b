"""A stand-in hostile backend: an OpenAI-looking server whose misbehaviour each test picks.

A real backend cannot be made to send a 50 MB line or ping forever on demand,
so this tiny aiohttp app does, on real loopback sockets. Set ``completion``
(and ``models``) to one of the modes below before the request.

Completion modes:
    ``whole``           a valid non-streamed answer of ``tokens`` words
                        (``status``, ``content_type`` and ``chunked`` shape it)
    ``stream``          a valid stream of ``tokens`` events, usage, ``[DONE]``
    ``endless_line``    ``data: {"x": "xxxx...`` forever, never a newline
    ``good_then_endless_line``  one good event, then ``endless_line``
    ``endless_stream``  valid events forever, never ``[DONE]``
    ``pings``           only ``: ping`` comments, forever
    ``bad_after_good``  one good event, then one whose data is not JSON, then ``[DONE]``
    ``after_done``      a good event, ``[DONE]``, then more events in the same write
    ``busy``            503 with ``Retry-After: retry_after``
    ``truncated``       a whole answer whose body stops halfway (the connection drops)
    ``redirect``        307 to ``redirect_to``
    ``error_200``       200 with an OpenAI error body and no ``choices``
    ``gzip_if_asked``   ``whole``, gzip-encoded when the request accepts gzip

``usage`` replaces the ``usage`` object of ``whole`` and ``stream`` answers.
``accept_encoding`` records the last request's ``Accept-Encoding``.

Model-list modes: ``normal``, ``huge`` (``models_bytes`` of JSON, written
lazily), ``many`` (``models_count`` models).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import attrs
from aiohttp import web

MODEL = "hostile"


def chunk(text: str | None, *, finish: str | None = None,
          usage: Any = None) -> dict[str, Any]:
    delta = {} if text is None else {"content": text}
    body: dict[str, Any] = {"id": "chatcmpl-hostile", "object": "chat.completion.chunk",
                            "created": 1, "model": MODEL,
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        body["usage"] = usage
    return body


def event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def whole_answer(tokens: int) -> dict[str, Any]:
    text = " ".join(f"word{i}" for i in range(tokens))
    return {"id": "chatcmpl-hostile", "object": "chat.completion", "created": 1,
            "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "length"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": tokens,
                      "total_tokens": 5 + tokens}}


@attrs.define
class HostileBackend:
    completion: str = "whole"
    tokens: int = 300
    status: int = 200
    content_type: str = "application/json"
    chunked: bool = False
    retry_after: str = "1"
    models: str = "normal"
    models_bytes: int = 300 * 1024 * 1024
    models_count: int = 100_000
    redirect_to: str = ""
    usage: Any = None
    accept_encoding: str | None = None
    requests: int = 0
    model_reads: int = 0
    sent_bytes: int = 0
    """Bytes of the endless modes written before the reader gave up."""
    disconnected: asyncio.Event = attrs.field(factory=asyncio.Event)
    """Set when a reader closed an endless response."""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_post("/v1/completions", self._complete)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self.model_reads += 1
        if self.models == "many":
            data = [{"id": f"m{i:06d}", "object": "model"} for i in range(self.models_count)]
            return web.json_response({"object": "list", "data": data})
        if self.models == "huge":
            return await self._huge_models(request)
        return web.json_response({"object": "list", "data": [
            {"id": MODEL, "object": "model", "context_length": 2048}]})

    async def _huge_models(self, request: web.Request) -> web.StreamResponse:
        entry = json.dumps({"id": "x" * 200, "object": "model", "pad": "p" * 800}).encode()
        count = self.models_bytes // (len(entry) + 1)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(b'{"data": [') + count * (len(entry) + 1) + 1
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(b'{"data": [')
            block = b",".join([entry] * 64) + b","
            written = 0
            while written + 64 <= count - 1:
                await response.write(block)
                written += 64
                self.sent_bytes += len(block)
            for index in range(written, count):
                await response.write(entry + (b"," if index < count - 1 else b"]"))
            await response.write(b"}")
        return response

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.accept_encoding = request.headers.get("Accept-Encoding")
        await request.read()
        mode = self.completion
        if mode == "redirect":
            raise web.HTTPTemporaryRedirect(self.redirect_to)
        if mode == "error_200":
            return web.json_response({"error": {"message": "overloaded, try later",
                                                "type": "server_error"}})
        if mode == "gzip_if_asked":
            answer = web.json_response(self._answer())
            if "gzip" in (self.accept_encoding or ""):
                answer.enable_compression(web.ContentCoding.gzip)
            return answer
        if mode == "busy":
            return web.json_response({"error": {"message": "busy"}}, status=503,
                                     headers={"Retry-After": self.retry_after})
        if mode == "whole":
            return await self._whole(request)
        if mode == "truncated":
            return await self._truncated(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await getattr(self, "_" + mode)(response)
        except ConnectionError:
            pass
        finally:
            # Cancelled or refused a write: the reader has gone.
            self.disconnected.set()
        return response

    async def _whole(self, request: web.Request) -> web.StreamResponse:
        if self.status >= 400:
            body = json.dumps({"error": {"message": "bad request: " + "x" * 4000,
                                         "type": "invalid_request_error",
                                         "param": None, "code": None}}).encode()
        else:
            body = json.dumps(self._answer()).encode()
        if self.content_type == "text/html":
            body = b"<html><body>" + body + b"</body></html>"
        if not self.chunked:
            return web.Response(body=body, status=self.status,
                                headers={"Content-Type": self.content_type})
        response = web.StreamResponse(status=self.status,
                                      headers={"Content-Type": self.content_type})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 500):
            await response.write(body[start:start + 500])
        await response.write_eof()
        return response

    def _answer(self) -> dict[str, Any]:
        answer = whole_answer(self.tokens)
        if self.usage is not None:
            answer["usage"] = self.usage
        return answer

    async def _truncated(self, request: web.Request) -> web.StreamResponse:
        body = json.dumps(whole_answer(self.tokens)).encode()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[:len(body) // 2])
        assert request.transport is not None
        request.transport.close()
        return response

    async def _stream(self, response: web.StreamResponse) -> None:
        for i in range(self.tokens):
            await response.write(event(chunk(f"w{i} ")))
        usage = self.usage if self.usage is not None else {
            "prompt_tokens": 5, "completion_tokens": self.tokens,
            "total_tokens": 5 + self.tokens}
        await response.write(event(chunk(None, finish="stop", usage=usage))
                             + b"data: [DONE]\n\n")

    async def _endless_line(self, response: web.StreamResponse) -> None:
        await response.write(b'data: {"x": "')
        block = b"x" * 65536
        while True:
            await response.write(block)
            self.sent_bytes += len(block)
            await asyncio.sleep(0)

    async def _good_then_endless_line(self, response: web.StreamResponse) -> None:
        await response.write(event(chunk("good ")))
        await asyncio.sleep(0.05)
        await self._endless_line(response)

    async def _endless_stream(self, response: web.StreamResponse) -> None:
        block = event(chunk("all work and no play ")) * 64
        while True:
            await response.write(block)
            self.sent_bytes += len(block)
            await asyncio.sleep(0)

    async def _pings(self, response: web.StreamResponse) -> None:
        while True:
            await response.write(b": ping\n\n")
            await asyncio.sleep(0.05)

    async def _bad_after_good(self, response: web.StreamResponse) -> None:
        await response.write(event(chunk("good ")))
        await asyncio.sleep(0.05)
        await response.write(b'data: {"choices": [oops}\n\n')
        await response.write(event(chunk(None, finish="stop")) + b"data: [DONE]\n\n")

    async def _after_done(self, response: web.StreamResponse) -> None:
        await response.write(event(chunk("good ")))
        await asyncio.sleep(0.05)
        await response.write(event(chunk(None, finish="stop")) + b"data: [DONE]\n\n"
                             + event(chunk("INJECTED")) + b"data: [DONE]\n\n")


class Blackhole:
    """A loopback port where a TCP connect never completes: a listening socket that never
    accepts, its backlog filled, so the kernel drops further SYNs (a firewalled host)."""

    def __init__(self) -> None:
        import socket

        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port = self._listener.getsockname()[1]
        self._fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError, OSError):
                filler.connect(("127.0.0.1", self.port))
            self._fillers.append(filler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        for sock in (*self._fillers, self._listener):
            sock.close()
