"""Workspace vectors on the orchestrator (opt-in): fill them after a commit, embed a question.

With ``CEREBRUM_WORKSPACE_EMBEDDINGS_MODEL`` set, every commit starts a fill
of that workspace in the background: live units without a vector are sent to
the backends' ``POST /v1/embeddings`` in batches (through the shared
``Upstream``, so breakers and failover apply), one request at a time, and
kept in the workspace's SQLite. The commit does not wait for it: a first
index of a large repository takes minutes of the backend's time, and
retrieval serves units without a vector lexically meanwhile. A failure (the
backend restarting, busy past the read timeout) is tried again after 10 s,
1 min and 5 min; after that the fill ends (logged), the units stay
lexical-only and the next commit's fill takes them up. A question is
embedded just before retrieval; if that fails or is slow the retrieval is
lexical.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp
import attrs

from cerebrum.errors import ApiError
from cerebrum.orchestrator.upstream import Upstream
from cerebrum.workspace.store import WorkspaceStore
from cerebrum.workspace.vectors import encode, text_digest

_LOGGER = logging.getLogger(__name__)

QUESTION_CHARS = 4000
"""A question is cut to this before it is sent: the model keeps its first 128-256 tokens."""


class EmbeddingFailed(Exception):
    """The embeddings endpoint gave no usable answer; the message says what it gave."""


@attrs.frozen
class VectorSettings:
    """``CEREBRUM_WORKSPACE_EMBEDDINGS_*``: the model, its batch size, a question's wait."""

    model: str
    batch: int = 32
    question_timeout_s: float = 10.0


@attrs.define
class WorkspaceVectors:
    """The workspaces' embeddings client and their background fills (one per workspace)."""

    settings: VectorSettings
    """The model; a question waits ``question_timeout_s`` for its vector, then is answered
    lexically."""
    upstream: Callable[[], Upstream]
    """The app's ``Upstream`` (made when the app starts, after this)."""
    fills: dict[Path, asyncio.Task[None]] = attrs.field(factory=dict)
    again: set[Path] = attrs.field(factory=set)
    """Workspaces committed to while their fill ran: it runs once more."""
    retry_delays_s: tuple[float, ...] = (10.0, 60.0, 300.0)
    """A failed fill waits this long before each new try, then gives up."""

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order (cut to the model's context by the backend)."""
        payload = json.dumps({"model": self.settings.model, "input": list(texts), "truncate": True},
                             ensure_ascii=False).encode()
        try:
            reply = await self.upstream().fetch("/v1/embeddings", payload, self.settings.model,
                                                expect="data")
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            raise EmbeddingFailed(f"{type(exc).__name__}: {exc}") from None
        if reply.status != 200:
            raise EmbeddingFailed(f"HTTP {reply.status}: {reply.body[:300]!r}")
        try:
            data = sorted(json.loads(reply.body)["data"], key=lambda item: item["index"])
            vectors = [[float(x) for x in item["embedding"]] for item in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingFailed(f"not an embeddings answer: {exc}") from None
        if len(vectors) != len(texts) or len({len(v) for v in vectors}) > 1:
            raise EmbeddingFailed(f"{len(vectors)} vectors for {len(texts)} texts")
        return vectors

    async def question_vector(self, store: WorkspaceStore, question: str) -> list[float] | None:
        """The question's vector when the workspace has vectors of this model, else None
        (also when embedding it fails or takes over ``question_timeout_s``)."""
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(None, store.vector_model) != self.settings.model:
            return None
        try:
            async with asyncio.timeout(self.settings.question_timeout_s):
                return (await self.embed([question[:QUESTION_CHARS] or " "]))[0]
        except (EmbeddingFailed, TimeoutError) as exc:
            _LOGGER.warning("workspace %s: the question was not embedded (%s); retrieving "
                            "lexically", store.name,
                            str(exc) or f"no answer in {self.settings.question_timeout_s:g} s")
            return None

    def fill(self, store: WorkspaceStore) -> None:
        """Start filling ``store``'s missing vectors in the background (again after the
        running fill, if one runs)."""
        running = self.fills.get(store.path)
        if running is not None and not running.done():
            self.again.add(store.path)
            return
        self.fills[store.path] = asyncio.create_task(self._fill(store),
                                                     name=f"vectors-{store.name}")

    async def idle(self) -> None:
        """Wait until no fill runs (tests, and shutdown)."""
        while running := [task for task in self.fills.values() if not task.done()]:
            await asyncio.gather(*running, return_exceptions=True)

    async def stop(self, path: Path) -> None:
        """Stop the fill of the workspace at ``path`` (it is being deleted)."""
        self.again.discard(path)
        task = self.fills.pop(path, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        for path in list(self.fills):
            await self.stop(path)

    async def _fill(self, store: WorkspaceStore) -> None:
        loop = asyncio.get_running_loop()
        retries = list(self.retry_delays_s)
        while True:
            self.again.discard(store.path)
            try:
                await self._fill_once(store, loop)
            except EmbeddingFailed as exc:
                if retries:
                    delay = retries.pop(0)
                    _LOGGER.warning("workspace %s: embedding failed (%s); trying again in "
                                    "%g s", store.name, exc, delay,
                                    extra={"event": "vectors", "workspace": store.name})
                    await asyncio.sleep(delay)
                    continue
                _LOGGER.warning("workspace %s: embedding stopped (%s); its other units stay "
                                "lexical until the next index run", store.name, exc,
                                extra={"event": "vectors", "workspace": store.name})
            except Exception:  # a fill must never take the orchestrator down
                _LOGGER.exception("workspace %s: embedding failed", store.name)
            if store.path not in self.again:
                return

    async def _fill_once(self, store: WorkspaceStore, loop: asyncio.AbstractEventLoop) -> None:
        started, embedded = time.perf_counter(), 0
        while True:
            try:
                todo = await loop.run_in_executor(
                    None, store.units_to_embed, self.settings.model, self.settings.batch)
            except FileNotFoundError:
                return
            if not todo:
                break
            vectors = await self.embed([text for _, text in todo])
            rows = [(unit_id, text_digest(text), encode(vector))
                    for (unit_id, text), vector in zip(todo, vectors, strict=True)]
            if not store.path.exists():
                return  # deleted meanwhile
            kept = await loop.run_in_executor(None, store.put_vectors, self.settings.model, rows)
            embedded += kept
            if not kept:
                break  # every unit changed meanwhile: the commit that changed them fills again
        if embedded:
            _LOGGER.info("workspace %s: embedded %d units in %.1f s", store.name, embedded,
                         time.perf_counter() - started,
                         extra={"event": "vectors", "workspace": store.name,
                                "units": embedded})


def vector_bridge(vectors: WorkspaceVectors, loop: asyncio.AbstractEventLoop,
                  store: WorkspaceStore) -> Callable[[str], list[float] | None]:
    """``question -> vector or None`` for a retriever running in a worker thread: the
    request goes out on the event loop, the thread waits for it (each question once)."""
    cache: dict[str, list[float] | None] = {}

    def embed(question: str) -> list[float] | None:
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            return None  # on the loop's own thread waiting would block it: lexical
        if question not in cache:
            future = asyncio.run_coroutine_threadsafe(
                vectors.question_vector(store, question), loop)
            try:
                cache[question] = future.result(vectors.settings.question_timeout_s + 5.0)
            except Exception:  # the retrieval goes on lexically
                future.cancel()
                cache[question] = None
        return cache[question]

    return embed
