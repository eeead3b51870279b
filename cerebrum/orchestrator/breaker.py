"""A hand-written circuit breaker, one per backend. Pure: no I/O, an injectable clock.

States::

    closed    ── N consecutive failures ──▶ open
    open      ── cooldown elapsed ──────────▶ half-open
    half-open ── the one probe succeeds ────▶ closed
    half-open ── the probe fails ───────────▶ open

While open every request is refused at once with the time left of the
cooldown, so a dead backend costs clients nothing. After the cooldown exactly
one request (the probe) is let through; the others are still refused until it
has a verdict. A probe that ends without one (the client left before the
backend answered) hands its turn back, so the circuit never sticks half-open.

The caller decides what a failure is (connect errors, timeouts, 5xx; a 4xx is
the client's fault and counts as success: the backend answered).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

_LOGGER = logging.getLogger(__name__)

# How long to tell a client to wait while another request is the probe.
_PROBE_RETRY_AFTER_S = 1.0


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(Exception):
    """The circuit refuses requests for now; retry after ``retry_after`` seconds."""

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"circuit for {name} is open; retry in {retry_after:.1f}s")
        self.name = name
        self.retry_after = retry_after


TransitionListener = Callable[[str, BreakerState, BreakerState], None]
"""Called with (breaker name, old state, new state) on every transition (e.g. metrics)."""


class CircuitBreaker:
    """closed → open after ``failure_threshold`` consecutive failures → half-open after
    ``cooldown_s`` → one probe → closed (success) or open again (failure)."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_transition: TransitionListener | None = None,
    ) -> None:
        if failure_threshold < 1 or cooldown_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown_s > 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._on_transition = on_transition
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    # -- reading ------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state; an open circuit whose cooldown has run out reads half-open."""
        self._advance()
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_after(self) -> float:
        """Seconds until a request could be let through (0 when one would be now)."""
        self._advance()
        if self._state is BreakerState.OPEN:
            return max(0.0, self._opened_at + self.cooldown_s - self._clock())
        if self._state is BreakerState.HALF_OPEN and self._probe_in_flight:
            return _PROBE_RETRY_AFTER_S
        return 0.0

    def would_allow(self) -> bool:
        """Whether ``before_request`` would let a request through now (changes nothing)."""
        return self.retry_after() == 0.0

    # -- the request protocol -------------------------------------------------

    def before_request(self) -> None:
        """Let a request through, or raise CircuitOpenError.

        In half-open the request let through becomes the probe; the caller must
        then call exactly one of ``record_success``, ``record_failure`` or
        ``record_abandoned``.
        """
        self._advance()
        if self._state is BreakerState.CLOSED:
            return
        if self._state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            _LOGGER.info("breaker %s: letting one probe through", self.name,
                         extra={"backend": self.name, "breaker": self._state.value})
            return
        raise CircuitOpenError(self.name, self.retry_after())

    def record_success(self) -> None:
        """The backend answered: reset the count; a successful probe closes the circuit."""
        self._failures = 0
        self._probe_in_flight = False
        if self._state is not BreakerState.CLOSED:
            why = "probe succeeded" if self._state is BreakerState.HALF_OPEN else "backend answered"
            self._transition(BreakerState.CLOSED, why)

    def record_failure(self) -> None:
        """The backend failed: count it; at the threshold, or on a failed probe, open."""
        self._advance()
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN:
            self._probe_in_flight = False
            self._open("probe failed")
        elif self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold:
            self._open(f"{self._failures} consecutive failures")
        # Already open (a request that started before the circuit opened
        # failed late): stay open, do not extend the cooldown.

    def record_abandoned(self) -> None:
        """The request ended without a verdict (client gone): give the probe turn back."""
        self._probe_in_flight = False

    # -- internals ----------------------------------------------------------

    def _advance(self) -> None:
        if (self._state is BreakerState.OPEN
                and self._clock() >= self._opened_at + self.cooldown_s):
            self._transition(BreakerState.HALF_OPEN, "cooldown elapsed")

    def _open(self, why: str) -> None:
        self._opened_at = self._clock()
        self._transition(BreakerState.OPEN, why)

    def _transition(self, new: BreakerState, why: str) -> None:
        old, self._state = self._state, new
        level = logging.WARNING if new is BreakerState.OPEN else logging.INFO
        _LOGGER.log(level, "breaker %s: %s -> %s (%s)", self.name, old.value, new.value, why,
                    extra={"backend": self.name, "breaker_from": old.value,
                           "breaker_to": new.value})
        if self._on_transition is not None:
            self._on_transition(self.name, old, new)
