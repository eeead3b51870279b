"""Logging with request correlation.

The current request id lives in a ``ContextVar``; a logging filter copies it
onto every record, so each line logged while serving a request carries it,
including lines from libraries. Lines are plain text or one JSON object each.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# Attributes of every LogRecord; anything else passed via ``extra=`` is a field.
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def install_request_id_factory() -> None:
    """Stamp ``request_id`` on every LogRecord when it is created (idempotent).

    A record factory rather than only a handler filter: the id must be read
    while the request's context is current, and every handler (including
    ones added later, such as test capture) then sees it.
    """
    current = logging.getLogRecordFactory()
    if getattr(current, "_stamps_request_id", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        record.request_id = request_id_var.get()
        return record

    factory._stamps_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` from the context."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request_id, message, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and key != "request_id" and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# C0 controls, DEL and C1 controls (ESC starts terminal sequences; CR/LF forge lines),
# and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``):
    a client's or backend's string can then neither forge a log line nor reach the
    terminal as an escape sequence."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1] if m.group() != "'" else m.group(),
                        text)


class TextFormatter(logging.Formatter):
    """Human-readable lines with the request id and any extra fields as key=value.

    The message and the fields are escaped (``escape_controls``): they carry
    strings from clients and backends. A traceback stays multi-line (our code's).
    """

    converter = time.gmtime  # type: ignore[assignment]  # logging's own documented use

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.getMessage())
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        extras = [
            f"{key}={escape_controls(str(value))}"
            for key, value in vars(record).items()
            if key not in _RESERVED and key != "request_id" and not key.startswith("_")
        ]
        if extras:
            line = f"{line} {' '.join(extras)}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class RateLimit(logging.Filter):
    """Lets one matching record through per ``interval_s``, with the count of those it held
    back; the traceback is dropped (the same one each time). For floods a client can cause."""

    def __init__(self, matches: Callable[[logging.LogRecord], bool], interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._matches = matches
        self._interval_s = interval_s
        self._clock = clock
        self._last = -float("inf")
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._matches(record):
            return True
        now = self._clock()
        if now - self._last < self._interval_s:
            self.suppressed += 1
            return False
        self._last = now
        if self.suppressed:
            record.msg = f"{record.getMessage().splitlines()[0]} ({self.suppressed} more like it " \
                         f"in the last {self._interval_s:g} s not logged)"
            record.args = None
            self.suppressed = 0
        record.exc_info = None
        record.exc_text = None
        return True


def _accept_failed(record: logging.LogRecord) -> bool:
    return str(record.msg).startswith("socket.accept() out of system resource")


class RedactBadRequests(logging.Filter):
    """aiohttp logs a malformed request with its traceback and the offending bytes (the
    raw header line: an API key sent as ``X-API-Key : ...`` included). Keep one short line
    naming the peer and the kind of error, never the bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not _is_http_parse_error(exc):
            return True
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg = "malformed HTTP request from %s: %s (%s)"
        record.args = (peer, type(exc).__name__, getattr(exc, "code", 400))
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _is_http_parse_error(exc: BaseException) -> bool:
    from aiohttp.http_exceptions import HttpProcessingError
    from aiohttp.web_protocol import RequestPayloadError

    # A body that does not decompress fails again when aiohttp reads the rest of
    # it after the answer, logged as "Unhandled exception": still the client's.
    return isinstance(exc, HttpProcessingError) or (
        isinstance(exc, RequestPayloadError)
        and isinstance(exc.__cause__, HttpProcessingError))


def _bad_request(record: logging.LogRecord) -> bool:
    return str(record.msg).startswith("malformed HTTP request")


def install_log_guards() -> None:
    """Quieten the log lines a client can cause in bulk (idempotent)."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, RedactBadRequests) for f in server.filters):
        server.addFilter(RedactBadRequests())
        server.addFilter(RateLimit(_bad_request))
    loop_logger = logging.getLogger("asyncio")
    if not any(isinstance(f, RateLimit) for f in loop_logger.filters):
        # At the descriptor limit asyncio logs a traceback per failed accept().
        loop_logger.addFilter(RateLimit(_accept_failed))


def setup_logging(*, json_lines: bool = False, level: str = "INFO") -> None:
    """Configure the root logger once for a service process."""
    install_request_id_factory()
    install_log_guards()
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log duplicates our completion lines.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
