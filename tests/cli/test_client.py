"""The client's sentences name the service that failed (pure: no server needed)."""

from __future__ import annotations

import pytest

from cerebrum.cli.client import error_from_response, service_from_health, unreachable
from cerebrum.cli.errors import AuthFailed, Overloaded, RequestFailed

URL = "http://127.0.0.1:9000"
ERROR = b'{"error": {"message": "the model \'x\' is not served", "type": "not_found"}}'


def test_health_tells_the_services_apart() -> None:
    assert service_from_health({"status": "ok", "backends": []}) == "orchestrator"
    assert service_from_health({"status": "ready", "models": {}, "loaded": []}) == "backend"
    # Another OpenAI-compatible server (llama-server says {"status": "ok"}), or junk.
    others: list[object] = [{"status": "ok"}, [], "ok", None, {"models": ["a"]}]
    for other in others:
        assert service_from_health(other) is None


@pytest.mark.parametrize(("service", "who"), [("backend", "The backend"),
                                              ("orchestrator", "The orchestrator"),
                                              (None, "The service")])
def test_errors_blame_the_service_they_came_from(service, who: str) -> None:
    rejected = error_from_response(404, ERROR, {}, URL, service)
    assert isinstance(rejected, RequestFailed)
    assert rejected.message == f"{who} rejected the request: the model 'x' is not served."
    refused = error_from_response(401, b"{}", {}, URL, service)
    assert isinstance(refused, AuthFailed) and refused.message.startswith(f"{who} at {URL} ")
    busy = error_from_response(503, b"", {"Retry-After": "3"}, URL, service)
    assert isinstance(busy, Overloaded) and busy.message.startswith(f"{who} is busy")


def test_a_gateway_error_from_the_backend_itself_is_not_blamed_on_its_backend() -> None:
    assert "could not get an answer from its backend" in error_from_response(
        502, b"", {}, URL, "orchestrator").message
    assert error_from_response(504, b"timeout", {}, URL, "backend").message == \
        "The backend failed with an internal error (timeout)."


def test_unreachable_names_what_it_knows() -> None:
    assert unreachable("backend", URL).message.startswith(f"Cannot reach the backend at {URL}.")
    unknown = unreachable(None, URL, "nothing is listening there").message
    assert unknown.startswith(f"Cannot reach the service at {URL} (nothing is listening there).")
    assert "cerebrum up" in unknown
