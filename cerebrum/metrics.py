"""Prometheus metrics shared by both services: HTTP traffic and rejections.

Each app gets its own ``CollectorRegistry`` (tests run several apps in one
process); service-specific metrics register on the same registry. The
middleware sits outside the error middleware so it sees the final status of
every response, errors included, and counts 503s by the reason in their
error code.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from cerebrum.errors import ERROR_CODE

# Seconds: from a fast cache hit or proxy hop to a long generation on a slow VPS.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                   30, 60, 120, 300)

# Error codes of 503s, by the reason a dashboard wants to see.
REJECTION_REASONS = {
    "overloaded": "concurrency",
    "queue_full": "queue",
    "cpu_overloaded": "cpu",
    "insufficient_memory": "ram",
    "circuit_open": "circuit_open",
    "no_backend": "no_backend",
}


class HttpMetrics:
    """Request counts, in-flight gauge, durations, rejections, tokens."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter("cerebrum_http_requests", "HTTP requests by route and status",
                                ["route", "method", "status"], registry=registry)
        self.requests_in_flight = Gauge("cerebrum_http_requests_in_flight", "Requests being served",
                               registry=registry)
        self.duration = Histogram("cerebrum_http_request_duration_seconds",
                                  "Request duration, to the last byte", ["route"],
                                  buckets=LATENCY_BUCKETS, registry=registry)
        self.ttfb = Histogram("cerebrum_time_to_first_token_seconds",
                              "Time from request to the first generated token", ["route"],
                              buckets=LATENCY_BUCKETS, registry=registry)
        self.rejected = Counter("cerebrum_rejected", "Requests refused with 503, by reason",
                                ["reason"], registry=registry)
        self.tokens = Counter("cerebrum_tokens", "Tokens processed", ["direction"],
                              registry=registry)

    def count_tokens(self, prompt: int, completion: int) -> None:
        self.tokens.labels("prompt").inc(prompt)
        self.tokens.labels("completion").inc(completion)


METRICS = web.AppKey("metrics", HttpMetrics)


def route_label(request: web.Request) -> str:
    """The route's pattern, never the raw path (which would explode label cardinality)."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


def setup_metrics(app: web.Application, registry: CollectorRegistry | None = None) -> HttpMetrics:
    """Install the metrics middleware and ``GET /metrics``; returns the metrics."""
    metrics = HttpMetrics(registry or CollectorRegistry(auto_describe=True))
    app[METRICS] = metrics

    @web.middleware
    async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count and time every request."""
        started = time.perf_counter()
        metrics.requests_in_flight.inc()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            if status == 503:
                code = response.get(ERROR_CODE, "")
                metrics.rejected.labels(REJECTION_REASONS.get(code, code or "other")).inc()
            return response
        except asyncio.CancelledError:
            status = 499  # the client closed the connection (nginx's convention)
            raise
        finally:
            metrics.requests_in_flight.dec()
            route = route_label(request)
            metrics.requests.labels(route, request.method, str(status)).inc()
            metrics.duration.labels(route).observe(time.perf_counter() - started)

    app.middlewares.append(metrics_middleware)
    app.router.add_get("/metrics", _exposition)
    return metrics


async def _exposition(request: web.Request) -> web.Response:
    """``GET /metrics``: the Prometheus text format."""
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
