"""``POST /v1/embeddings``: each embedding model's own llama.cpp context, on its own thread.

A generation context cannot give pooled embeddings (llama.cpp fixes
``embeddings`` and the pooling type when a context is created), so a model
the registry marks ``embeddings = true`` gets a second context opened with
embeddings on and the registry's pooling (see ``cerebrum.backend.registry``
for why ``mean`` is the default for a chat model). The GGUF is memory-mapped,
so the weights are shared with the generating context; only the small
context itself is extra. It is loaded on first use and unloaded after
``CEREBRUM_IDLE_UNLOAD_S`` without requests, like a generating model.

One thread per embedding model owns its context (contexts are not
thread-safe); requests beyond ``CEREBRUM_MAX_QUEUE`` waiting get 503.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
from aiohttp import web

from cerebrum.backend import repacking
from cerebrum.backend.registry import ModelRegistry, ModelSpec
from cerebrum.errors import BadRequest, ContextLengthExceeded, Unavailable

_LOGGER = logging.getLogger(__name__)

_POOLING = {"mean": 1, "cls": 2, "last": 3}
"""llama.cpp's ``LLAMA_POOLING_TYPE_*`` values."""


@attrs.frozen
class Embedded:
    """Vectors (unit length) in input order, and the tokens they took."""

    vectors: list[list[float]]
    prompt_tokens: int


