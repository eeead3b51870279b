"""Fixtures of the hardening tests: the hostile backend, the segmenting relay, the orchestrator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cerebrum.orchestrator.app import create_orchestrator_app
from cerebrum.orchestrator.config import OrchestratorConfig
from tests.reliability.hostile import MODEL, HostileBackend
from tests.reliability.relay import SegmentingRelay

CLIENT_KEY = "client-key-for-hardening-tests"


@pytest.fixture
async def hostile(aiohttp_server: Any) -> AsyncIterator[tuple[HostileBackend, str]]:
    """The hostile backend on a real socket, and its base URL."""
    backend = HostileBackend()
    server = await aiohttp_server(backend.app())
    yield backend, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def relay_to(hostile: tuple[HostileBackend, str]) -> AsyncIterator[SegmentingRelay]:
    """The segmenting relay in front of the hostile backend."""
    _, url = hostile
    async with SegmentingRelay(int(url.rsplit(":", 1)[1])) as relay:
        yield relay


MakeOrchestrator = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_orchestrator(aiohttp_client: Any) -> MakeOrchestrator:
    """The real orchestrator app in front of ``urls`` with config overrides; short timeouts."""

    async def make(*urls: str, **overrides: Any) -> TestClient:
        settings: dict[str, Any] = {"backend_url": urls, "connect_timeout_s": 2.0,
                                    "read_timeout_s": 5.0, "breaker_failure_threshold": 3,
                                    "client_api_keys": (CLIENT_KEY,)}
        settings.update(overrides)
        client: TestClient = await aiohttp_client(
            create_orchestrator_app(OrchestratorConfig(**settings)))
        client.session.headers["X-API-Key"] = CLIENT_KEY
        return client

    return make


def chat(content: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}
