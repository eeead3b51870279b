"""The orchestrator's own metrics: breakers, the optimiser, the cache, the process.

Breaker states, cache figures and asyncio tasks are read when Prometheus
scrapes (a collector), so they are never stale: an open circuit whose cooldown
ran out reads half-open, as ``/health`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cerebrum.orchestrator.breaker import BreakerState
from cerebrum.orchestrator.state import OrchestratorState
from cerebrum.prompt.optimizer import OptimizeStats

BREAKER_STATE_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class OrchestratorMetrics:
    """Counters and histograms updated as requests pass."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.breaker_transitions = Counter(
            "cerebrum_breaker_transitions", "Circuit breaker transitions",
            ["backend", "from_state", "to_state"], registry=registry)
        self.optimizer_reduction = Histogram(
            "cerebrum_optimizer_reduction_ratio", "Share of the prompt the optimiser removed",
            buckets=(0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), registry=registry)
        self.optimizer_seconds = Histogram(
            "cerebrum_optimizer_seconds", "Time the optimiser took",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1),
            registry=registry)
        self.backend_requests = Counter(
            "cerebrum_backend_requests", "Completions by the backend that served them",
            ["backend"], registry=registry)
        # Process figures: RSS, open file descriptors, CPU (Linux /proc).
        ProcessCollector(registry=registry)

    def breaker_transition(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self.breaker_transitions.labels(name, old.value, new.value).inc()

    def optimized(self, report: OptimizeStats | None) -> None:
        """Count one request's optimisation (None: it was not asked for)."""
        if report is None:
            return
        if report.skipped_reason is None:
            self.optimizer_reduction.observe(report.reduction)
        self.optimizer_seconds.observe(report.elapsed_ms / 1000)


ORCHESTRATOR_METRICS = web.AppKey("orchestrator_metrics", OrchestratorMetrics)


class StateCollector(Collector):
    """Figures read from the live state at scrape time."""

    def __init__(self, state: OrchestratorState) -> None:
        self._state = state

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        state = self._state
        breaker = GaugeMetricFamily("cerebrum_breaker_state",
                                    "Circuit state per backend: 0 closed, 1 half-open, 2 open",
                                    labels=["backend"])
        for backend in state.pool.backends:
            breaker.add_metric([backend.name], BREAKER_STATE_VALUES[backend.breaker.state])
        yield breaker
        in_flight = GaugeMetricFamily("cerebrum_backend_in_flight",
                                      "Requests being served by each backend",
                                      labels=["backend"])
        for backend in state.pool.backends:
            in_flight.add_metric([backend.name], backend.in_flight)
        yield in_flight
        affinity = state.affinity.stats
        for name, value, what in (
            ("hits", affinity.hits, "Requests served by the backend holding their prefix"),
            ("misses", affinity.misses, "Requests whose prefix no backend held"),
            ("overrides", affinity.overrides,
             "Requests sent elsewhere because the backend holding them was too busy"),
            ("failovers", affinity.failovers,
             "Requests sent elsewhere because the backend holding them was down"),
        ):
            yield CounterMetricFamily(f"cerebrum_affinity_{name}", what, value=value)
        cache = state.cache
        if cache is not None:
            stats = cache.stats
            for name, value, what in (
                ("hits", stats.hits, "Answers served from the cache"),
                ("misses", stats.misses, "Cacheable requests not in the cache"),
                ("evictions", stats.evictions, "Entries evicted to stay under the byte limit"),
                ("expirations", stats.expirations, "Entries dropped for being older than the TTL"),
                ("stores", stats.stores, "Complete answers stored"),
            ):
                yield CounterMetricFamily(f"cerebrum_cache_{name}", what, value=value)
            yield GaugeMetricFamily("cerebrum_cache_bytes", "Bytes held by the cache",
                                    value=cache.bytes)
            yield GaugeMetricFamily("cerebrum_cache_entries", "Entries in the cache",
                                    value=len(cache))
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # scraped outside the loop (not in practice)
            tasks = 0
        yield GaugeMetricFamily("cerebrum_asyncio_tasks", "Live asyncio tasks", value=tasks)
