"""Sync-lag repair: re-announce calendars whose last notification no sync has covered.

The webhook records every notification it publishes (``Store.record_notification``) and the
processor records when each completed listing began (``save_sync_token``). A calendar
notified before the last listing began is in step; one notified after it, for longer than
``older_than``, has a CalendarChanged that was lost or is stuck: dead-lettered after its
delivery attempts ran out (a worker that crashes while holding messages burns attempts), or
held by a broker that is slow to redeliver (the Pub/Sub emulator can take minutes). Nothing
else would sync that calendar before its next change, so this publishes a fresh
CalendarChanged (source ``repair``) for each. Repeats are harmless: the processor coalesces
notifications older than its last listing.

``LagRepair.run_once`` is what ``confsync repair-lag``, the scheduler route ``POST
/tasks/repair-lag`` and the ingest service's background loop (every
``CONFSYNC_LAG_REPAIR_INTERVAL_S``) call. A calendar re-announced by this process is not
re-announced again for ``older_than``, so a backlog is not multiplied while it drains.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from confsync.contracts import CalendarChanged, Source
from confsync.errors import ConfsyncError
from confsync.ports import Publisher, Store
from confsync.rfc3339 import utc_now

__all__ = ["LagLoop", "LagRepair", "LagReport"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class LagReport:
    lagging: int  # calendars found behind by more than older_than
    republished: list[str]  # the ones re-announced now
    oldest_lag_s: float | None  # how far behind the oldest one was (the sync-lag metric)

    def to_json(self) -> dict[str, object]:
        return {"lagging": self.lagging, "republished": self.republished, "oldest_lag_s": self.oldest_lag_s}


@dataclass
class LagRepair:
    store: Store
    publisher: Publisher
    topic: str
    older_than: timedelta = timedelta(seconds=60)
    limit: int = 500
    clock: Callable[[], datetime] = utc_now
    _announced: dict[str, datetime] = field(default_factory=dict)

    def run_once(self, *, dry_run: bool = False) -> LagReport:
        now = self.clock()
        lagging = self.store.lagging_calendars(now - self.older_than, self.limit)
        self._announced = {k: at for k, at in self._announced.items() if now - at < self.older_than}
        due = [state for state in lagging if state.calendar_id not in self._announced]
        republished: list[str] = []
        if not dry_run:
            for state in due:
                change = CalendarChanged(calendar_id=state.calendar_id, source=Source.REPAIR, received_at=now)
                self.publisher.publish(self.topic, change.to_bytes(), ordering_key=state.calendar_id)
                self._announced[state.calendar_id] = now
                republished.append(state.calendar_id)
        else:
            republished = [state.calendar_id for state in due]
        oldest = min((s.last_notified_at for s in lagging if s.last_notified_at is not None), default=None)
        report = LagReport(
            len(lagging), republished, None if oldest is None else round((now - oldest).total_seconds(), 1)
        )
        if lagging:
            log.warning(
                "sync lag: calendars re-announced",
                lagging=report.lagging,
                republished=len(republished),
                oldest_lag_s=report.oldest_lag_s,
                dry_run=dry_run,
            )
        return report


class LagLoop:
    """``LagRepair.run_once`` every ``interval_s`` on a thread, until ``stop``."""

    def __init__(self, repair: LagRepair, interval_s: float) -> None:
        self._repair = repair
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-repair", daemon=True)

    def start(self) -> LagLoop:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self._repair.run_once()
            except (ConfsyncError, TimeoutError) as err:  # the next round tries again
                log.warning("sync-lag repair failed; retrying next round", error=str(err))

    def stop(self, deadline_s: float) -> bool:
        self._stopping.set()
        self._thread.join(timeout=deadline_s)
        return not self._thread.is_alive()
