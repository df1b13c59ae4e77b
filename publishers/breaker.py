"""A circuit breaker for the conferencing API: after ``threshold`` consecutive transient
failures it opens for ``cooldown_s``: callers get ``CircuitOpen`` at once (their messages are
nacked and come back later) instead of each burning its own retry budget on an outage. After
the cool-down one trial call goes through (half-open): success closes the breaker, failure
opens it again."""

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
        self, *, threshold: int = 5, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half-open" if self._clock() - self._opened_at >= self._cooldown_s else "open"

    def before_call(self) -> None:
        """Raise CircuitOpen unless a call may go through now."""
        with self._lock:
            if self._opened_at is None:
                return
            if self._clock() - self._opened_at < self._cooldown_s or self._trial:
                raise CircuitOpen("conferencing API circuit is open; try again after the cool-down")
            self._trial = True  # half-open: this one call tests the water

    def success(self) -> None:
        with self._lock:
            if self._opened_at is not None:
                log.info("circuit closed")
            self._failures, self._opened_at, self._trial = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial or (self._opened_at is None and self._failures >= self._threshold):
                self._opened_at, self._trial = self._clock(), False
                log.error("circuit opened", consecutive_failures=self._failures, cooldown_s=self._cooldown_s)
