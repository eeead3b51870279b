"""One way to report an error: an exception per failure, rendered in OpenAI's JSON shape.

Handlers raise an ``ApiError`` subclass; ``error_middleware`` (in
``cerebrum.middlewares``) turns it into ``{"error": {...}}`` with the right
status. Anything else is logged with its traceback and answered with a generic
500 that never carries the exception text.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, ClassVar

from aiohttp import web

if TYPE_CHECKING:
    from aiohttp_sse import EventSourceResponse

MAX_RETRY_AFTER_S = 3600.0
"""No ``Retry-After`` we send is longer (the orchestrator clamps a backend's further,
with ``CEREBRUM_MAX_RETRY_AFTER_S``)."""

ERROR_CODE = web.ResponseKey("error_code", str)
"""Set on every error response, so metrics can count rejections by reason."""


class ApiError(Exception):
    """Base for every error a client may see."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The OpenAI-style error object."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    async def send_as_event(self, sse: EventSourceResponse) -> None:
        """End a stream already begun with this error: an SSE ``error`` event carrying the
        same JSON object (no status can change once the first bytes are out)."""
        await sse.send(json.dumps(self.body()), event="error")

    def to_response(self) -> web.Response:
        """A JSON response for this error."""
        response = web.json_response(self.body(), status=self.status, headers=self.headers)
        response[ERROR_CODE] = self.code or self.error_type
        return response


class BadRequest(ApiError):
    status = 400
    error_type = "invalid_request_error"


class ContextLengthExceeded(BadRequest):
    default_code = "context_length_exceeded"


class Unauthorized(ApiError):
    status = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class NotFound(ApiError):
    status = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFound(NotFound):
    default_code = "model_not_found"


class MethodNotAllowed(ApiError):
    status = 405
    error_type = "invalid_request_error"
    default_code = "method_not_allowed"


class RequestTimeout(ApiError):
    status = 408
    error_type = "invalid_request_error"
    default_code = "request_timeout"


class PayloadTooLarge(ApiError):
    status = 413
    error_type = "invalid_request_error"
    default_code = "payload_too_large"


class BadGateway(ApiError):
    status = 502
    error_type = "upstream_error"
    default_code = "bad_gateway"


class GatewayTimeout(ApiError):
    status = 504
    error_type = "upstream_error"
    default_code = "upstream_timeout"


class Unavailable(ApiError):
    """503 with ``Retry-After``: overloaded, shedding, circuit open, resource limit."""

    status = 503
    error_type = "server_error"
    default_code = "unavailable"

    def __init__(self, message: str, *, retry_after: float = 1.0, code: str | None = None) -> None:
        # Clamped: inf would crash ceil, 1e300 would make a 300-digit header.
        if not math.isfinite(retry_after):
            retry_after = MAX_RETRY_AFTER_S if retry_after > 0 else 1.0
        self.retry_after = max(1, math.ceil(min(retry_after, MAX_RETRY_AFTER_S)))
        super().__init__(message, code=code, headers={"Retry-After": str(self.retry_after)})
