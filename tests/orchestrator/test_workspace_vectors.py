"""Workspace vectors end to end: the real orchestrator app in front of the real backend on
the embedded model (which serves ``POST /v1/embeddings``), both on loopback."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cerebrum.backend.app import create_backend_app
from cerebrum.backend.config import BackendConfig
from cerebrum.backend.embeddings import EMBEDDINGS
from cerebrum.orchestrator.app import create_orchestrator_app
from cerebrum.orchestrator.config import OrchestratorConfig
from cerebrum.orchestrator.workspace_views import WORKSPACES
from cerebrum.workspace.retrieve import VECTOR_WEIGHT
from tests.backend_fixtures import API_KEY, FakeReader, MakeClient
from tests.orchestrator.test_workspaces import upload
from tests.workspace.repo import FILES

pytestmark = pytest.mark.model

MODEL = "smollm2-135m"
NO_KEY: dict[str, str] = {}


async def orchestrator(aiohttp_client: Any, backend_url: str, tmp_path: Path,
                       **overrides: Any) -> TestClient:
    # A loaded test machine can take more than the default 10 s for a question's vector.
    config = OrchestratorConfig(backend_url=(backend_url,), api_key=API_KEY,
                                workspace_dir=tmp_path, cache_max_bytes=0, read_timeout_s=600.0,
                                workspace_embeddings_timeout_s=300.0, **overrides)
    client: TestClient = await aiohttp_client(create_orchestrator_app(config))
    return client


def url_of(client: TestClient) -> str:
    return str(client.make_url("")).rstrip("/")


async def settled(client: TestClient, name: str = "demo") -> dict[str, Any]:
    """The workspace's status once its background fill is done."""
    vectors = client.app[WORKSPACES].vectors
    assert vectors is not None
    await vectors.idle()
    answer: dict[str, Any] = await (await client.get(f"/v1/workspaces/{name}")).json()
    return answer


def embedded(caplog: pytest.LogCaptureFixture) -> list[int]:
    """Units each fill embedded, from its log lines."""
    return [record.units for record in caplog.records
            if getattr(record, "event", None) == "vectors" and hasattr(record, "units")]


async def ask(client: TestClient, question: str) -> dict[str, Any]:
    response = await client.post("/v1/optimize", json={
        "model": MODEL, "messages": [{"role": "user", "content": question}],
        "cerebrum": {"workspace": "demo"}})
    assert response.status == 200, await response.text()
    retrieval: dict[str, Any] = (await response.json())["retrieval"]
    return retrieval


