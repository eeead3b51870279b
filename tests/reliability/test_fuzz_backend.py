"""Property-based fuzzing of every backend route: never a 500, always a JSON 4xx.

Bodies that happen to be valid run a (tiny, max_tokens ≤ 3) generation on the
real embedded model, so the fuzzer also exercises the success path.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.backend_fixtures import AUTH, MakeClient
from tests.reliability.fuzz import (
    assert_json_error_or_success,
    headers,
    query_strings,
    raw_bodies,
)

pytestmark = pytest.mark.reliability

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
ROUTES = [("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("GET", "/v1/models"),
          ("GET", "/health"), ("GET", "/metrics"), ("POST", "/health"), ("DELETE", "/v1/models"),
          ("GET", "/../etc/passwd"), ("POST", "/v1/chat/completions/extra")]


@pytest.fixture
async def backend(make_backend: MakeClient):
    # Valid fuzzed bodies without max_tokens stay tiny.
    return await make_backend(default_max_tokens=3)


@FUZZ
@given(route=st.sampled_from(ROUTES), body=raw_bodies, extra_headers=headers,
       query=query_strings, authorised=st.booleans())
async def test_backend_routes_survive_hostile_input(backend, route, body, extra_headers, query,
                                                    authorised) -> None:
    method, path = route
    sent_headers = {**extra_headers, **(AUTH if authorised else {})}
    if not authorised:
        sent_headers.pop("Authorization", None)
    response = await backend.request(method, path, data=body, headers=sent_headers, params=query)
    payload = await response.read()
    assert_json_error_or_success(response.status, payload, response.headers.get(
        "Content-Type", ""))
    if not authorised and path not in ("/health",):
        assert response.status in (401, 404, 405)
