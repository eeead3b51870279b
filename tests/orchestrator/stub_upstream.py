"""A tiny OpenAI-compatible upstream for the orchestrator's tests: no model, scripted faults.

Each request takes the next ``Behaviour`` from the stub's script (or the
default when the script is empty), and the stub records what it received and
whether the client went away, as events a test can await.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

import attrs
from aiohttp import web


@attrs.frozen
class Behaviour:
    """What the stub does with one completion request."""

    status: int = 200
    chunks: int = 3
    """Content chunks to stream (or to join into a non-streamed answer)."""
    die_after: int | None = None
    """Cut the connection after this many chunks."""
    garbage_after: int | None = None
    """Send a line that is not SSE after this many chunks."""
    hang_after: int | None = None
    """Stop sending (but keep the connection) after this many chunks; -1: before headers."""
    skip_done: bool = False
    """End the response cleanly after the chunks, without usage or ``[DONE]``."""
    hang_after_done: bool = False
    """Keep the connection open after ``[DONE]`` instead of ending the response."""
    delay_s: float = 0.0
    """Pause between chunks."""
    headers: dict[str, str] = attrs.field(factory=dict)


OK = Behaviour()


@attrs.define
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class StubUpstream:
    """The stub's state: its script, what it received, and the events tests wait on."""

    def __init__(self, models: tuple[str, ...] = ("stub-model",), name: str = "stub") -> None:
        self.models = models
        self.name = name
        self.script: deque[Behaviour] = deque()
        self.default = OK
        self.received: list[Received] = []
        self.model_reads = 0
        self.disconnected = asyncio.Event()
        """Set when a client went away while a completion was being streamed."""
        self.streaming = asyncio.Event()
        """Set when a stream has started (its first chunk was written)."""

    def then(self, *behaviours: Behaviour) -> StubUpstream:
        self.script.extend(behaviours)
        return self

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_post("/v1/completions", self._complete)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        self.model_reads += 1
        return web.json_response({"object": "list", "data": [
            {"id": model, "object": "model", "owned_by": self.name, "context_length": 2048}
            for model in self.models]})

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(Received(request.path, dict(request.headers), body))
        behaviour = self.script.popleft() if self.script else self.default
        if behaviour.hang_after == -1:
            await asyncio.Event().wait()
        if behaviour.status != 200:
            return web.json_response(
                {"error": {"message": f"stub says {behaviour.status}", "type": "server_error",
                           "param": None, "code": None}},
                status=behaviour.status, headers=behaviour.headers)
        kind = "chat" if request.path.endswith("chat/completions") else "text"
        model = body.get("model") or self.models[0]
        if not body.get("stream"):
            text = "".join(f"tok{i} " for i in range(behaviour.chunks))
            return web.json_response(_whole(kind, model, text, behaviour.chunks))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for i in range(behaviour.chunks):
                if behaviour.die_after == i:
                    assert request.transport is not None
                    request.transport.close()
                    return response
                if behaviour.garbage_after == i:
                    await response.write(b"this is not sse\n\n")
                if behaviour.hang_after == i:
                    await asyncio.Event().wait()
                await response.write(_event(_chunk(kind, model, f"tok{i} ")))
                self.streaming.set()
                if behaviour.delay_s:
                    await asyncio.sleep(behaviour.delay_s)
            if behaviour.skip_done:
                return response
            await response.write(_event(_chunk(kind, model, None, finish=True,
                                               usage=_usage(behaviour.chunks))))
            await response.write(b"data: [DONE]\n\n")
            if behaviour.hang_after_done:
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.disconnected.set()
            raise
        return response


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _usage(completion: int) -> dict[str, int]:
    return {"prompt_tokens": 7, "completion_tokens": completion, "total_tokens": 7 + completion}


def _chunk(kind: str, model: str, text: str | None, *, finish: bool = False,
           usage: dict[str, int] | None = None) -> dict[str, Any]:
    if kind == "chat":
        choice: dict[str, Any] = {"index": 0, "delta": {} if text is None else {"content": text},
                                  "finish_reason": "stop" if finish else None}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": "stop" if finish else None}
        obj = "text_completion"
    chunk: dict[str, Any] = {"id": "stub-1", "object": obj, "created": 1, "model": model,
                             "choices": [choice]}
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def _whole(kind: str, model: str, text: str, completion: int) -> dict[str, Any]:
    if kind == "chat":
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                                  "finish_reason": "stop"}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "finish_reason": "stop"}
        obj = "text_completion"
    return {"id": "stub-1", "object": obj, "created": 1, "model": model, "choices": [choice],
            "usage": _usage(completion)}