async def test_a_commit_fills_vectors_and_a_change_embeds_only_its_changed_units(
        make_backend: MakeClient, aiohttp_client: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cerebrum.orchestrator.workspace_vectors")
    backend = await make_backend()
    client = await orchestrator(aiohttp_client, url_of(backend), tmp_path,
                                workspace_embeddings_model=MODEL, workspace_embeddings_batch=3)
    first = await upload(client, "demo", FILES, headers=NO_KEY)
    assert first["vectors_enabled"] is True
    status = await settled(client)
    assert (status["vectors"], status["embeddable"], status["vector_model"]) == (7, 7, MODEL)
    assert backend.app[EMBEDDINGS].loaded() == [MODEL]

    changed = {**FILES, "text/words.py": FILES["text/words.py"].replace('"-"', '"_"')}
    await upload(client, "demo", changed, headers=NO_KEY)
    assert (await settled(client))["vectors"] == 7
    assert embedded(caplog) == [7, 1]  # slugify again; count_words kept its vector

    del changed["net/cache.py"]
    await upload(client, "demo", changed, headers=NO_KEY)
    status = await settled(client)
    assert (status["vectors"], status["embeddable"]) == (6, 6)
    assert embedded(caplog) == [7, 1]  # nothing new to embed


async def test_retrieval_with_vectors_on_fuses_the_question_vector(
        make_backend: MakeClient, aiohttp_client: Any, tmp_path: Path) -> None:
    backend = await make_backend()
    client = await orchestrator(aiohttp_client, url_of(backend), tmp_path,
                                workspace_embeddings_model=MODEL)
    await upload(client, "demo", FILES, headers=NO_KEY)
    await settled(client)
    question = "how many words does a text have?"
    retrieval = await ask(client, question)  # a chat's path: the retriever in a thread
    assert retrieval["vectors"] is True
    found = {item["name"]: item for item in retrieval["items"]}
    assert found["count_words"]["whole"]
    assert any(why.startswith("vectors ") for why in found["count_words"]["why"])
    searched = await (await client.post("/v1/workspaces/demo/search",
                                        json={"query": question})).json()
    assert searched["vectors"] is True and searched["items"][0]["name"] == "count_words"
    # Lexically this question finds only the cache; the units the vectors add join with
    # their share alone: VECTOR_WEIGHT x the scaled cosine. (The tiny chat model's vectors
    # say little about meaning: which units join is not asserted, only how.)
    lexical = await (await client.post("/v1/workspaces/demo/search", json={
        "query": "values that disappear after a while"})).json()
    joined = [item for item in lexical["items"] if item["why"][0].startswith("vectors ")]
    assert lexical["items"][0]["name"] == "ExpiringCache" and joined
    for item in joined:
        assert len(item["why"]) == 1
        assert item["score"] == pytest.approx(
            VECTOR_WEIGHT * float(item["why"][0].split()[1]), abs=0.003)


async def test_with_the_endpoint_down_indexing_is_lexical_and_a_later_run_fills_vectors(
        aiohttp_client: Any, aiohttp_server: Any, unused_tcp_port: int, tmp_path: Path,
        reader: FakeReader) -> None:
    backend_url = f"http://127.0.0.1:{unused_tcp_port}"  # nothing listens yet
    client = await orchestrator(aiohttp_client, backend_url, tmp_path,
                                workspace_embeddings_model=MODEL)
    vectors = client.app[WORKSPACES].vectors
    assert vectors is not None
    vectors.retry_delays_s = ()  # the fill gives up at once
    await upload(client, "demo", FILES, headers=NO_KEY)
    status = await settled(client)
    assert (status["files"], status["vectors"], status["embeddable"]) == (5, 0, 7)
    search = await client.post("/v1/workspaces/demo/search", json={"query": "count words"})
    answer = await search.json()
    assert search.status == 200 and answer["vectors"] is False
    assert answer["items"][0]["name"] == "count_words"

    await aiohttp_server(create_backend_app(
        BackendConfig(api_key=API_KEY, threads=2, max_queue=16), reader=reader,
        sample_interval_s=0.05), port=unused_tcp_port)
    again = await upload(client, "demo", FILES, headers=NO_KEY)
    assert again["need"] == []  # nothing changed: the commit alone starts the fill
    assert (await settled(client))["vectors"] == 7


async def test_a_fill_that_fails_tries_again_and_fills_when_the_backend_is_back(
        aiohttp_client: Any, aiohttp_server: Any, unused_tcp_port: int, tmp_path: Path,
        reader: FakeReader, caplog: pytest.LogCaptureFixture) -> None:
    backend_url = f"http://127.0.0.1:{unused_tcp_port}"  # nothing listens yet
    client = await orchestrator(aiohttp_client, backend_url, tmp_path,
                                workspace_embeddings_model=MODEL)
    vectors = client.app[WORKSPACES].vectors
    assert vectors is not None
    vectors.retry_delays_s = (1.0, 30.0)
    caplog.set_level(logging.WARNING, logger="cerebrum.orchestrator.workspace_vectors")
    await upload(client, "demo", FILES, headers=NO_KEY)
    for _ in range(200):  # the first try fails (nothing listens) ...
        if any("trying again" in record.getMessage() for record in caplog.records):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the first try did not fail")
    # ... and the backend comes back during the wait.
    await aiohttp_server(create_backend_app(
        BackendConfig(api_key=API_KEY, threads=2, max_queue=16), reader=reader,
        sample_interval_s=0.05), port=unused_tcp_port)
    # No second commit: the retry alone fills every unit.
    assert (await settled(client))["vectors"] == 7


async def test_vectors_are_off_by_default_and_nothing_is_embedded(
        make_backend: MakeClient, aiohttp_client: Any, tmp_path: Path) -> None:
    backend = await make_backend()
    client = await orchestrator(aiohttp_client, url_of(backend), tmp_path)
    assert client.app[WORKSPACES].vectors is None
    status = await upload(client, "demo", FILES, headers=NO_KEY)
    assert (status["vectors_enabled"], status["vectors"], status["embeddable"]) == (False, 0, 7)
    retrieval = await ask(client, "how many words does a text have?")
    assert retrieval["vectors"] is False and retrieval["items"]
    assert not any(w.startswith("vectors ") for item in retrieval["items"] for w in item["why"])
    assert backend.app[EMBEDDINGS].loaded() == []
