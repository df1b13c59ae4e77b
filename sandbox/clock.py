"""A clock the sandboxes read instead of the wall clock, so tests can move time forward.

``POST /_sandbox/clock`` with ``{"advance_s": N}`` moves a sandbox's clock N seconds ahead:
channels expire and timestamps jump without a test sleeping for real. One move is a finite
number of seconds from 0 to ten years, and the clock never passes the year 9000 (what is
computed from it, expirations included, must stay representable); ``advance`` raises
ValueError for anything else and leaves the clock as it was.
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

__all__ = ["MAX_ADVANCE_S", "Clock"]

MAX_ADVANCE_S = 10 * 365.25 * 24 * 3600  # ten years: the most one advance moves the clock
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)  # the clock stops short of this


class Clock:
    """Wall-clock time plus an offset that only ever grows."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, seconds: object) -> None:
        """Move the clock ``seconds`` ahead; ValueError (and no move) unless that is a finite
        number from 0 to MAX_ADVANCE_S and the clock stays before the year 9000."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ValueError("the clock advances by a number of seconds")  # noqa: TRY004 - one error for callers
        try:
            amount = float(seconds)
        except OverflowError as err:  # an int too large for a float
            raise ValueError("the clock advances by at most ten years at a time") from err
        if not math.isfinite(amount):
            raise ValueError("the clock advances by a finite number of seconds")
        if amount < 0:
            raise ValueError("the clock only moves forward")
        if amount > MAX_ADVANCE_S:
            raise ValueError("the clock advances by at most ten years at a time")
        with self._lock:
            offset = self._offset + timedelta(seconds=amount)
            if datetime.now(UTC) + offset >= _LATEST:
                raise ValueError(f"the clock cannot pass {_LATEST:%Y-%m-%d}")
            self._offset = offset
