"""The official openai SDK, unchanged, against the orchestrator in front of a stub upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.orchestrator.conftest import MakeOrchestrator, MakeStub
from tests.orchestrator.stub_upstream import Behaviour, StubUpstream


@pytest.fixture
async def sdk_and_stub(make_stub: MakeStub, make_orchestrator: MakeOrchestrator
                       ) -> AsyncIterator[tuple[openai.AsyncOpenAI, StubUpstream]]:
    stub, url = await make_stub()
    orchestrator = await make_orchestrator(url, client_api_keys=("client-key",))
    client = openai.AsyncOpenAI(base_url=str(orchestrator.make_url("/v1")),
                                api_key="client-key", max_retries=0)
    yield client, stub
    await client.close()


async def test_sdk_streams_through_the_orchestrator(sdk_and_stub: Any) -> None:
    sdk, stub = sdk_and_stub
    stream = await sdk.chat.completions.create(
        model="stub-model", messages=[{"role": "user", "content": "Hi"}], stream=True,
        stream_options={"include_usage": True})
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    assert text == "tok0 tok1 tok2 "
    assert usage is not None and usage.completion_tokens == 3
    assert stub.received[0].body["stream_options"] == {"include_usage": True}


async def test_sdk_whole_answers_models_and_errors(sdk_and_stub: Any) -> None:
    sdk, stub = sdk_and_stub
    answer = await sdk.chat.completions.create(
        model="stub-model", messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content == "tok0 tok1 tok2 "
    completion = await sdk.completions.create(model="stub-model", prompt="def f():")
    assert completion.choices[0].text == "tok0 tok1 tok2 "
    assert {m.id for m in (await sdk.models.list()).data} == {"stub-model", "auto"}
    with pytest.raises(openai.NotFoundError):
        await sdk.chat.completions.create(model="nope", messages=[{"role": "user",
                                                                    "content": "x"}])
    stub.then(Behaviour(status=500))
    with pytest.raises(openai.InternalServerError) as failed:
        await sdk.chat.completions.create(model="stub-model",
                                          messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 502


async def test_sdk_sees_a_mid_stream_failure_as_an_error(sdk_and_stub: Any) -> None:
    sdk, stub = sdk_and_stub
    stub.then(Behaviour(chunks=5, die_after=2, delay_s=0.02))
    stream = await sdk.chat.completions.create(
        model="stub-model", messages=[{"role": "user", "content": "Hi"}], stream=True)
    text = ""
    with pytest.raises(openai.APIError) as failed:
        async for chunk in stream:
            text += chunk.choices[0].delta.content or ""
    assert text == "tok0 tok1 "
    assert "mid-stream" in str(failed.value)


async def test_sdk_wrong_key(make_stub: MakeStub, make_orchestrator: MakeOrchestrator) -> None:
    _, url = await make_stub()
    orchestrator = await make_orchestrator(url, client_api_keys=("client-key",))
    sdk = openai.AsyncOpenAI(base_url=str(orchestrator.make_url("/v1")), api_key="wrong",
                             max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await sdk.models.list()
    await sdk.close()
