"""ModelManager: which models are loaded, loading them on demand, unloading them.

- Loading is single-flight: any number of requests for an unloaded model
  cause one load, and all of them wait for it.
- Up to ``slots`` requests per model run at once (batched by its engine);
  more wait in arrival order (a FIFO ``asyncio.Semaphore`` per model), a
  bounded number of them (``max_queue``); beyond that, 503 with Retry-After.
- When the service stops, requests still waiting for a slot (or for a load)
  get 503 at once, so a client can retry elsewhere instead of being started
  and then cut at the end of the drain; those generating finish.
- A model idle for ``idle_unload_s`` is unloaded; when loading one would take
  available RAM below the floor, least recently used idle models are unloaded
  first, and if that is not enough the load is refused with 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal, TypeVar

import attrs

from cerebrum.backend.metrics import ModelMetrics
from cerebrum.backend.registry import ModelRegistry, ModelSpec
from cerebrum.backend.resources import ResourceReader
from cerebrum.backend.worker import ModelWorker
from cerebrum.errors import ModelNotFound, Unavailable

_LOGGER = logging.getLogger(__name__)

_T = TypeVar("_T")

ModelState = Literal["unloaded", "loading", "loaded"]

# A loaded GGUF takes about its file size plus the KV cache and buffers.
_RAM_OVERHEAD = 1.2
_RAM_FIXED_MB = 64.0


def estimated_ram_mb(spec: ModelSpec) -> float:
    """What loading ``spec`` is expected to take from available RAM."""
    return spec.file_mb() * _RAM_OVERHEAD + _RAM_FIXED_MB


@attrs.define(eq=False)
class _Slot:
    """Per-model bookkeeping that outlives any one load."""

    spec: ModelSpec
    permits: asyncio.Semaphore
    """One per engine slot: a request holds one per choice while it generates."""
    admission: asyncio.Lock = attrs.field(factory=asyncio.Lock)
    """Held while a request takes its permits, so two requests of several choices
    cannot each hold part of what the other needs."""
    pending: int = 0
    """Requests admitted and not finished (running + waiting)."""
    worker: ModelWorker | None = None
    loading: asyncio.Future[ModelWorker] | None = None
    last_used: float = 0.0
    mean_duration_s: float = 5.0
    loads: int = 0


class ModelManager:
    """Owns the workers of all models in the registry."""

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        threads: int,
        idle_unload_s: float,
        min_free_ram_mb: float,
        max_queue: int,
        reader: ResourceReader,
        clock: Callable[[], float] = time.monotonic,
        worker_factory: Callable[..., ModelWorker] = ModelWorker,
        metrics: ModelMetrics | None = None,
        slots: int = 1,
        worker_kwargs: dict[str, Any] | None = None,
    ) -> None:
        """``slots`` requests per model run at once; ``worker_kwargs`` go to each new worker."""
        self.registry = registry
        self._threads = threads
        self._idle_unload_s = idle_unload_s
        self._min_free_ram_mb = min_free_ram_mb
        self._max_queue = max_queue
        self._reader = reader
        self._clock = clock
        self._worker_factory = worker_factory
        self._metrics = metrics
        self._slot_count = slots
        self._worker_kwargs = worker_kwargs or {}
        self._slots = {spec.name: _Slot(spec, asyncio.Semaphore(slots)) for spec in registry}
        self._stopping = asyncio.Event()
        if metrics:
            for spec in registry:
                metrics.loaded.labels(spec.name).set(0)  # present from the first scrape

    # -- queries -------------------------------------------------------------

    def resolve(self, name: str | None) -> ModelSpec:
        """The spec for a requested model name (None: the default); 404 if unknown."""
        if name is None or name == "auto":
            return self.registry.default
        spec = self.registry.get(name)
        if spec is None:
            known = ", ".join(s.name for s in self.registry)
            raise ModelNotFound(f"the model {name!r} does not exist; available: {known}",
                                param="model")
        return spec

    def state(self, name: str) -> ModelState:
        slot = self._slots[name]
        if slot.worker is not None:
            return "loaded"
        if slot.loading is not None:
            return "loading"
        return "unloaded"

    def loaded_models(self) -> list[str]:
        return [name for name, slot in self._slots.items() if slot.worker is not None]

    def loads(self, name: str) -> int:
        """How many times ``name`` has been loaded (for tests and metrics)."""
        return self._slots[name].loads

    def engines(self) -> list[tuple[str, Any]]:
        """``(name, Engine)`` of every loaded model (for ``/metrics``)."""
        return [(name, slot.worker.engine) for name, slot in self._slots.items()
                if slot.worker is not None and getattr(slot.worker, "engine", None) is not None]

    def worker(self, name: str) -> ModelWorker | None:
        """The loaded worker of ``name``, if any (for tests and metrics)."""
        return self._slots[name].worker

    def busy(self, name: str) -> bool:
        return self._slots[name].pending > 0

    # -- use -----------------------------------------------------------------

    @property
    def slot_count(self) -> int:
        """Requests (choices) one model runs at once: CEREBRUM_SLOTS."""
        return self._slot_count

    @contextlib.asynccontextmanager
    async def use(self, name: str, choices: int = 1) -> AsyncIterator[ModelWorker]:
        """Wait for this model's turn (loading it if needed) and hold it while in the block.

        ``choices`` slots are held (OpenAI's ``n``); the caller keeps it within
        ``slot_count``."""
        slot = self._slots[name]
        self._refuse_if_stopping()
        waiting = slot.pending - self._slot_count + 1  # counting this request
        if waiting > self._max_queue:
            raise Unavailable(
                f"model {name!r} has all {self._slot_count} slots busy and {waiting - 1} "
                f"requests waiting, the most allowed (CEREBRUM_MAX_QUEUE={self._max_queue}); "
                "try again shortly",
                retry_after=slot.mean_duration_s * waiting / self._slot_count,
                code="queue_full",
            )
        slot.pending += 1
        started = None
        try:
            if slot.worker is None:  # (loaded, there is nothing to wait for)
                await self._unless_stopping(self.ensure_loaded(name))
            async with self._permits(slot, choices):
                self._refuse_if_stopping()  # the stop began while it waited
                # Idle unload and eviction skip models with pending requests,
                # so the worker loaded above is still here.
                assert slot.worker is not None
                started = self._clock()
                yield slot.worker
        finally:
            slot.pending -= 1
            now = self._clock()
            slot.last_used = now
            if started is not None:
                slot.mean_duration_s += 0.2 * ((now - started) - slot.mean_duration_s)

    @contextlib.asynccontextmanager
    async def _permits(self, slot: _Slot, count: int) -> AsyncIterator[None]:
        held = 0
        try:
            async with slot.admission:
                for _ in range(count):
                    if slot.permits.locked():
                        await self._unless_stopping(slot.permits.acquire())
                    else:  # a free slot is taken at once: no wait to race a stop against
                        await slot.permits.acquire()
                    held += 1
            yield
        finally:
            for _ in range(held):
                slot.permits.release()

    def stop_admitting(self) -> None:
        """The service is stopping: refuse requests that are not generating yet.

        Requests waiting for a slot or a load get 503 now, and so does every
        later one; those already generating keep their slots and finish
        within the drain."""
        self._stopping.set()

    def _refuse_if_stopping(self) -> None:
        if self._stopping.is_set():
            raise Unavailable("the backend is stopping; try again shortly (or another backend)",
                              retry_after=10, code="shutting_down")

    async def _unless_stopping(self, waiting: Awaitable[_T]) -> _T:
        """``await waiting``, or 503 as soon as the service starts stopping.

        If both happen in one turn of the loop, what ``waiting`` got is kept
        (a permit is released by the caller's ``finally``, a load stays loaded)."""
        task = asyncio.ensure_future(waiting)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if task.cancelled():
            self._refuse_if_stopping()
        return task.result()

    async def ensure_loaded(self, name: str) -> ModelWorker:
        """Load ``name`` if needed; concurrent callers share one load."""
        slot = self._slots[name]
        if slot.worker is not None:
            return slot.worker
        if slot.loading is None:
            slot.loading = asyncio.ensure_future(self._load(slot))
        # shield: one caller leaving must not cancel the load the others wait for.
        return await asyncio.shield(slot.loading)

    async def _load(self, slot: _Slot) -> ModelWorker:
        try:
            await self._make_room_for(slot.spec)
            worker = self._worker_factory(slot.spec, threads=self._threads,
                                          **self._worker_kwargs)
            started = time.perf_counter()
            _LOGGER.info("loading model",
                         extra={"event": "model_load_start", "model": slot.spec.name})
            try:
                await worker.load()
            except Exception as exc:
                await worker.close()
                _LOGGER.error("model failed to load: %s", exc,
                              extra={"event": "model_load_failed", "model": slot.spec.name})
                raise Unavailable(f"model {slot.spec.name!r} failed to load", retry_after=30,
                                  code="model_load_failed") from exc
            slot.worker = worker
            slot.loads += 1
            slot.last_used = self._clock()
            seconds = time.perf_counter() - started
            if self._metrics:
                self._metrics.loaded_model(slot.spec.name, seconds, estimated_ram_mb(slot.spec))
            _LOGGER.info("model loaded", extra={
                "event": "model_loaded", "model": slot.spec.name, "load_s": round(seconds, 3)})
            return worker
        finally:
            slot.loading = None

    async def _make_room_for(self, spec: ModelSpec) -> None:
        need = estimated_ram_mb(spec)
        while self._reader.available_mb() - need < self._min_free_ram_mb:
            victims = [s for s in self._slots.values() if s.worker is not None and s.pending == 0]
            if not victims:
                raise Unavailable(
                    f"not enough memory to load {spec.name!r}: it needs about {need:.0f} MB and "
                    f"only {self._reader.available_mb():.0f} MB are available above the floor of "
                    f"{self._min_free_ram_mb:.0f} MB",
                    retry_after=30,
                    code="insufficient_memory",
                )
            lru = min(victims, key=lambda s: s.last_used)
            await self.unload(lru.spec.name, reason="memory")

    async def unload(self, name: str, *, reason: str) -> None:
        """Unload ``name`` now (it must not be in use)."""
        slot = self._slots[name]
        worker, slot.worker = slot.worker, None
        if worker is None:
            return
        await worker.close()
        if self._metrics:
            self._metrics.unloaded_model(name, reason)
        _LOGGER.info("model unloaded", extra={"event": "model_unloaded", "model": name,
                                               "reason": reason})

    async def unload_idle(self) -> list[str]:
        """Unload every model idle for longer than the idle timeout; returns their names."""
        now = self._clock()
        idle = [
            name for name, slot in self._slots.items()
            if slot.worker is not None and slot.pending == 0
            and now - slot.last_used >= self._idle_unload_s
        ]
        for name in idle:
            await self.unload(name, reason="idle")
        return idle

    async def run_idle_unloader(self) -> None:
        """Check for idle models forever; started and cancelled by the app."""
        interval = min(30.0, max(0.05, self._idle_unload_s / 4))
        while True:
            await asyncio.sleep(interval)
            await self.unload_idle()

    async def close(self) -> None:
        """Unload everything (service shutdown)."""
        for slot in self._slots.values():
            if slot.loading is not None:
                with contextlib.suppress(Exception):
                    await slot.loading
        for name in list(self._slots):
            await self.unload(name, reason="shutdown")