class Embedder:
    """One model's embedding context, owned by one thread."""

    def __init__(self, spec: ModelSpec, *, threads: int) -> None:
        self.spec = spec
        self.threads = spec.threads or threads
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix=f"embed-{spec.name}")
        self._llama: Any = None
        self.dimension = 0

    async def load(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load_sync)

    async def embed(self, texts: Sequence[str], *, truncate: bool = False) -> Embedded:
        """``truncate``: keep each text's first tokens that fit the context, instead of
        refusing a longer text."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._embed_sync, list(texts), truncate)

    async def close(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_sync)
        finally:
            self._executor.shutdown(wait=False)

    def _load_sync(self) -> None:
        import llama_cpp

        _lower_this_threads_priority()
        repacking.guard()
        n_ctx = self.spec.context_size
        self._llama = llama_cpp.Llama(
            model_path=str(self.spec.path),
            embedding=True,
            pooling_type=_POOLING[self.spec.embedding_pooling],
            # A pooled input must fit in one micro-batch.
            n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
            n_threads=self.threads, n_threads_batch=self.threads,
            verbose=False,
        )
        self.dimension = int(self._llama.n_embd())

    def _embed_sync(self, texts: list[str], truncate: bool = False) -> Embedded:
        llama = self._llama
        n_ctx = llama.n_ctx()
        counts = []
        for index, text in enumerate(texts):
            count = len(llama.tokenize(text.encode("utf-8"), add_bos=True, special=False))
            if truncate:
                count = min(count, n_ctx)
            elif count > n_ctx:
                where = "input" if len(texts) == 1 else f"input[{index}]"
                raise ContextLengthExceeded(
                    f"'{where}' is {count} tokens, {count - n_ctx} over this model's context "
                    f"of {n_ctx} tokens", param=where)
            counts.append(count)
        # llama-cpp-python cuts to n_batch, which is n_ctx here.
        vectors = llama.embed(texts, normalize=True, truncate=truncate)
        return Embedded([list(map(float, v)) for v in vectors], sum(counts))

    def _close_sync(self) -> None:
        if self._llama is not None:
            self._llama.close()
        self._llama = None


@attrs.define(eq=False)
class _Entry:
    spec: ModelSpec
    embedder: Embedder | None = None
    loading: asyncio.Future[Embedder] | None = None
    pending: int = 0
    last_used: float = 0.0


class EmbeddingService:
    """The embedding contexts of every model that may embed: load, queue, unload."""

    def __init__(self, registry: ModelRegistry, *, threads: int, max_queue: int,
                 idle_unload_s: float, clock: Callable[[], float] = time.monotonic,
                 embedder_factory: Callable[..., Embedder] = Embedder) -> None:
        self._entries = {spec.name: _Entry(spec) for spec in registry if spec.embeddings}
        self._registry = registry
        self._threads = threads
        self._max_queue = max_queue
        self._idle_unload_s = idle_unload_s
        self._clock = clock
        self._factory = embedder_factory

    def resolve(self, spec: ModelSpec, named: bool) -> ModelSpec:
        """The model to embed with: ``spec`` (already resolved) if it may embed.

        A request naming no model gets the first that may embed.
        """
        if spec.name in self._entries:
            return spec
        if not named and self._entries:
            return next(iter(self._entries.values())).spec
        embedding = ", ".join(self._entries) or "none"
        raise BadRequest(f"the model {spec.name!r} does not serve embeddings (the registry "
                         f"marks it so with embeddings = true); models that do: {embedding}",
                         param="model", code="model_not_embedding")

    async def embedder(self, name: str) -> Embedder:
        """The loaded embedder of ``name``; concurrent callers share one load."""
        entry = self._entries[name]
        if entry.embedder is not None:
            return entry.embedder
        if entry.loading is None:
            entry.loading = asyncio.ensure_future(self._load(entry))
        return await asyncio.shield(entry.loading)

    @contextlib.asynccontextmanager
    async def use(self, name: str) -> AsyncIterator[Embedder]:
        """Hold ``name``'s embedder for one request (loading it first if needed)."""
        entry = self._entries[name]
        if entry.pending > self._max_queue:
            raise Unavailable(f"model {name!r} has {entry.pending} embedding requests waiting, "
                              f"the most allowed (CEREBRUM_MAX_QUEUE={self._max_queue})",
                              retry_after=1, code="queue_full")
        entry.pending += 1
        try:
            yield await self.embedder(name)
        finally:
            entry.pending -= 1
            entry.last_used = self._clock()

    async def _load(self, entry: _Entry) -> Embedder:
        embedder = self._factory(entry.spec, threads=self._threads)
        try:
            await embedder.load()
        except Exception as exc:
            await embedder.close()
            _LOGGER.error("embedding model failed to load: %s", exc,
                          extra={"event": "model_load_failed", "model": entry.spec.name})
            raise Unavailable(f"model {entry.spec.name!r} failed to load for embeddings",
                              retry_after=30, code="model_load_failed") from exc
        finally:
            entry.loading = None
        entry.embedder = embedder
        entry.last_used = self._clock()
        _LOGGER.info("embedding model loaded", extra={"event": "embedding_model_loaded",
                                                       "model": entry.spec.name})
        return embedder

    def loaded(self) -> list[str]:
        return [name for name, entry in self._entries.items() if entry.embedder is not None]

    async def unload_idle(self) -> list[str]:
        """Unload every embedder idle past the idle timeout; returns their names."""
        now = self._clock()
        idle = [name for name, entry in self._entries.items()
                if entry.embedder is not None and entry.pending == 0
                and now - entry.last_used >= self._idle_unload_s]
        for name in idle:
            await self._unload(name)
        return idle

    async def _unload(self, name: str) -> None:
        entry = self._entries[name]
        embedder, entry.embedder = entry.embedder, None
        if embedder is not None:
            await embedder.close()
            _LOGGER.info("embedding model unloaded", extra={"event": "embedding_model_unloaded",
                                                             "model": name})

    async def close(self) -> None:
        for entry in self._entries.values():
            if entry.loading is not None:
                with contextlib.suppress(Exception):
                    await entry.loading
        for name in self._entries:
            await self._unload(name)


EMBEDDINGS = web.AppKey("embeddings", EmbeddingService)


def setup_embeddings(app: web.Application, service: EmbeddingService) -> None:
    """Keep ``service`` under ``EMBEDDINGS``, unload idle models, close it on shutdown."""
    app[EMBEDDINGS] = service

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async def unload_forever() -> None:
            interval = min(30.0, max(0.05, service._idle_unload_s / 4))
            while True:
                await asyncio.sleep(interval)
                await service.unload_idle()

        task = asyncio.create_task(unload_forever(), name="embedding-idle-unloader")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await service.close()

    app.cleanup_ctx.append(lifecycle)


def encode_vector(vector: Sequence[float], encoding: str) -> list[float] | str:
    """A vector as OpenAI sends it: floats, or base64 of little-endian float32."""
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return list(vector)


GENERATION_NICE = 5


def _lower_this_threads_priority() -> None:
    """Embedding threads run below the event loop, like the generating model's."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid,
                       min(19, os.getpriority(os.PRIO_PROCESS, tid) + GENERATION_NICE))
    except (AttributeError, OSError):
        _LOGGER.debug("could not lower the embedding thread's priority", exc_info=True)
