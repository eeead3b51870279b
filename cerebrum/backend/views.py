"""HTTP handlers of the backend: thin, parse → call → respond."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Literal

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from cerebrum.backend.generation import (
    Failed,
    Finished,
    Generation,
    GenerationError,
    GenerationJob,
    PromptReady,
    TextPiece,
)
from cerebrum.backend.state import BACKEND_STATE
from cerebrum.errors import ApiError, BadRequest, Unavailable
from cerebrum.metrics import METRICS, HttpMetrics, route_label
from cerebrum.openai_wire import (
    ChatCompletionRequest,
    CompletionEnvelope,
    read_json,
    structure_request,
    usage,
)

_LOGGER = logging.getLogger(__name__)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions``: OpenAI chat completions, streamed or whole."""
    return await _complete(request, "chat")


async def completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/completions``: OpenAI (legacy) text completions, streamed or whole."""
    return await _complete(request, "text")


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: the registry, with each model's load state."""
    state = request.app[BACKEND_STATE]
    data = [
        {
            "id": spec.name,
            "object": "model",
            "created": int(spec.path.stat().st_mtime) if spec.path.exists() else 0,
            "owned_by": "cerebrum",
            "state": state.models.state(spec.name),
            "context_length": spec.context_size,
            "default": spec is state.models.registry.default,
        }
        for spec in state.models.registry
    ]
    return web.json_response({"object": "list", "data": data})


async def health(request: web.Request) -> web.Response:
    """``GET /health`` (public): ready or loading, loaded models, CPU and free RAM."""
    state = request.app[BACKEND_STATE]
    models = {spec.name: state.models.state(spec.name) for spec in state.models.registry}
    guard = state.guard
    return web.json_response({
        "status": "loading" if "loading" in models.values() else "ready",
        "models": models,
        "loaded": state.models.loaded_models(),
        "cpu_percent": round(guard.cpu_percent, 1),
        "free_ram_mb": round(guard.available_mb) if guard.available_mb != float("inf") else None,
        "limits": {
            "max_cpu_percent": guard.max_cpu_percent,
            "min_free_ram_mb": guard.min_free_ram_mb,
        },
        "uptime_s": round(time.monotonic() - state.started, 1),
    })


MAX_TOKENIZE_IDS = 65536
"""``/tokenize`` returns the token ids of raw ``content`` up to this many (the count is always exact)."""


async def tokenize(request: web.Request) -> web.Response:
    """``POST /tokenize``: count a prompt with the model's own tokenizer; nothing is generated.

    Body: ``{"model"?, "messages": [...]}`` or ``{"model"?, "prompt": "..."}``
    (counted exactly as a completion would be: chat template, BOS), or
    ``{"model"?, "content": "..."}`` (raw text, as llama.cpp's server does;
    the ids come back too). Answer: ``{"model", "count"}`` (+ ``"tokens"``).
    The orchestrator uses it to fit prompts to the context exactly.
    """
    state = request.app[BACKEND_STATE]
    body = await read_json(request, state.config.max_body_bytes)
    if not isinstance(body, dict) or sum(key in body for key in ("messages", "prompt", "content")) != 1:
        raise BadRequest("send one of 'messages' (a list), 'prompt' or 'content' (a string)")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest("'model' must be a string", param="model")
    job: GenerationJob | None = None
    if "content" in body:
        if not isinstance(body["content"], str):
            raise BadRequest("'content' must be a string", param="content")
    else:
        kind: Literal["chat", "text"] = "chat" if "messages" in body else "text"
        parsed = structure_request({key: body[key] for key in ("messages", "prompt", "model") if key in body},
                                   kind)
        job = (GenerationJob(parsed.params, messages=parsed.messages)
               if isinstance(parsed, ChatCompletionRequest) else GenerationJob(parsed.params, prompt=parsed.prompt))
    spec = state.models.resolve(model)
    try:
        worker = await state.models.ensure_loaded(spec.name)
        tokens = await worker.tokenize(job, text=body.get("content"))
    except RuntimeError:  # unloaded between the two calls: rare, and the caller may retry
        raise Unavailable(f"model {spec.name!r} is being unloaded", retry_after=1) from None
    answer: dict[str, Any] = {"model": spec.name, "count": len(tokens)}
    if job is None:
        answer["tokens"] = tokens[:MAX_TOKENIZE_IDS]
    return web.json_response(answer)


async def _complete(request: web.Request, kind: Literal["chat", "text"]) -> web.StreamResponse:
    state = request.app[BACKEND_STATE]
    log = _CompletionLog(kind, request.app[METRICS], route_label(request))
    try:
        body = await read_json(request, state.config.max_body_bytes)
        parsed = structure_request(body, kind)
        log.stream = parsed.stream
        spec = state.models.resolve(parsed.model)
        log.model = spec.name
        state.guard.check()
        if isinstance(parsed, ChatCompletionRequest):
            job = GenerationJob(parsed.params, state.config.default_max_tokens,
                                messages=parsed.messages)
        else:
            job = GenerationJob(parsed.params, state.config.default_max_tokens,
                                prompt=parsed.prompt)
        async with state.models.use(spec.name) as worker:
            return await _generate(request, worker.start(job), parsed.stream,
                                   CompletionEnvelope(kind, spec.name), log)
    except ApiError as exc:
        log.status = exc.status
        log.outcome = exc.code or exc.error_type
        raise
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the client disconnects.
        log.outcome = "client_disconnected"
        raise
    finally:
        log.write()


