"""The resource guard refuses new generations when CPU or RAM is short."""

from __future__ import annotations

import pytest

from cerebrum.backend.resources import PsutilReader, ResourceGuard
from cerebrum.errors import Unavailable
from tests.backend_fixtures import AUTH, FakeReader, chat_body, state_of


def test_cpu_is_smoothed() -> None:
    reader = FakeReader(cpu=100)
    guard = ResourceGuard(reader, max_cpu_percent=70, min_free_ram_mb=100)
    guard.sample()  # one busy second is not enough
    guard.check()
    for _ in range(5):
        guard.sample()
    with pytest.raises(Unavailable) as caught:
        guard.check()
    assert caught.value.code == "cpu_overloaded"
    reader.cpu = 0
    for _ in range(10):
        guard.sample()
    guard.check()


def test_low_memory_is_refused_at_once() -> None:
    reader = FakeReader(ram_mb=50)
    guard = ResourceGuard(reader, max_cpu_percent=70, min_free_ram_mb=100)
    guard.sample()
    with pytest.raises(Unavailable) as caught:
        guard.check()
    assert caught.value.code == "insufficient_memory"
    assert caught.value.headers["Retry-After"] == "5"


@pytest.mark.parametrize(("cpu", "ram", "code", "needle"), [
    (99.0, 16_000.0, "cpu_overloaded", "CEREBRUM_MAX_CPU_PERCENT"),
    (5.0, 10.0, "insufficient_memory", "CEREBRUM_MIN_FREE_RAM_MB"),
])
async def test_service_answers_503_naming_the_limit(backend, reader, cpu, ram, code,
                                                   needle) -> None:
    reader.cpu, reader.ram_mb = cpu, ram
    guard = state_of(backend).guard
    for _ in range(20):
        guard.sample()
    response = await backend.post("/v1/chat/completions", headers=AUTH, json=chat_body())
    assert response.status == 503
    assert int(response.headers["Retry-After"]) >= 1
    body = await response.json()
    assert body["error"]["code"] == code
    assert needle in body["error"]["message"]
    health = await (await backend.get("/health")).json()
    assert health["cpu_percent"] == pytest.approx(guard.cpu_percent, abs=0.1)


def test_real_reader_gives_plausible_figures() -> None:
    reader = PsutilReader()
    assert 0 <= reader.cpu_percent() <= 100
    assert reader.available_mb() > 0
