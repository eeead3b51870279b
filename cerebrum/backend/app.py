"""The backend's application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from cerebrum.backend import views
from cerebrum.backend.config import BackendConfig
from cerebrum.backend.embeddings import EmbeddingService, setup_embeddings
from cerebrum.backend.metrics import EngineCollector, ModelMetrics
from cerebrum.backend.models import ModelManager
from cerebrum.backend.registry import ModelRegistry, load_registry
from cerebrum.backend.resources import PsutilReader, ResourceGuard, ResourceReader
from cerebrum.backend.state import BACKEND_STATE, BackendState
from cerebrum.metrics import setup_metrics
from cerebrum.middlewares import setup_auth, setup_errors, setup_request_id

_LOGGER = logging.getLogger(__name__)

PUBLIC_PATHS = ("/health",)


def create_backend_app(
    config: BackendConfig,
    *,
    registry: ModelRegistry | None = None,
    reader: ResourceReader | None = None,
    clock: Callable[[], float] | None = None,
    sample_interval_s: float = 1.0,
) -> web.Application:
    """Build the backend app. ``registry``, ``reader`` and ``clock`` are for tests.

    ``config`` is already valid: ``BackendConfig`` refuses to exist without a key
    unless ``allow_no_key`` says so.
    """
    reader = reader or PsutilReader()
    manager_kwargs: dict[str, Any] = {"clock": clock} if clock else {}
    # client_max_size is a second line: read_json refuses large bodies first.
    app = web.Application(client_max_size=config.max_body_bytes)
    # Order: the request id first so every later line and error carries it;
    # metrics next so they see every final status, errors included; then
    # error rendering, so auth failures render as JSON; auth last.
    setup_request_id(app)
    http_metrics = setup_metrics(app)
    setup_errors(app)
    setup_auth(app, [config.api_key] if config.api_key else [], public=PUBLIC_PATHS)
    guard = ResourceGuard(reader, config.max_cpu_percent, config.min_free_ram_mb)

    def room_mb() -> float:
        # Read now, not the guard's last sample: a load or a cache save is
        # about to allocate.
        return reader.available_mb() - config.min_free_ram_mb

    models = ModelManager(
        registry or load_registry(config.models),
        threads=config.threads,
        idle_unload_s=config.idle_unload_s,
        min_free_ram_mb=config.min_free_ram_mb,
        max_queue=config.max_queue,
        reader=reader,
        metrics=ModelMetrics(http_metrics.registry),
        slots=config.slots,
        worker_kwargs={
            "slots": config.slots,
            "prompt_cache_mb": config.prompt_cache_mb,
            "prompt_cache_disk_mb": config.prompt_cache_disk_mb,
            "prompt_cache_dir": config.prompt_cache_dir,
            "prefill_chunk": config.prefill_chunk,
            "model_nice": config.model_nice,
            "room_mb": room_mb,
        },
        **manager_kwargs,
    )
    http_metrics.registry.register(EngineCollector(models.engines))
    state = BackendState(config=config, models=models, guard=guard)
    app[BACKEND_STATE] = state
    app.cleanup_ctx.append(_background_tasks(sample_interval_s))
    app.on_shutdown.append(_stop_admitting)
    app.router.add_post("/v1/chat/completions", views.chat_completions)
    app.router.add_post("/v1/completions", views.completions)
    app.router.add_get("/v1/models", views.list_models)
    app.router.add_get("/v1/models/{model:.+}", views.get_model)
    app.router.add_post("/v1/embeddings", views.embeddings)
    setup_embeddings(app, EmbeddingService(
        state.models.registry, threads=config.threads, max_queue=config.max_queue,
        idle_unload_s=config.idle_unload_s))
    app.router.add_get("/health", views.health)
    app.router.add_post("/tokenize", views.tokenize)
    return app


async def _stop_admitting(app: web.Application) -> None:
    # aiohttp calls this once the listener is closed, before it waits out the
    # handlers in flight: whatever has not started generating is refused now.
    app[BACKEND_STATE].models.stop_admitting()


def _background_tasks(
    sample_interval_s: float,
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def background(app: web.Application) -> AsyncIterator[None]:
        state = app[BACKEND_STATE]
        state.guard.sample()
        tasks = [
            asyncio.create_task(state.guard.run(sample_interval_s), name="resource-guard"),
            asyncio.create_task(state.models.run_idle_unloader(), name="idle-unloader"),
        ]
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await state.models.close()

    return background
