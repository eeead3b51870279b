"""Every backend route but /health demands the key."""

from __future__ import annotations

import pytest

from cerebrum.backend.app import create_backend_app
from cerebrum.backend.config import BackendConfig
from cerebrum.config import ConfigError
from cerebrum.middlewares import key_matches
from tests.backend_fixtures import API_KEY

ROUTES = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("GET", "/v1/models"),
    ("GET", "/metrics"),
    ("GET", "/nope"),
]
BAD_HEADERS = [
    {},
    {"X-API-Key": "wrong"},
    {"X-API-Key": API_KEY[:-1]},  # near miss: one character short
    {"X-API-Key": API_KEY + "x"},
    {"X-API-Key": API_KEY.upper()},
    {"Authorization": f"Basic {API_KEY}"},
    {"Authorization": "Bearer"},
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("headers", BAD_HEADERS)
async def test_routes_refuse_missing_or_wrong_keys(backend, method, path, headers) -> None:
    response = await backend.request(method, path, headers=headers, json={})
    assert response.status == 401
    body = await response.json()
    assert body["error"]["code"] == "invalid_api_key"
    assert API_KEY not in await response.text()
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("headers", [{"X-API-Key": API_KEY},
                                     {"Authorization": f"Bearer {API_KEY}"}])
async def test_key_accepted_in_either_header(backend, headers) -> None:
    response = await backend.get("/v1/models", headers=headers)
    assert response.status == 200


async def test_health_is_public(backend) -> None:
    response = await backend.get("/health")
    assert response.status == 200


def test_refuses_to_start_without_a_key() -> None:
    with pytest.raises(ConfigError, match="CEREBRUM_API_KEY"):
        create_backend_app(BackendConfig(api_key=None))


async def test_dev_mode_runs_without_a_key(make_backend) -> None:
    client = await make_backend(api_key=None, allow_no_key=True)
    response = await client.get("/v1/models")
    assert response.status == 200


def test_key_comparison() -> None:
    assert key_matches("a", ["b", "a"])
    assert not key_matches("a", [])
    assert not key_matches(None, ["a"])
    assert not key_matches("\udcff", ["a"])  # undecodable header bytes never crash
