"""The orchestrator's application factory."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web

from cerebrum.metrics import setup_metrics
from cerebrum.middlewares import setup_auth, setup_errors, setup_request_id
from cerebrum.orchestrator import views
from cerebrum.orchestrator.affinity import PrefixAffinity
from cerebrum.orchestrator.backends import BackendPool
from cerebrum.orchestrator.breaker import BreakerState, TransitionListener
from cerebrum.orchestrator.config import OrchestratorConfig
from cerebrum.orchestrator.metrics import ORCHESTRATOR_METRICS, OrchestratorMetrics, StateCollector
from cerebrum.orchestrator.response_cache import ResponseCache
from cerebrum.orchestrator.shedding import Concurrency, setup_load_shedding
from cerebrum.orchestrator.state import ORCHESTRATOR, OrchestratorState
from cerebrum.orchestrator.upstream import upstream_session
from cerebrum.orchestrator.workspace_views import WORKSPACE_ROUTES, Workspaces, setup_workspaces

_LOGGER = logging.getLogger(__name__)

PUBLIC_PATHS = ("/health",)


def create_orchestrator_app(
    config: OrchestratorConfig,
    *,
    clock: Callable[[], float] = time.monotonic,
    on_breaker_transition: TransitionListener | None = None,
) -> web.Application:
    """Build the orchestrator app. ``clock`` drives the breakers (tests inject one)."""
    # client_max_size is a second line: read_json refuses large bodies first.
    app = web.Application(client_max_size=config.max_body_bytes)
    concurrency = Concurrency(config.max_concurrent)
    # Order, outermost first: the request id, so every later log line and
    # error carries it; metrics, so they see every final status, refusals
    # included; error rendering, so refusals below render as OpenAI JSON;
    # auth, so an unauthenticated client cannot take a concurrency slot; load
    # shedding last, so it counts only requests that will be served.
    setup_request_id(app)
    http_metrics = setup_metrics(app)
    metrics = OrchestratorMetrics(http_metrics.registry)

    affinity = PrefixAffinity(balancing=config.balancing,
                              max_prefixes=config.affinity_prefixes,
                              max_sessions=config.affinity_sessions,
                              max_imbalance=config.affinity_max_imbalance)

    def on_transition(name: str, old: BreakerState, new: BreakerState) -> None:
        metrics.breaker_transition(name, old, new)
        if new is BreakerState.OPEN:
            # A failing backend has probably lost its cache (restarted, or gone):
            # its conversations start afresh wherever they go next.
            for backend in state.pool.backends:
                if backend.breaker.name == name:
                    affinity.forget(backend.url)
        if on_breaker_transition is not None:
            on_breaker_transition(name, old, new)

    state = OrchestratorState(
        config=config,
        pool=BackendPool.from_urls(config.backend_url,
                                   failure_threshold=config.breaker_failure_threshold,
                                   cooldown_s=config.breaker_cooldown_s, clock=clock,
                                   on_transition=on_transition),
        concurrency=concurrency,
        language_models=config.language_models(),
        cache=(ResponseCache(config.cache_max_bytes, config.cache_ttl_s, clock=clock,
                             max_entry_bytes=config.cache_max_entry_bytes)
               if config.cache_max_bytes else None),
        affinity=affinity,
    )
    app[ORCHESTRATOR] = state
    app[ORCHESTRATOR_METRICS] = metrics
    http_metrics.registry.register(StateCollector(state))
    setup_errors(app)
    setup_auth(app, config.client_api_keys, public=PUBLIC_PATHS)
    # Workspace uploads have slots of their own (CEREBRUM_WORKSPACE_MAX_CONCURRENT):
    # indexing a repository must not shed the chats these slots are for.
    workspaces = Workspaces.from_config(config)
    setup_load_shedding(app, concurrency,
                        pools={prefix: workspaces.slots for prefix in WORKSPACE_ROUTES})
    app.cleanup_ctx.append(upstream_session)
    app.router.add_post("/v1/chat/completions", views.chat_completions)
    app.router.add_post("/v1/completions", views.completions)
    app.router.add_post("/v1/optimize", views.optimize)
    app.router.add_get("/v1/models", views.list_models)
    app.router.add_get("/v1/models/{model:.+}", views.get_model)
    app.router.add_post("/v1/embeddings", views.embeddings)
    app.router.add_get("/health", views.health)
    setup_workspaces(app, workspaces)
    return app
