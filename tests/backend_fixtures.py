"""Backend fixtures (a pytest plugin, see tests/conftest.py): the real app on the real
embedded model."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from cerebrum.backend.app import create_backend_app
from cerebrum.backend.config import BackendConfig
from cerebrum.backend.state import BACKEND_STATE, BackendState

API_KEY = "test-key-0123456789"
AUTH = {"X-API-Key": API_KEY}


@attrs.define
class FakeReader:
    """Resource readings the test sets."""

    cpu: float = 5.0
    ram_mb: float = 16_000.0

    def cpu_percent(self) -> float:
        return self.cpu

    def available_mb(self) -> float:
        return self.ram_mb


@pytest.fixture
def reader() -> FakeReader:
    return FakeReader()


@pytest.fixture
def backend_config() -> BackendConfig:
    return BackendConfig(api_key=API_KEY, threads=2, max_queue=16, idle_unload_s=3600)


MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_backend(aiohttp_client: Any, reader: FakeReader) -> MakeClient:
    """Start the real backend app with config overrides; returns a test client."""

    async def make(config: BackendConfig | None = None, **overrides: Any) -> TestClient:
        base = config or BackendConfig(api_key=API_KEY, threads=2, max_queue=16)
        app: web.Application = create_backend_app(
            attrs.evolve(base, **overrides), reader=reader, sample_interval_s=0.05
        )
        return await aiohttp_client(app)

    return make


@pytest.fixture
async def backend(make_backend: MakeClient) -> TestClient:
    return await make_backend()


def state_of(client: TestClient) -> BackendState:
    return client.server.app[BACKEND_STATE]


def chat_body(content: str = "Say hello.", **extra: Any) -> dict[str, Any]:
    return {"model": "smollm2-135m", "messages": [{"role": "user", "content": content}],
            "temperature": 0, **extra}
