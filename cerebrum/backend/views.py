"""HTTP handlers of the backend: thin, parse → call → respond."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import attrs
from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from cerebrum.backend.constraints import grammar_from_schemas, request_grammar
from cerebrum.backend.embeddings import EMBEDDINGS, encode_vector
from cerebrum.backend.envelope import CompletionEnvelope, usage
from cerebrum.backend.generation import (
    Event,
    Failed,
    Finished,
    Generation,
    GenerationError,
    GenerationJob,
    PromptReady,
    TextPiece,
)
from cerebrum.backend.output import (
    AnswerShaper,
    Content,
    Part,
    empty_logprobs,
    merge_logprobs,
)
from cerebrum.backend.registry import ModelSpec
from cerebrum.backend.state import BACKEND_STATE, BackendState
from cerebrum.bodies import read_json
from cerebrum.completion_log import CompletionRecord
from cerebrum.errors import ApiError, BadRequest, ModelNotFound, Unavailable
from cerebrum.metrics import METRICS, route_label
from cerebrum.openai_wire import (
    AnyCompletionRequest,
    ChatCompletionRequest,
    CompletionRequest,
    structure_embedding_request,
    structure_request,
)
from cerebrum.protocol import ROUTING_ALIASES

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
    data = [_model_entry(state, spec) for spec in state.models.registry]
    return web.json_response({"object": "list", "data": data})


async def get_model(request: web.Request) -> web.Response:
    """``GET /v1/models/{id}``: one model, as it appears in the list; 404 if unknown."""
    state = request.app[BACKEND_STATE]
    name = request.match_info["model"]
    spec = state.models.registry.get(name)
    if spec is None:
        raise ModelNotFound(f"the model {name!r} does not exist", param="model")
    return web.json_response(_model_entry(state, spec))


def _model_entry(state: BackendState, spec: ModelSpec) -> dict[str, Any]:
    return {
        "id": spec.name,
        "object": "model",
        "created": int(spec.path.stat().st_mtime) if spec.path.exists() else 0,
        "owned_by": "cerebrum",
        "state": state.models.state(spec.name),
        "context_length": spec.context_size,
        "default": spec is state.models.registry.default,
        "embeddings": spec.embeddings,
    }


async def embeddings(request: web.Request) -> web.Response:
    """``POST /v1/embeddings``: unit-length vectors from the model's embedding context."""
    state = request.app[BACKEND_STATE]
    service = request.app[EMBEDDINGS]
    body = await read_json(request, state.config.max_body_bytes)
    parsed = structure_embedding_request(body)
    spec = service.resolve(state.models.resolve(parsed.model),
                           named=parsed.model not in (None, *ROUTING_ALIASES))
    state.guard.check()
    async with service.use(spec.name) as embedder:
        if parsed.dimensions is not None and parsed.dimensions != embedder.dimension:
            raise BadRequest(f"this model's embeddings have {embedder.dimension} dimensions; "
                             "'dimensions' cannot change that", param="dimensions")
        result = await embedder.embed(parsed.inputs, truncate=parsed.truncate)
    return web.json_response({
        "object": "list",
        "data": [{"object": "embedding", "index": index,
                  "embedding": encode_vector(vector, parsed.encoding_format)}
                 for index, vector in enumerate(result.vectors)],
        "model": spec.name,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    })


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
"""``/tokenize`` returns the token ids of raw ``content`` up to this many (the count
is always exact)."""


