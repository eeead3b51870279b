"""Serving an app on a socket with bounded connections: both services' ``run_app``.

aiohttp alone lets any number of connections sit without sending their
request headers (a slowloris): each costs a file descriptor, and at
systemd's default limit of 1,024 they take every one, so real requests time
out and asyncio logs an "accept() out of system resource" traceback per try.
``ConnectionGuard`` bounds both:

* a connection that has not sent complete request headers within
  ``header_timeout_s`` of connecting is closed;
* at most ``max_connections`` are open at once: a new one past the limit
  closes the oldest connection that is not serving a request (an idle
  keep-alive or a trickler), or, when every one is busy, is itself closed.

The units raise ``LimitNOFILE`` well above ``max_connections``, so the guard,
not the kernel, is what says no. The guard sees a connection only after asyncio
has accepted it, and asyncio accepts up to the listen backlog in one go (two
loop turns before the guard's hook runs, one more before a closed socket's
descriptor is freed): a server that was not scheduled for a moment finds its
whole queue waiting. ``fit_to_descriptors`` keeps that queue short enough for
the descriptors the limit leaves, and where the limit is too low for
``max_connections`` itself, lowers the guard's limit (with a warning) so the
guard still says no before the kernel.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

# Descriptors a service holds besides its clients' connections: the listening
# socket, the loop's selector and self-pipe, logs, backend pools, model files.
RESERVED_DESCRIPTORS = 32
# asyncio's own default; a longer queue buys nothing at these services' scale.
MAX_BACKLOG = 128
# Accept bursts that can hold descriptors before the guard closes any.
BURSTS_IN_FLIGHT = 4


class ConnectionGuard:
    """Installed on an aiohttp ``web.Server``: see the module docstring."""

    def __init__(self, max_connections: int, header_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self._open: OrderedDict[RequestHandler, asyncio.TimerHandle | None] = OrderedDict()
        self.evicted = 0
        self.refused = 0
        self.timed_out = 0

    def install(self, server: web.Server) -> None:
        """Wrap the server's connection bookkeeping (it is called by every connection)."""
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
            made(handler, transport)
            self._admit(handler, transport)

        def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
            self._forget(handler)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    @property
    def open(self) -> int:
        return len(self._open)

    def _admit(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        if len(self._open) >= self.max_connections:
            idle = next((h for h in self._open if not _busy(h)), None)
            if idle is None:
                self.refused += 1
                transport.close()
                return
            self.evicted += 1
            self._close(idle)
        loop = asyncio.get_running_loop()
        self._open[handler] = loop.call_later(self.header_timeout_s, self._check_headers,
                                              handler)

    def _check_headers(self, handler: RequestHandler) -> None:
        if handler in self._open:
            self._open[handler] = None
            if not _headers_seen(handler):
                self.timed_out += 1
                self._close(handler)

    def _close(self, handler: RequestHandler) -> None:
        self._forget(handler)
        handler.force_close()
        if handler.transport is not None:
            handler.transport.close()

    def _forget(self, handler: RequestHandler) -> None:
        timer = self._open.pop(handler, None)
        if timer is not None:
            timer.cancel()


def _headers_seen(handler: RequestHandler) -> bool:
    # aiohttp counts a request once its headers are parsed (private, but the
    # guard's tests fail loudly if that ever changes).
    return getattr(handler, "_request_count", 0) > 0


def _busy(handler: RequestHandler) -> bool:
    return bool(getattr(handler, "_request_in_progress", False))


def fit_to_descriptors(max_connections: int, descriptor_limit: int) -> tuple[int, int]:
    """The (connections, listen backlog) for which ``connections`` open plus
    ``BURSTS_IN_FLIGHT`` accept bursts stay within ``descriptor_limit``: the backlog
    as long as the spare descriptors allow (at most asyncio's usual 128, at least an
    eighth of them), the connections lowered only where the limit forces it."""
    spare = max(0, descriptor_limit - RESERVED_DESCRIPTORS)
    floor = max(1, min(MAX_BACKLOG, spare // 8))
    backlog = max(floor, min(MAX_BACKLOG, (spare - max_connections) // BURSTS_IN_FLIGHT))
    return max(1, min(max_connections, spare - BURSTS_IN_FLIGHT * backlog)), backlog


def _descriptor_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return MAX_BACKLOG * 64 if soft == resource.RLIM_INFINITY else soft


def run_app(app: web.Application, *, host: str, port: int, max_connections: int,
            header_timeout_s: float, shutdown_timeout: float = 60.0,
            print: Callable[[str], Any] | None = None) -> None:
    """Like ``aiohttp.web.run_app`` (handler cancellation on, SIGINT/SIGTERM stop it
    gracefully), with a ``ConnectionGuard`` on the server."""
    asyncio.run(_serve(app, host, port, ConnectionGuard(max_connections, header_timeout_s),
                       shutdown_timeout, print))


async def _serve(app: web.Application, host: str, port: int, guard: ConnectionGuard,
                 shutdown_timeout: float, print: Callable[[str], Any] | None) -> None:
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=shutdown_timeout,
                           access_log=None)
    await runner.setup()
    try:
        assert runner.server is not None
        guard.install(runner.server)
        limit = _descriptor_limit()
        connections, backlog = fit_to_descriptors(guard.max_connections, limit)
        if connections < guard.max_connections:
            log.warning("open-files limit %d leaves room for %d connections, not the %d "
                        "configured: serving %d (raise LimitNOFILE to serve more)", limit,
                        connections, guard.max_connections, connections)
            guard.max_connections = connections
        site = web.TCPSite(runner, host, port, backlog=backlog)
        await site.start()
        if print is not None:
            print(f"serving on http://{host}:{port}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
