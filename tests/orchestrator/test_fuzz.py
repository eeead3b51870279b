"""Reliability tier: property-based fuzzing of every orchestrator route (a stub behind it).

Never a 500; every error a JSON 4xx (or a 503 with Retry-After) in OpenAI's shape.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.orchestrator.conftest import MakeOrchestrator, MakeStub
from tests.reliability.fuzz import assert_json_error_or_success, headers, query_strings, raw_bodies

pytestmark = pytest.mark.reliability

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
ROUTES = [("POST", "/v1/chat/completions"), ("POST", "/v1/completions"),
          ("POST", "/v1/optimize"), ("GET", "/v1/models"), ("GET", "/health"),
          ("GET", "/metrics"), ("PUT", "/v1/optimize"), ("GET", "/v1/chat/completions/../..")]


@pytest.fixture
async def orchestrator(make_stub: MakeStub, make_orchestrator: MakeOrchestrator):
    _, url = await make_stub(models=("stub-model", "smollm2-135m"))
    return await make_orchestrator(url, max_concurrent=64)


@FUZZ
@given(route=st.sampled_from(ROUTES), body=raw_bodies, extra_headers=headers,
       query=query_strings)
async def test_orchestrator_routes_survive_hostile_input(orchestrator, route, body,
                                                         extra_headers, query) -> None:
    method, path = route
    response = await orchestrator.request(method, path, data=body, headers=extra_headers,
                                          params=query)
    payload = await response.read()
    assert_json_error_or_success(response.status, payload,
                                 response.headers.get("Content-Type", ""))
    if response.status == 503:
        assert int(response.headers["Retry-After"]) >= 1
