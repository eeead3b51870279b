"""Auth across both services: every route but the backend's /health refuses a missing,
wrong or near-miss key, and no key (right or wrong) ever reaches a log line or an
error body. Both services run for real, with DEBUG logging, in subprocesses.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import Service, free_port

pytestmark = pytest.mark.reliability

BACKEND_KEY = "backend-secret-key-4f1c9d2e7a"
CLIENT_KEY = "client-secret-key-8b3e6a1f0c"
BACKEND_ROUTES = [("POST", "/v1/chat/completions"), ("POST", "/v1/completions"),
                  ("GET", "/v1/models"), ("GET", "/metrics"), ("GET", "/no-such-route")]
ORCHESTRATOR_ROUTES = BACKEND_ROUTES + [("POST", "/v1/optimize")]


def _near_misses(key: str) -> list[dict[str, str]]:
    return [
        {},
        {"X-API-Key": key[:-1]},
        {"X-API-Key": key + "0"},
        {"X-API-Key": key[:-1] + ("x" if key[-1] != "x" else "y")},
        {"X-API-Key": key.upper()},
        {"Authorization": key},
        {"Authorization": f"Basic {key}"},
        {"Authorization": f"Bearer {key[:-1]}"},
    ]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Service]]:
    logs = tmp_path_factory.mktemp("auth")
    backend_port, orchestrator_port = free_port(), free_port()
    backend = Service("vps_app.py", [], {"CEREBRUM_API_KEY": BACKEND_KEY,
                                         "CEREBRUM_LOG_LEVEL": "DEBUG"},
                      logs / "vps.log", backend_port)
    orchestrator = Service("cm4_app.py", [], {
        "CEREBRUM_BACKEND_URL": f"http://127.0.0.1:{backend_port}",
        "CEREBRUM_API_KEY": BACKEND_KEY, "CEREBRUM_CLIENT_API_KEYS": f"other-key,{CLIENT_KEY}",
        "CEREBRUM_LOG_LEVEL": "DEBUG"}, logs / "cm4.log", orchestrator_port)
    backend.start()
    orchestrator.start()
    try:
        yield backend, orchestrator
    finally:
        orchestrator.stop()
        backend.stop()


def _call(port: int, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=b"{}" if method == "POST" else None,
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize(("service", "routes", "key"), [
    (0, BACKEND_ROUTES, BACKEND_KEY), (1, ORCHESTRATOR_ROUTES, CLIENT_KEY)],
    ids=["backend", "orchestrator"])
def test_every_route_refuses_bad_keys(services, service, routes, key) -> None:
    port = services[service].port
    for method, path in routes:
        for headers in _near_misses(key):
            status, body = _call(port, method, path, headers)
            assert status == 401, (method, path, headers, status)
            assert json.loads(body)["error"]["code"] == "invalid_api_key"
            assert key.encode() not in body and key[:-1].encode() not in body
        # The right key passes auth (whatever the route then says about the body).
        status, _ = _call(port, method, path, {"X-API-Key": key})
        assert status != 401


def test_health_is_public_on_both_and_keys_never_reach_the_logs(services) -> None:
    backend, orchestrator = services
    for service in services:
        assert _call(service.port, "GET", "/health", {})[0] == 200
    # A real request through both (the key travels orchestrator → backend).
    status, _ = _call(orchestrator.port, "GET", "/v1/models", {"X-API-Key": CLIENT_KEY})
    assert status == 200
    for service in services:
        text = Path(service.log).read_text()
        assert text, "the service logged nothing at DEBUG?"
        for secret in (BACKEND_KEY, CLIENT_KEY, BACKEND_KEY[:-1], CLIENT_KEY[:-1],
                       BACKEND_KEY.upper(), CLIENT_KEY.upper()):
            assert secret not in text, f"{secret[:6]}… appears in {service.script}'s log"
