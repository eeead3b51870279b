"""The orchestrator's application state, under one typed key."""

from __future__ import annotations

import time

import attrs
from aiohttp import web

from cerebrum.orchestrator.affinity import PrefixAffinity
from cerebrum.orchestrator.backends import BackendPool
from cerebrum.orchestrator.config import OrchestratorConfig
from cerebrum.orchestrator.response_cache import ResponseCache
from cerebrum.orchestrator.shedding import Concurrency


@attrs.define
class OrchestratorState:
    config: OrchestratorConfig
    pool: BackendPool
    concurrency: Concurrency
    """Requests being served (counted by the load-shedding middleware)."""
    language_models: dict[str, str] = attrs.field(factory=dict)
    """The routing map, language → model."""
    started: float = attrs.field(factory=time.monotonic)
    cache: ResponseCache | None = None
    """Deterministic answers (temperature 0 or a seed); None when disabled."""
    affinity: PrefixAffinity = attrs.field(factory=PrefixAffinity)
    """Which backend holds which conversation (``CEREBRUM_BALANCING``)."""


ORCHESTRATOR = web.AppKey("orchestrator", OrchestratorState)
