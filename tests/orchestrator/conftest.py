"""Orchestrator fixtures: stub upstreams on real sockets, and the real orchestrator app in front."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
from aiohttp.test_utils import TestClient, TestServer

from cerebrum.orchestrator.app import create_orchestrator_app
from cerebrum.orchestrator.config import OrchestratorConfig
from tests.orchestrator.stub_upstream import StubUpstream

BACKEND_KEY = "backend-key-0123"


@attrs.define
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


MakeStub = Callable[..., Awaitable[tuple[StubUpstream, str]]]


@pytest.fixture
def make_stub(aiohttp_server: Any) -> MakeStub:
    """Start a stub upstream; returns it and its base URL."""

    async def make(models: tuple[str, ...] = ("stub-model",), name: str = "stub"
                   ) -> tuple[StubUpstream, str]:
        stub = StubUpstream(models, name)
        server: TestServer = await aiohttp_server(stub.app())
        return stub, str(server.make_url("")).rstrip("/")

    return make


@pytest.fixture
async def stub(make_stub: MakeStub) -> tuple[StubUpstream, str]:
    return await make_stub()


@pytest.fixture
def refused_url(unused_tcp_port: int) -> str:
    """A URL where nothing listens: connections are refused."""
    return f"http://127.0.0.1:{unused_tcp_port}"


MakeOrchestrator = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_orchestrator(aiohttp_client: Any, clock: FakeClock) -> MakeOrchestrator:
    """The real orchestrator app in front of ``urls``, with config overrides."""

    async def make(*urls: str, **overrides: Any) -> TestClient:
        settings: dict[str, Any] = {"backend_url": urls, "api_key": BACKEND_KEY,
                                    "breaker_cooldown_s": 10.0, "breaker_failure_threshold": 2,
                                    "connect_timeout_s": 2.0, "read_timeout_s": 2.0}
        settings.update(overrides)
        app = create_orchestrator_app(OrchestratorConfig(**settings), clock=clock)
        client: TestClient = await aiohttp_client(app)
        return client

    return make


def chat(content: str = "Say hello.", **extra: Any) -> dict[str, Any]:
    return {"model": "stub-model", "messages": [{"role": "user", "content": content}], **extra}