async def tokenize(request: web.Request) -> web.Response:
    """``POST /tokenize``: count a prompt with the model's own tokenizer; nothing is generated.

    Body: ``{"model"?, "messages": [...], "tools"?: [...]}`` or ``{"model"?, "prompt": "..."}``
    (a completion's body, counted exactly as that completion would be: chat
    template with its tools, BOS), or
    ``{"model"?, "content": "..."}`` (raw text, as llama.cpp's server does;
    the ids come back too). Answer: ``{"model", "count"}`` (+ ``"tokens"``).
    The orchestrator uses it to fit prompts to the context exactly.
    """
    state = request.app[BACKEND_STATE]
    body = await read_json(request, state.config.max_body_bytes)
    if not isinstance(body, dict) or \
            sum(key in body for key in ("messages", "prompt", "content")) != 1:
        raise BadRequest("send one of 'messages' (a list), 'prompt' or 'content' (a string)")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest("'model' must be a string", param="model")
    job: GenerationJob | None = None
    if "content" in body:
        if not isinstance(body["content"], str):
            raise BadRequest("'content' must be a string", param="content")
        for key in body:
            if key not in ("content", "model"):
                raise BadRequest(f"unknown field '{key}' beside 'content'", param=key)
    else:
        # Read as the completion it stands for, every field checked alike (nothing is
        # ignored silently), and its tools counted: the template writes them into the prompt.
        kind: Literal["chat", "text"] = "chat" if "messages" in body else "text"
        parsed = structure_request(body, kind)
        job = (GenerationJob(parsed.params, messages=parsed.messages, tools=parsed.tools)
               if isinstance(parsed, ChatCompletionRequest)
               else GenerationJob(parsed.params, prompt=parsed.prompt))
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
    log = CompletionRecord(kind, generates=True, logger=_LOGGER, extra={"finish_reason": None})
    try:
        body = await read_json(request, state.config.max_body_bytes)
        parsed = structure_request(body, kind)
        spec = state.models.resolve(parsed.model)
        log.requested(spec.name, parsed.stream)
        if grammar_from_schemas(parsed):
            # Converting a schema (or many tools' schemas) to a grammar can take
            # seconds: off the loop, so /health and the other streams go on.
            job = await asyncio.get_running_loop().run_in_executor(
                None, _job, parsed, state.config.default_max_tokens)
        else:
            job = _job(parsed, state.config.default_max_tokens)
        state.guard.check()
        envelope = CompletionEnvelope(kind, spec.name, usage_null=parsed.include_usage is True)
        n = parsed.params.n
        if n > state.models.slot_count:
            raise BadRequest(f"'n' may be at most {state.models.slot_count} on this backend "
                             "(one engine slot per answer, CEREBRUM_SLOTS)", param="n")
        async with state.models.use(spec.name, n) as worker:
            try:
                job = await worker.prepare(job)
            except Exception as exc:  # a bad template or tokenizer error fails this request
                if not isinstance(exc, ApiError):
                    _LOGGER.exception("tokenizing a request failed")
                raise _as_api_error(exc) from None
            return await _generate(request, worker.start_choices(job, n), parsed, envelope, log)
    except ApiError as exc:
        log.status = exc.status
        log.outcome = exc.code or exc.error_type
        raise
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the client disconnects.
        log.outcome = "client_disconnected"
        raise
    finally:
        log.write(request.app[METRICS], route_label(request))


def _job(parsed: AnyCompletionRequest, default_max_tokens: int) -> GenerationJob:
    """The model's work for a request: its prompt, sampling and output grammar."""
    params = parsed.params
    compiled = request_grammar(parsed)
    if compiled is not None:
        params = attrs.evolve(params, grammar=compiled)
    logprobs = params.top_logprobs if params.logprobs else None
    if isinstance(parsed, ChatCompletionRequest):
        return GenerationJob(params, default_max_tokens, messages=parsed.messages,
                             tools=parsed.tools, logprobs=logprobs)
    return GenerationJob(params, default_max_tokens, prompt=parsed.prompt,
                         suffix=parsed.suffix, logprobs=logprobs)


def _shaper(parsed: AnyCompletionRequest) -> AnswerShaper:
    if isinstance(parsed, ChatCompletionRequest):
        return AnswerShaper("chat", tools=parsed.tools, logprobs=parsed.params.logprobs)
    return AnswerShaper("text", logprobs=parsed.params.logprobs,
                        text_offset=len(parsed.prompt) if parsed.echo else 0)


async def _generate(request: web.Request, generations: list[Generation],
                    parsed: AnyCompletionRequest, envelope: CompletionEnvelope,
                    log: CompletionRecord) -> web.StreamResponse:
    try:
        for generation in generations:
            first = await generation.next_event()
            if isinstance(first, Failed):
                raise _as_api_error(first.error)
            if not isinstance(first, PromptReady):
                # The engine always announces the prompt first; anything else is a bug
                # there, answered as a generation failure rather than skipped under -O.
                raise _as_api_error(RuntimeError(
                    f"unexpected first event {type(first).__name__}"))
        echo = parsed.prompt if isinstance(parsed, CompletionRequest) and parsed.echo else ""
        include_usage = parsed.include_usage is True
        if parsed.stream:
            return await _stream(request, generations, envelope, parsed, echo,
                                 include_usage, log)
        return await _collect(generations, envelope, parsed, echo, log)
    finally:
        for generation in generations:
            if not generation.done:
                # We are leaving early (client gone, error): stop the model
                # thread, which notices within one token, and wait for it so
                # the model is idle before the next request gets its turn.
                stopped = await generation.stop()
                if stopped is not None:
                    _finished(log, stopped, outcome="client_disconnected")


