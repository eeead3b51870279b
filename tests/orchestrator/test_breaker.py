"""The circuit breaker's state machine, driven by a fake clock: every transition."""

from __future__ import annotations

import logging

import pytest

from cerebrum.orchestrator.breaker import BreakerState, CircuitBreaker, CircuitOpenError
from tests.orchestrator.conftest import FakeClock

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


@pytest.fixture
def transitions() -> list[tuple[BreakerState, BreakerState]]:
    return []


@pytest.fixture
def breaker(clock: FakeClock, transitions: list) -> CircuitBreaker:
    return CircuitBreaker("vps:9000", failure_threshold=3, cooldown_s=10, clock=clock,
                          on_transition=lambda _, old, new: transitions.append((old, new)))


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.before_request()
        breaker.record_failure()


def test_closed_lets_requests_through_and_success_resets_the_count(breaker: CircuitBreaker
                                                                   ) -> None:
    fail(breaker, 2)
    breaker.before_request()
    breaker.record_success()
    fail(breaker, 2)
    assert breaker.state is CLOSED
    assert breaker.consecutive_failures == 2


def test_opens_after_threshold_and_refuses_with_remaining_cooldown(
        breaker: CircuitBreaker, clock: FakeClock, transitions: list) -> None:
    fail(breaker, 3)
    assert breaker.state is OPEN
    assert transitions == [(CLOSED, OPEN)]
    clock.advance(4)
    with pytest.raises(CircuitOpenError) as refused:
        breaker.before_request()
    assert refused.value.retry_after == pytest.approx(6)
    assert breaker.retry_after() == pytest.approx(6)


def test_half_open_after_cooldown_lets_exactly_one_probe(
        breaker: CircuitBreaker, clock: FakeClock, transitions: list) -> None:
    fail(breaker, 3)
    clock.advance(10)
    assert breaker.state is HALF_OPEN
    breaker.before_request()  # the probe
    for _ in range(3):
        with pytest.raises(CircuitOpenError) as refused:
            breaker.before_request()
        assert refused.value.retry_after >= 1
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


def test_successful_probe_closes(breaker: CircuitBreaker, clock: FakeClock,
                                 transitions: list) -> None:
    fail(breaker, 3)
    clock.advance(10)
    breaker.before_request()
    breaker.record_success()
    assert breaker.state is CLOSED
    assert breaker.consecutive_failures == 0
    breaker.before_request()
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_failed_probe_reopens_for_a_full_cooldown(breaker: CircuitBreaker, clock: FakeClock,
                                                  transitions: list) -> None:
    fail(breaker, 3)
    clock.advance(15)
    breaker.before_request()
    breaker.record_failure()
    assert breaker.state is OPEN
    assert breaker.retry_after() == pytest.approx(10)
    clock.advance(9.9)
    assert breaker.state is OPEN
    clock.advance(0.1)
    assert breaker.state is HALF_OPEN
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN),
                           (OPEN, HALF_OPEN)]


def test_abandoned_probe_hands_its_turn_back(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.advance(10)
    breaker.before_request()
    breaker.record_abandoned()
    assert breaker.state is HALF_OPEN
    breaker.before_request()  # a new probe, not a refusal


def test_late_failure_while_open_does_not_extend_the_cooldown(breaker: CircuitBreaker,
                                                              clock: FakeClock) -> None:
    for _ in range(4):
        breaker.before_request()  # four requests start while closed
    for _ in range(3):
        breaker.record_failure()
    clock.advance(5)
    breaker.record_failure()  # the fourth fails after the circuit opened
    assert breaker.retry_after() == pytest.approx(5)


def test_every_transition_is_logged(breaker: CircuitBreaker, clock: FakeClock,
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cerebrum.orchestrator.breaker")
    fail(breaker, 3)
    clock.advance(10)
    breaker.before_request()
    breaker.record_success()
    lines = [r.__dict__ for r in caplog.records if hasattr(r, "breaker_to")]
    moves = [(line["breaker_from"], line["breaker_to"]) for line in lines]
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert all(line["backend"] == "vps:9000" for line in lines)
    assert caplog.records[0].levelno == logging.WARNING  # opening is worth a warning


def test_rejects_nonsense_settings(clock: FakeClock) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("x", failure_threshold=0, cooldown_s=1, clock=clock)
