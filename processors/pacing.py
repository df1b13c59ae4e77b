"""How long a calendar's next listing waits after its last: longer the faster it is notified.

A listing costs a Calendar request and a pass over every event changed since the last one;
a notification costs only its message. A quiet calendar is listed ``min_interval_s`` after the
last listing at most, so a lone change reaches the provider at once. A calendar in a storm (an
import, a script renaming a hundred meetings) is notified faster than it is worth listing:
from ``storm_rate`` notifications a second the wait grows by ``interval_per_rate_s`` for each
further one, up to ``max_interval_s``. With the defaults (0.5 s up to 8 a second, then 0.15 s
more per notification a second, at most 2 s) a calendar notified 5 times a second waits 0.5 s,
as every calendar did before the pace adapted; at 15 a second 1.55 s, a listing covering 23
(at most 1 in 20 from about 14 a second); from 18 a second 2 s, however fast it changes.
Below ``storm_rate`` nothing changes: changes saved in bursts at ordinary rates bunch up on
arrival, and a rate counted over seconds still sees the bunches.

The rate is an exponentially decaying count of the calendar's notifications over about the last
``time_constant_s`` (4 s), by the time ingest received them: a burst (ten changes saved at once)
is not yet a storm, a sustained 20 a second is one within a few seconds (so a storm's first
seconds cost more listings than its rest), and a backlog delivered late is counted at the rate
it came, not the rate it is handed over. A calendar not notified for ``quiet_after_s`` (1 s)
starts counting afresh: a storm that stopped is forgotten at once, so the next change saved
after it reaches the provider within the shortest interval, not up to 2 s later while the count
decays (a storm at 8 a second or more leaves no such gap).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["ListingPace"]

_KEPT = 4096  # calendars remembered before the quiet ones are forgotten (and the bound doubles while all are busy)


@dataclass
class ListingPace:
    min_interval_s: float = 0.5
    max_interval_s: float = 2.0
    storm_rate: float = 8.0  # notifications a second from which the wait grows
    interval_per_rate_s: float = 0.15  # seconds of wait per notification a second above it
    time_constant_s: float = 4.0
    quiet_after_s: float = 1.0  # a calendar not notified for this long counts its rate afresh
    _rates: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)  # id -> (rate, as of)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _limit: int = field(default=_KEPT, repr=False)

    def note(self, calendar_id: str, received_at: datetime, count: int = 1) -> None:
        """Count ``count`` notifications of ``calendar_id`` (ingest folds a storm's into one
        message), the newest received by ingest at ``received_at``."""
        at, tau = received_at.timestamp(), self.time_constant_s
        with self._lock:
            rate, as_of = self._rates.get(calendar_id, (0.0, at))
            if at >= as_of:
                kept = 0.0 if at - as_of > self.quiet_after_s else rate * math.exp((as_of - at) / tau)
                rate, as_of = kept + count / tau, at
            else:  # delivered out of order: it counts as much as it would have in its turn
                rate += count * math.exp((at - as_of) / tau) / tau
            self._rates[calendar_id] = (rate, as_of)
            if len(self._rates) > self._limit:
                self._forget(as_of)

    def rate(self, calendar_id: str) -> float:
        """Notifications a second, as of the calendar's latest notification."""
        with self._lock:
            return self._rates.get(calendar_id, (0.0, 0.0))[0]

    def interval_s(self, calendar_id: str) -> float:
        """The shortest time from the calendar's last listing to its next."""
        wanted = self.min_interval_s + (self.rate(calendar_id) - self.storm_rate) * self.interval_per_rate_s
        return min(self.max_interval_s, max(self.min_interval_s, wanted))

    def _forget(self, now: float) -> None:
        horizon = now - 10 * self.time_constant_s  # their rate has decayed below 1/20,000 of itself
        self._rates = {key: value for key, value in self._rates.items() if value[1] >= horizon}
        self._limit = max(_KEPT, 2 * len(self._rates))  # so forgetting stays rare, however many are busy
