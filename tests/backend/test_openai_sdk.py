"""The official openai SDK works against the backend unchanged."""

from __future__ import annotations

import openai
import pytest

from tests.backend_fixtures import API_KEY

pytestmark = pytest.mark.model


@pytest.fixture
async def sdk(backend):
    client = openai.AsyncOpenAI(base_url=str(backend.make_url("/v1")), api_key=API_KEY,
                                max_retries=0)
    yield client
    await client.close()


async def test_sdk_streams_a_chat_answer(sdk) -> None:
    stream = await sdk.chat.completions.create(
        model="smollm2-135m", messages=[{"role": "user", "content": "Name a color."}],
        max_tokens=10, temperature=0, stream=True)
    text, usage, reasons = "", None, []
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            reasons.append(chunk.choices[0].finish_reason)
        usage = chunk.usage or usage
    assert text.strip()
    assert reasons[-1] in ("stop", "length")
    assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_sdk_whole_answer_and_models(sdk) -> None:
    answer = await sdk.chat.completions.create(
        model="smollm2-135m", messages=[{"role": "user", "content": "Hi"}], max_tokens=5)
    assert answer.choices[0].message.content
    completion = await sdk.completions.create(model="smollm2-135m", prompt="def f():",
                                              max_tokens=5)
    assert completion.choices[0].text
    models = await sdk.models.list()
    assert [m.id for m in models.data] == ["smollm2-135m"]


async def test_sdk_errors_map_to_its_exceptions(backend) -> None:
    bad = openai.AsyncOpenAI(base_url=str(backend.make_url("/v1")), api_key="wrong",
                             max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await bad.models.list()
    await bad.close()
    good = openai.AsyncOpenAI(base_url=str(backend.make_url("/v1")), api_key=API_KEY,
                              max_retries=0)
    with pytest.raises(openai.NotFoundError):
        await good.chat.completions.create(model="nope", messages=[{"role": "user",
                                                                    "content": "x"}])
    await good.close()
