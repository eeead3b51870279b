"""The one completion log line of both services (cerebrum.completion_log)."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from cerebrum.completion_log import CompletionRecord
from cerebrum.metrics import HttpMetrics


def test_both_services_share_the_common_fields_and_their_rounding() -> None:
    orchestrator = CompletionRecord("chat", started=10.0, extra={"backend": "vps:9000"})
    backend = CompletionRecord("chat", generates=True, started=10.0,
                               extra={"finish_reason": "stop"})
    for record in (orchestrator, backend):
        record.requested("m", stream=True)
        record.first_byte = 10.0123456
        record.first_token = 10.02
    mine, theirs = orchestrator.fields(11.0), backend.fields(11.0)
    common = {"event", "kind", "model", "stream", "status", "outcome", "prompt_tokens",
              "completion_tokens", "ttfb_ms", "duration_ms"}
    assert set(mine) == common | {"backend"}
    assert set(theirs) == common | {"ttft_ms", "finish_reason"}  # only the generator has ttft
    assert mine["ttfb_ms"] == theirs["ttfb_ms"] == 12.35
    assert mine["duration_ms"] == theirs["duration_ms"] == 1000.0
    assert theirs["ttft_ms"] == 20.0


def test_usage_is_read_strictly() -> None:
    record = CompletionRecord("text")
    record.take_usage({"prompt_tokens": 7, "completion_tokens": True})
    assert (record.prompt_tokens, record.completion_tokens) == (7, None)
    record.take_usage(None)
    assert (record.prompt_tokens, record.completion_tokens) == (None, None)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() for s in family.samples}


@pytest.mark.parametrize(("count_tokens", "expected"), [(True, 5.0), (False, 0.0)])
def test_a_cache_hit_logs_its_usage_but_adds_no_tokens(
        count_tokens: bool, expected: float, caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry)
    record = CompletionRecord("chat", count_tokens=count_tokens,
                              logger=logging.getLogger("tests.completion"))
    record.take_usage({"prompt_tokens": 5, "completion_tokens": 3})
    record.mark_first_byte()
    record.outcome = "ok"
    with caplog.at_level(logging.INFO, logger="tests.completion"):
        record.write(metrics, "/v1/chat/completions")
    [line] = [r for r in caplog.records if getattr(r, "event", None) == "completion"]
    assert (line.__dict__["prompt_tokens"], line.__dict__["outcome"]) == (5, "ok")
    prompt = [v for (name, labels), v in _samples(registry).items()
              if name == "cerebrum_tokens_total" and ("direction", "prompt") in labels]
    assert sum(prompt) == expected  # a labelled counter has no sample until first counted
