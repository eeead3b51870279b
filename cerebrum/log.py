"""Logging with request correlation.

The current request id lives in a ``ContextVar``; a logging filter copies it
onto every record, so each line logged while serving a request carries it,
including lines from libraries. Lines are plain text or one JSON object each.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
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


class TextFormatter(logging.Formatter):
    """Human-readable lines with the request id and any extra fields as key=value."""

    converter = time.gmtime

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _RESERVED and key != "request_id" and not key.startswith("_")
        ]
        return f"{line} {' '.join(extras)}" if extras else line


def setup_logging(*, json_lines: bool = False, level: str = "INFO") -> None:
    """Configure the root logger once for a service process."""
    install_request_id_factory()
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log duplicates our completion lines.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
