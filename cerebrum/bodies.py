"""Reading HTTP bodies within bounds: a client's JSON request, and a peer's answer.

Every body is read through ``read_at_most``, which never holds more than
its limit however the body is framed (Content-Length, chunked, or neither)
and however many reads it takes (a tunnel delivers 1,400 bytes at a time).
A request body must also arrive in time and decode to JSON that the rest of
the code can handle; a failure is an OpenAI-style 400, 408 or 413.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError

from cerebrum.errors import BadRequest, PayloadTooLarge, RequestTimeout
from cerebrum.middlewares import send_continue


async def read_at_most(stream: aiohttp.StreamReader, limit: int, *,
                       keep_cut: bool = False) -> bytes:
    """Up to ``limit`` bytes of a body: all of it when it is shorter. To tell "over
    the limit" apart, ask for one byte more and compare.

    A body the network cut short raises ``aiohttp.ClientPayloadError``, or with
    ``keep_cut`` ends what was read (enough of an error body to log).
    """
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        try:
            # One read returns what one TCP segment brought: loop to the end.
            data = await stream.read(limit - size)
        except aiohttp.ClientPayloadError:
            if keep_cut:
                break
            raise
        if not data:
            break
        chunks.append(data)
        size += len(data)
    return b"".join(chunks)


BODY_TIMEOUT_S = 30.0
"""A client gets this long to send its whole body; a trickle (slowloris) is cut off.
(Headers are bounded by aiohttp's keep-alive timeout on a new connection.)"""


async def read_json(request: web.Request, max_bytes: int) -> Any:
    """Read and decode a JSON body, refusing oversized ones before reading them."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {max_bytes}")
    # Auth and the size check have passed: only now ask for the body.
    await send_continue(request)
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            # Without Content-Length (chunked), read at most one byte past the limit.
            data = await read_at_most(request.content, max_bytes + 1)
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {BODY_TIMEOUT_S:g} s") \
            from None
    except web.RequestPayloadError as exc:
        if not isinstance(exc.__cause__, ContentEncodingError):
            raise  # the client went away mid-body: error_middleware notes it
        encoding = request.headers.get("Content-Encoding", "")[:40]
        raise BadRequest(f"the request body does not decompress as its Content-Encoding "
                         f"({encoding!r}) says") from None
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"request body exceeds the limit of {max_bytes} bytes")
    if not data:
        raise BadRequest("the request body is empty; expected a JSON object")
    return decode_json(data)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def decode_json(data: bytes) -> Any:
    """Decode a request body, or raise BadRequest: also for what ``json`` accepts but
    nothing downstream can handle (nesting deep enough to exhaust the stack, integers
    over Python's 4,300-digit limit, unpaired surrogates that cannot be encoded)."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the request body is nested too deeply") from None
    except ValueError as exc:  # int() over sys.get_int_max_str_digits()
        raise BadRequest(f"the request body is not usable JSON: {str(exc)[:120]}") from None
    # Only bodies with a \uD800-\uDFFF escape can hold a lone surrogate: the
    # walk is skipped for everything else.
    if _SURROGATE_ESCAPE.search(data) and _has_lone_surrogate(value):
        raise BadRequest("the request body holds an unpaired UTF-16 surrogate (\\ud800-\\udfff)")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