class _ChunkTemplate:
    """The SSE bytes of a content chunk, with the text as the only variable.

    At ~100 tokens/s on a 2-core VPS every microsecond on the loop is taken
    from the llama threads: building and serialising the whole chunk dict per
    token, and aiohttp-sse's per-send timeout, measurably cost decode speed
    (docs/benchmarks.md). The output is byte-identical to ``sse.send(json.dumps(chunk))``.
    """

    _MARK = "\x00"

    def __init__(self, envelope: CompletionEnvelope, index: int = 0) -> None:
        text = json.dumps(_indexed(envelope.chunk(self._MARK), index))
        head, tail = text.split(json.dumps(self._MARK), 1)
        self._head = b"data: " + head.encode()
        self._tail = tail.encode() + b"\r\n\r\n"

    def render(self, piece: str) -> bytes:
        """One event for ``piece``, which ``json.dumps`` escapes (newlines included)."""
        return self._head + json.dumps(piece).encode() + self._tail


def _events(envelope: CompletionEnvelope, template: _ChunkTemplate,
            parts: list[Part], index: int = 0) -> list[bytes]:
    """The SSE events for some answer parts (content through the fast template)."""
    out = []
    for part in parts:
        if isinstance(part, Content):
            if part.logprobs is None:
                out.append(template.render(part.text))
            else:
                out.append(_sse(_indexed(envelope.chunk(part.text, logprobs=part.logprobs),
                                         index)))
        else:
            out.extend(_sse(_indexed(envelope.chunk(None, tool_calls=delta), index))
                       for delta in part.deltas())
    return out


def _indexed(chunk: dict[str, Any], index: int) -> dict[str, Any]:
    """``chunk`` (one choice) as the choice numbered ``index`` (OpenAI's ``n``)."""
    if index:
        for choice in chunk["choices"]:
            choice["index"] = index
    return chunk


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\r\n\r\n"


async def _stream(
    request: web.Request, generations: list[Generation], envelope: CompletionEnvelope,
    parsed: AnyCompletionRequest, echo: str, include_usage: bool, log: CompletionRecord,
) -> EventSourceResponse:
    """The answer as SSE. Several answers (``n`` > 1) share the stream: each chunk
    names its choice's index, in the order the tokens come, and the usage rides on
    the last finish (or, with ``include_usage``, on a chunk of its own)."""
    templates = [_ChunkTemplate(envelope, i) for i in range(len(generations))]
    shapers = [_shaper(parsed) for _ in generations]
    async with _tagged_events(generations) as next_event:
        async with sse_response(request, allow_all_methods=True) as sse:
            try:
                for i, template in enumerate(templates):
                    await sse.send(json.dumps(_indexed(envelope.chunk(
                        "" if envelope.kind == "chat" else None, first=True), i)))
                    if echo:
                        await sse.write(template.render(echo))
                log.mark_first_byte()
                finished: dict[int, Finished] = {}
                while len(finished) < len(generations):
                    index, event = await next_event()
                    shaper = shapers[index]
                    if isinstance(event, TextPiece):
                        log.mark_first_token()
                        # A stalled client is still cut off: aiohttp-sse sets the
                        # socket's TCP_USER_TIMEOUT to its send timeout.
                        for data in _events(envelope, templates[index],
                                            shaper.piece(event.text, event.logprobs), index):
                            await sse.write(data)
                    elif isinstance(event, Finished):
                        finished[index] = event
                        for data in _events(envelope, templates[index], shaper.end(), index):
                            await sse.write(data)
                        last = len(finished) == len(generations)
                        total = _total(list(finished.values()))
                        used = usage(total.prompt_tokens, total.completion_tokens)
                        await sse.send(json.dumps(_indexed(envelope.chunk(
                            None, finish_reason=shaper.finish_reason(event.reason),
                            usage_=used if last and not include_usage else None), index)))
                        if last:
                            _finished(log, total)
                            if include_usage:
                                await sse.send(json.dumps(envelope.usage_chunk(used)))
                            await sse.send("[DONE]")
                    elif isinstance(event, Failed):
                        error = _as_api_error(event.error)
                        log.outcome = "error"
                        await error.send_as_event(sse)
                        break
            except ConnectionError:
                log.outcome = "client_disconnected"
            except Exception:
                # A bug past the first bytes: no JSON error can replace the stream, so
                # it ends with an error event (and no [DONE]) that the client can read.
                _LOGGER.exception("the stream failed part way")
                log.outcome = "error"
                await ApiError("internal server error").send_as_event(sse)
    return sse


