"""The backend's /metrics move with real requests (parsed, not grepped)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.backend_fixtures import AUTH, chat_body, state_of


async def scrape(client) -> dict[tuple[str, tuple], float]:
    response = await client.get("/metrics", headers=AUTH)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return float(samples.get((name, tuple(sorted(labels.items()))), 0.0))


@pytest.mark.model
async def test_metrics_follow_requests_loads_and_rejections(backend, reader) -> None:
    before = await scrape(backend)
    assert before[("cerebrum_model_loaded", (("model", "smollm2-135m"),))] == 0
    response = await backend.post("/v1/completions", headers=AUTH,
                                  json={"prompt": "Hello", "max_tokens": 4, "temperature": 0})
    usage = (await response.json())["usage"]
    await (await backend.post("/v1/chat/completions", headers=AUTH,
                              json=chat_body(model="nope"))).read()
    reader.ram_mb = 1.0
    state_of(backend).guard.sample()
    await (await backend.post("/v1/chat/completions", headers=AUTH, json=chat_body())).read()

    after = await scrape(backend)
    route = "/v1/completions"
    assert value(after, "cerebrum_http_requests_total", route=route, method="POST",
                 status="200") == 1
    assert value(after, "cerebrum_http_requests_total", route="/v1/chat/completions",
                 method="POST", status="404") == 1
    assert value(after, "cerebrum_rejected_total", reason="ram") == 1
    assert value(after, "cerebrum_tokens_total", direction="prompt") == usage["prompt_tokens"]
    assert value(after, "cerebrum_tokens_total", direction="completion") == \
        usage["completion_tokens"]
    assert value(after, "cerebrum_model_loads_total", model="smollm2-135m") == 1
    assert value(after, "cerebrum_model_loaded", model="smollm2-135m") == 1
    assert value(after, "cerebrum_model_ram_bytes", model="smollm2-135m") > 50e6
    assert value(after, "cerebrum_time_to_first_token_seconds_count", route=route) == 1
    assert value(after, "cerebrum_http_request_duration_seconds_count", route=route) == 1
    # The scrape itself is in flight while it is rendered.
    assert value(after, "cerebrum_http_requests_in_flight") == 1
