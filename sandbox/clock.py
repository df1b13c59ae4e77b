"""A clock the sandboxes read instead of the wall clock, so tests can move time forward.

``POST /_sandbox/clock`` with ``{"advance_s": N}`` moves a sandbox's clock N seconds ahead:
channels expire and timestamps jump without a test sleeping for real.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

__all__ = ["Clock"]


class Clock:
    """Wall-clock time plus an offset that only ever grows."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += timedelta(seconds=seconds)