@contextlib.asynccontextmanager
async def _tagged_events(
    generations: list[Generation],
) -> AsyncIterator[Callable[[], Awaitable[tuple[int, Event]]]]:
    """``next_event()`` for several generations at once: ``(index, event)``.

    One generation is read directly (no task, no extra queue hop per token:
    the loop's time per token is taken from decoding); several are pumped
    into one queue by a task each, cancelled on the way out.
    """
    if len(generations) == 1:
        (only,) = generations

        async def direct() -> tuple[int, Event]:
            return 0, await only.next_event()

        yield direct
        return
    merged: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()

    async def pump(index: int, generation: Generation) -> None:
        while True:
            event = await generation.next_event()
            merged.put_nowait((index, event))
            if isinstance(event, Finished | Failed):
                return

    pumps = [asyncio.create_task(pump(i, g)) for i, g in enumerate(generations)]
    try:
        yield merged.get
    finally:
        for task in pumps:
            task.cancel()


def _total(finishes: list[Finished]) -> Finished:
    """One request's figures over its choices: the prompt once, every answer's tokens."""
    return Finished(finishes[0].reason, finishes[0].prompt_tokens,
                    sum(f.completion_tokens for f in finishes))


async def _collect(
    generations: list[Generation], envelope: CompletionEnvelope,
    parsed: AnyCompletionRequest, echo: str, log: CompletionRecord,
) -> web.Response:
    answers = await asyncio.gather(*[_collect_choice(g, envelope, _shaper(parsed), echo, log)
                                     for g in generations])
    total = _total([finished for _, finished in answers])
    _finished(log, total)
    body = envelope.whole("", "stop", usage(total.prompt_tokens, total.completion_tokens))
    body["choices"] = [dict(choice, index=i) for i, (choice, _) in enumerate(answers)]
    log.mark_first_byte()
    return web.json_response(body)


async def _collect_choice(
    generation: Generation, envelope: CompletionEnvelope, shaper: AnswerShaper, echo: str,
    log: CompletionRecord,
) -> tuple[dict[str, Any], Finished]:
    """One whole answer: its choice object and its figures."""
    parts: list[Part] = []
    while True:
        event = await generation.next_event()
        if isinstance(event, TextPiece):
            log.mark_first_token()
            parts.extend(shaper.piece(event.text, event.logprobs))
        elif isinstance(event, Finished):
            parts.extend(shaper.end())
            contents = [p for p in parts if isinstance(p, Content)]
            logprobs = merge_logprobs(envelope.kind, [p.logprobs for p in contents])
            if shaper.logprobs and logprobs is None:
                logprobs = empty_logprobs(envelope.kind)
            text = echo + "".join(p.text for p in contents)
            if shaper.calls:
                text = text.strip()
            body = envelope.whole(
                text, shaper.finish_reason(event.reason),
                usage(event.prompt_tokens, event.completion_tokens), logprobs=logprobs,
                tool_calls=[call.wire() for call in shaper.calls] or None)
            return body["choices"][0], event
        elif isinstance(event, Failed):
            raise _as_api_error(event.error)


def _as_api_error(error: BaseException) -> ApiError:
    if isinstance(error, ApiError):
        return error
    return GenerationError("the model failed while generating")


def _finished(log: CompletionRecord, event: Finished, outcome: str = "ok") -> None:
    """Note the end of a generation on the request's completion line."""
    log.prompt_tokens = event.prompt_tokens
    log.completion_tokens = event.completion_tokens
    log.note(finish_reason=event.reason)
    log.outcome = outcome
