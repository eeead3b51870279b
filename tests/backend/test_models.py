"""On-demand loading, single flight, idle unload, memory eviction and the wait queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cerebrum.backend.models import ModelManager, estimated_ram_mb
from cerebrum.backend.registry import ModelRegistry, ModelSpec
from cerebrum.errors import Unavailable
from tests.backend.sse import iter_events
from tests.backend_fixtures import AUTH, FakeReader, chat_body, state_of


@pytest.mark.model
async def test_ten_requests_for_an_unloaded_model_cause_one_load(backend) -> None:
    state = state_of(backend)
    assert state.models.state("smollm2-135m") == "unloaded"
    responses = await asyncio.gather(*(
        backend.post("/v1/completions", headers=AUTH,
                     json={"prompt": f"Count {i}", "max_tokens": 2}) for i in range(10)))
    assert [r.status for r in responses] == [200] * 10
    assert state.models.loads("smollm2-135m") == 1


@pytest.mark.model
async def test_idle_model_is_unloaded(make_backend) -> None:
    client = await make_backend(idle_unload_s=0.3)
    state = state_of(client)
    await (await client.post("/v1/completions", headers=AUTH,
                             json={"prompt": "Hi", "max_tokens": 1})).read()
    assert state.models.state("smollm2-135m") == "loaded"

    async def unloaded() -> None:
        while state.models.state("smollm2-135m") != "unloaded":
            await asyncio.sleep(0.05)

    await asyncio.wait_for(unloaded(), timeout=5)
    models = await (await client.get("/v1/models", headers=AUTH)).json()
    assert models["data"][0]["state"] == "unloaded"
    # And it loads again on the next request.
    response = await client.post("/v1/completions", headers=AUTH,
                                 json={"prompt": "Hi", "max_tokens": 1})
    assert response.status == 200
    assert state.models.loads("smollm2-135m") == 2


@pytest.mark.model
async def test_wait_queue_is_bounded(make_backend) -> None:
    # Two slots, nobody may wait: the third request is refused.
    client = await make_backend(max_queue=0, slots=2)
    running = []
    for _ in range(2):
        response = await client.post("/v1/chat/completions", headers=AUTH, json=chat_body(
            "Tell a long story.", stream=True, max_tokens=400))
        events = iter_events(response)
        await events.__anext__()  # this one is generating now
        running.append(response)
    response = await client.post("/v1/chat/completions", headers=AUTH, json=chat_body())
    assert response.status == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert (await response.json())["error"]["code"] == "queue_full"
    for stream in running:
        stream.close()


@pytest.mark.model
async def test_requests_are_served_in_arrival_order(backend) -> None:
    order: list[int] = []

    async def one(i: int) -> None:
        response = await backend.post("/v1/completions", headers=AUTH,
                                      json={"prompt": "Hello", "max_tokens": 3})
        await response.read()
        order.append(i)

    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(one(i)))
        await asyncio.sleep(0.02)  # stagger arrivals
    await asyncio.gather(*tasks)
    assert order == sorted(order)


class _FakeWorker:
    """Stands in for a ModelWorker where only load/unload bookkeeping is tested."""

    def __init__(self, spec: ModelSpec, *, threads: int) -> None:
        self.spec = spec
        self.closed = False

    async def load(self) -> None:
        await asyncio.sleep(0)

    async def close(self) -> None:
        self.closed = True


def _registry(tmp_path: Path, *sizes_mb: int) -> ModelRegistry:
    specs = []
    for i, size in enumerate(sizes_mb):
        path = tmp_path / f"m{i}.gguf"
        path.write_bytes(b"\0" * (size * 1024 * 1024))
        specs.append(ModelSpec(f"m{i}", path))
    return ModelRegistry(tuple(specs))


def _manager(tmp_path: Path, reader: FakeReader, clock=None, **kwargs) -> ModelManager:
    return ModelManager(_registry(tmp_path, 8, 8), threads=1, idle_unload_s=60,
                        min_free_ram_mb=100, max_queue=4, reader=reader,
                        worker_factory=_FakeWorker, clock=clock or (lambda: 0.0), **kwargs)


class _MemoryModel:
    """Available RAM that falls as the manager loads models and rises as it unloads them."""

    def __init__(self, total_mb: float) -> None:
        self.total_mb = total_mb
        self.manager: ModelManager | None = None

    def cpu_percent(self) -> float:
        return 0.0

    def available_mb(self) -> float:
        assert self.manager is not None
        used = sum(estimated_ram_mb(self.manager.registry.get(name))
                   for name in self.manager.loaded_models())
        return self.total_mb - used


async def test_least_recently_used_model_is_unloaded_to_make_room(tmp_path) -> None:
    now = [0.0]
    need = estimated_ram_mb(ModelSpec("x", _registry(tmp_path, 8).specs[0].path))
    memory = _MemoryModel(total_mb=100 + 2 * need + 1)  # room for two models above the floor
    manager = ModelManager(_registry(tmp_path, 8, 8, 8), threads=1, idle_unload_s=60,
                           min_free_ram_mb=100, max_queue=4, reader=memory,
                           worker_factory=_FakeWorker, clock=lambda: now[0])
    memory.manager = manager
    for t, name in enumerate(["m0", "m1", "m0"]):  # m1 ends least recently used
        now[0] = t
        async with manager.use(name):
            pass
    assert manager.loaded_models() == ["m0", "m1"]
    now[0] = 10
    async with manager.use("m2"):
        assert manager.loaded_models() == ["m0", "m2"]


async def test_load_refused_when_memory_cannot_be_freed(tmp_path) -> None:
    reader = FakeReader(ram_mb=50)  # already below the floor of 100
    manager = _manager(tmp_path, reader)
    with pytest.raises(Unavailable) as caught:
        async with manager.use("m0"):
            pass
    assert caught.value.code == "insufficient_memory"
    assert manager.state("m0") == "unloaded"
    # A failed load does not poison the next attempt.
    reader.ram_mb = 10_000
    async with manager.use("m0"):
        assert manager.state("m0") == "loaded"


async def test_busy_models_are_never_idle_unloaded(tmp_path) -> None:
    now = [0.0]
    manager = _manager(tmp_path, FakeReader(), clock=lambda: now[0])
    async with manager.use("m0"):
        now[0] = 1000
        assert await manager.unload_idle() == []
    assert await manager.unload_idle() == []  # just used at t=1000
    now[0] = 1061
    assert await manager.unload_idle() == ["m0"]


async def test_a_stop_refuses_the_waiting_and_leaves_the_running_alone(tmp_path) -> None:
    manager = _manager(tmp_path, FakeReader(), slots=1)

    async def enter() -> None:
        async with manager.use("m0"):
            pass

    async with manager.use("m0"):
        waiting = asyncio.create_task(enter())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        manager.stop_admitting()
        with pytest.raises(Unavailable) as refused:
            await asyncio.wait_for(waiting, 1)
        assert refused.value.code == "shutting_down"
    with pytest.raises(Unavailable):
        await enter()
    assert manager.busy("m0") is False