async def _generate(request: web.Request, generation: Generation, stream: bool,
                    envelope: CompletionEnvelope, log: _CompletionLog) -> web.StreamResponse:
    try:
        first = await generation.next_event()
        if isinstance(first, Failed):
            raise _as_api_error(first.error)
        assert isinstance(first, PromptReady)
        if stream:
            return await _stream(request, generation, envelope, log)
        return await _collect(generation, envelope, log)
    finally:
        if not generation.done:
            # We are leaving early (client gone, error): stop the model
            # thread, which notices within one token, and wait for it so
            # the model is idle before the next request gets its turn.
            stopped = await generation.stop()
            if stopped is not None:
                log.finish(stopped, outcome="client_disconnected")


class _ChunkTemplate:
    """The SSE bytes of a content chunk, with the text as the only variable.

    At ~100 tokens/s on a 2-core VPS every microsecond on the loop is taken
    from the llama threads: building and serialising the whole chunk dict per
    token, and aiohttp-sse's per-send timeout, measurably cost decode speed
    (docs/benchmarks.md). The output is byte-identical to ``sse.send(json.dumps(chunk))``.
    """

    _MARK = "\x00"

    def __init__(self, envelope: CompletionEnvelope) -> None:
        text = json.dumps(envelope.chunk(self._MARK))
        head, tail = text.split(json.dumps(self._MARK), 1)
        self._head = b"data: " + head.encode()
        self._tail = tail.encode() + b"\r\n\r\n"

    def render(self, piece: str) -> bytes:
        """One event for ``piece``, which ``json.dumps`` escapes (newlines included)."""
        return self._head + json.dumps(piece).encode() + self._tail


async def _stream(
    request: web.Request, generation: Generation, envelope: CompletionEnvelope, log: _CompletionLog
) -> EventSourceResponse:
    template = _ChunkTemplate(envelope)
    async with sse_response(request, allow_all_methods=True) as sse:
        try:
            await sse.send(json.dumps(envelope.chunk("" if envelope.kind == "chat" else None,
                                                     first=True)))
            log.mark_first_byte()
            while True:
                event = await generation.next_event()
                if isinstance(event, TextPiece):
                    log.token()
                    # A stalled client is still cut off: aiohttp-sse sets the
                    # socket's TCP_USER_TIMEOUT to its send timeout.
                    await sse.write(template.render(event.text))
                elif isinstance(event, Finished):
                    log.finish(event)
                    await sse.send(json.dumps(envelope.chunk(
                        None, finish_reason=_openai_reason(event),
                        usage_=usage(event.prompt_tokens, event.completion_tokens))))
                    await sse.send("[DONE]")
                    break
                elif isinstance(event, Failed):
                    error = _as_api_error(event.error)
                    log.outcome = "error"
                    await sse.send(json.dumps(error.body()), event="error")
                    break
        except ConnectionError:
            log.outcome = "client_disconnected"
    return sse


async def _collect(
    generation: Generation, envelope: CompletionEnvelope, log: _CompletionLog
) -> web.Response:
    pieces: list[str] = []
    while True:
        event = await generation.next_event()
        if isinstance(event, TextPiece):
            log.token()
            pieces.append(event.text)
        elif isinstance(event, Finished):
            log.finish(event)
            body = envelope.whole("".join(pieces), _openai_reason(event),
                                  usage(event.prompt_tokens, event.completion_tokens))
            log.mark_first_byte()
            return web.json_response(body)
        elif isinstance(event, Failed):
            raise _as_api_error(event.error)


def _openai_reason(event: Finished) -> str:
    return "length" if event.reason == "length" else "stop"


def _as_api_error(error: BaseException) -> ApiError:
    if isinstance(error, ApiError):
        return error
    return GenerationError("the model failed while generating")


class _CompletionLog:
    """Collects one request's figures and writes its single completion log line.

    The fields match the orchestrator's line (``cerebrum.orchestrator.proxy``):
    event, kind, model, stream, status, outcome, tokens, ttfb_ms, duration_ms,
    and ``ttfb_ms`` means the same in both (docs/metrics.md): request to the
    first byte of the answer's body. The backend adds ``ttft_ms``, request to
    the first generated token.
    """

    def __init__(self, kind: str, metrics: HttpMetrics, route: str) -> None:
        self.kind = kind
        self.metrics = metrics
        self.route = route
        self.model: str | None = None
        self.stream = False
        self.status = 200
        self.started = time.perf_counter()
        self.first_token: float | None = None
        self.first_byte: float | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.finish_reason: str | None = None
        self.outcome = "cancelled"

    def token(self) -> None:
        if self.first_token is None:
            self.first_token = time.perf_counter()

    def mark_first_byte(self) -> None:
        """The answer's body starts now (a stream's first event, or the whole answer)."""
        if self.first_byte is None:
            self.first_byte = time.perf_counter()

    def _ms(self, moment: float | None) -> float | None:
        return None if moment is None else round((moment - self.started) * 1000, 2)

    def finish(self, event: Finished, outcome: str = "ok") -> None:
        self.prompt_tokens = event.prompt_tokens
        self.completion_tokens = event.completion_tokens
        self.finish_reason = event.reason
        self.outcome = outcome

    def write(self) -> None:
        now = time.perf_counter()
        fields: dict[str, Any] = {
            "event": "completion",
            "kind": self.kind,
            "model": self.model,
            "stream": self.stream,
            "status": self.status,
            "outcome": self.outcome,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "finish_reason": self.finish_reason,
            "ttfb_ms": self._ms(self.first_byte),
            "ttft_ms": self._ms(self.first_token),
            "duration_ms": round((now - self.started) * 1000, 1),
        }
        _LOGGER.info("completion %s", self.outcome, extra=fields)
        self.metrics.count_tokens(self.prompt_tokens or 0, self.completion_tokens or 0)
        if self.first_token is not None:
            self.metrics.ttfb.labels(self.route).observe(self.first_token - self.started)
