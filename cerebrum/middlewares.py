"""Middlewares shared by both services, each installed by its own ``setup_*``.

Order matters and is written once, with its reasons, in each app factory
(``create_backend_app``, ``create_orchestrator_app``); this module only
provides the pieces.
"""

from __future__ import annotations

import hmac
import logging
import re
import uuid
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler

from cerebrum.config import SHORT_KEY
from cerebrum.errors import (
    ApiError,
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from cerebrum.log import install_request_id_factory, request_id_var
from cerebrum.protocol import API_KEY_HEADER, REQUEST_ID_HEADER

_LOGGER = logging.getLogger(__name__)

REQUEST_ID_KEY = web.RequestKey("request_id", str)
# An incoming id is trusted only if it is short and plain: it ends up in logs.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def incoming_or_new_request_id(value: str | None) -> str:
    """Keep a sane client-supplied request id, else make a UUID4."""
    if value and _SANE_REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind the request id to the log context for the whole request."""
    request_id = incoming_or_new_request_id(request.headers.get(REQUEST_ID_HEADER))
    request[REQUEST_ID_KEY] = request_id
    token = request_id_var.set(request_id)
    try:
        return await handler(request)
    finally:
        request_id_var.reset(token)


async def _echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    # A signal rather than the middleware: streamed responses are prepared
    # inside the handler, before the middleware sees them.
    request_id = request.get(REQUEST_ID_KEY)
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id


def setup_request_id(app: web.Application) -> None:
    """Install request-id correlation: context binding and the echo header."""
    install_request_id_factory()
    app.middlewares.append(request_id_middleware)
    app.on_response_prepare.append(_echo_request_id)


_HTTP_EXCEPTION_ERRORS: dict[int, type[ApiError]] = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}


RESPONSE_STARTED_KEY = web.RequestKey("cerebrum.response_started", bool)
"""Set on a request once its response's status line and headers have gone out."""


async def _note_response_started(request: web.Request, response: web.StreamResponse) -> None:
    request[RESPONSE_STARTED_KEY] = True


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every failure as an OpenAI-style JSON error; never leak a traceback."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _answer(request, exc.to_response())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error_cls = _HTTP_EXCEPTION_ERRORS.get(exc.status, ApiError)
        message = (exc.reason if exc.status != 404
                   else f"no route for {request.method} {request.path}")
        error = error_cls(message)
        response = error.to_response()
        response.set_status(exc.status)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return _answer(request, response)
    except (ConnectionResetError, web.RequestPayloadError) as exc:
        # The client went away or sent a broken body: nothing useful to answer.
        _LOGGER.info("client connection failed: %s", type(exc).__name__)
        return _answer(request, BadRequest("request body could not be read").to_response())
    except Exception:
        _LOGGER.exception("unhandled error on %s %s", request.method, request.path)
        return _answer(request, ApiError("internal server error").to_response())


def _answer(request: web.Request, error: web.Response) -> web.StreamResponse:
    """``error``, or where a response has already begun (a stream failed part way),
    a cut connection: a JSON error cannot follow bytes already sent, and a
    connection left open would keep the client waiting for the rest for ever."""
    if not request.get(RESPONSE_STARTED_KEY):
        return error
    _LOGGER.warning("the response to %s %s had begun: connection closed instead of an error "
                    "body", request.method, request.path)
    if request.transport is not None:
        request.transport.close()
    return error  # aiohttp's write to the closed transport fails quietly


def setup_errors(app: web.Application) -> None:
    """Install JSON error rendering."""
    app.middlewares.append(error_middleware)
    app.on_response_prepare.append(_note_response_started)


def presented_key(request: web.Request) -> str | None:
    """The key a client presented: ``X-API-Key`` or ``Authorization: Bearer``."""
    key = request.headers.get(API_KEY_HEADER)
    if key:
        return key
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def key_matches(presented: str | None, keys: Iterable[str]) -> bool:
    """Constant-time check of ``presented`` against every accepted key."""
    if presented is None:
        return False
    candidate = presented.encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:
        # Compare against all keys, without short-circuiting, so timing says nothing.
        matched |= hmac.compare_digest(candidate, key.encode("utf-8"))
    return matched


def setup_auth(app: web.Application, keys: Iterable[str], *, public: Iterable[str] = ()) -> None:
    """Require one of ``keys`` on every path except ``public`` ones.

    With no keys at all, auth is off (the caller decides whether that is allowed).
    """
    accepted = tuple(keys)
    public_paths = frozenset(public)
    defer_expect_continue(app)
    if not accepted:
        _LOGGER.warning("no client API keys are set: every client that reaches this port is "
                        "served (set CEREBRUM_CLIENT_API_KEYS unless the network is trusted)")
        return
    if any(len(key) < SHORT_KEY for key in accepted):
        _LOGGER.warning("an API key is shorter than %d characters: it can be guessed; make one "
                        "with `cerebrum keygen`", SHORT_KEY)

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse requests without a valid key with 401."""
        if request.path in public_paths or key_matches(presented_key(request), accepted):
            return await handler(request)
        raise Unauthorized(
            "missing or invalid API key: send it as 'X-API-Key' or 'Authorization: Bearer'",
            headers={"WWW-Authenticate": "Bearer"},
        )

    app.middlewares.append(auth_middleware)


# -- Expect: 100-continue ------------------------------------------------------

async def _expect_later(request: web.Request) -> None:
    """An expect handler that answers nothing yet: aiohttp's default sends
    ``100 Continue`` before any middleware runs, i.e. before auth and the size
    check. ``read_json`` sends it once both have passed."""
    if request.version != (1, 1):
        return
    expect = request.headers.get("Expect", "").lower()
    if expect != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")


def defer_expect_continue(app: web.Application) -> None:
    """Make every route of ``app`` defer ``100 Continue`` to ``read_json``.

    Routes are added after the middlewares, so this runs at start-up, when the
    router is complete.
    """
    async def install(app: web.Application) -> None:
        for route in app.router.routes():
            # No public setter: routes take their expect handler at creation,
            # and app.py's routes are added without one.
            route._expect_handler = _expect_later

    if install not in app.on_startup:
        app.on_startup.append(install)


async def send_continue(request: web.Request) -> None:
    """Answer ``Expect: 100-continue`` now that the request may send its body."""
    if (request.version == (1, 1)
            and request.headers.get("Expect", "").lower() == "100-continue"
            and request.writer is not None):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
