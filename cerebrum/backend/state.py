"""The backend's application state, under a typed ``web.AppKey``."""

from __future__ import annotations

import time

import attrs
from aiohttp import web

from cerebrum.backend.config import BackendConfig
from cerebrum.backend.models import ModelManager
from cerebrum.backend.resources import ResourceGuard


@attrs.define(eq=False)
class BackendState:
    """Everything the handlers share; built by ``create_backend_app``."""

    config: BackendConfig
    models: ModelManager
    guard: ResourceGuard
    started: float = attrs.field(factory=time.monotonic)


BACKEND_STATE = web.AppKey("backend_state", BackendState)
