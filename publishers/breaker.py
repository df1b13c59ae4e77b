"""A circuit breaker for the conferencing API: after ``threshold`` consecutive transient
failures it opens for ``cooldown_s``, so callers stop calling instead of each burning its own
retry budget on an outage. After the cool-down one trial call goes through (half-open):
success closes the breaker, failure opens it again.

While it is open a caller waits up to ``hold_s`` for it to let a call through, and only then
gets ``CircuitOpen`` (its message is nacked). Holding the message is what keeps a short outage
from dead-lettering it: every nack spends one of the message's delivery attempts, and Pub/Sub
redelivers a nacked message within seconds (the subscription's minimum backoff), so five
quick nacks would send it to the dead-letter topic long before a 30 s cool-down ends. Flow
control bounds how many messages a worker holds meanwhile."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from publishers.retry import CircuitOpen

__all__ = ["CircuitBreaker"]

log = structlog.get_logger(__name__)


class CircuitBreaker:
    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown_s: float = 30.0,
        hold_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._cooldown_s = cooldown_s
        self._hold_s = hold_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half-open" if self._clock() - self._opened_at >= self._cooldown_s else "open"

    def before_call(self) -> None:
        """Return once a call may go through (waiting up to ``hold_s``), else raise CircuitOpen."""
        deadline = self._clock() + self._hold_s
        with self._changed:
            while self._opened_at is not None:
                if not self._trial and self._clock() - self._opened_at >= self._cooldown_s:
                    self._trial = True  # half-open: this one call tests the water
                    return
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise CircuitOpen("conferencing API circuit is open; try again after the cool-down")
                until_half_open = self._opened_at + self._cooldown_s - self._clock()
                self._changed.wait(min(remaining, max(until_half_open, 0.05)))

    def success(self) -> None:
        with self._lock:
            if self._opened_at is not None:
                log.info("circuit closed")
            self._failures, self._opened_at, self._trial = 0, None, False
            self._changed.notify_all()

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial or (self._opened_at is None and self._failures >= self._threshold):
                self._opened_at, self._trial = self._clock(), False
                log.error("circuit opened", consecutive_failures=self._failures, cooldown_s=self._cooldown_s)
            self._changed.notify_all()
