"""Lag repair: publish again what the broker lost or holds too long.

Two kinds of work can go missing between stages, and both leave a trace in the store:

- A CalendarChanged. The webhook records every notification it publishes
  (``Store.record_notification``) and the processor records when each completed listing
  began (``save_sync_token``). A calendar notified after its last listing began, for longer
  than ``older_than``, gets a fresh CalendarChanged (source ``repair``): nothing else would
  sync it before its next change. The processor coalesces repeats.
- A ConferenceCommand. The processor writes each command to the store's outbox before
  publishing it, and a publisher removes it once settled (applied, dropped as stale or
  duplicate, or dead-lettered with its cause). An entry still there when due is published
  again (same command id, so the same Idempotency-Key) and rescheduled with a doubling
  delay (``older_than`` x 2^attempts, at most an hour), so a long provider outage does not
  turn into a flood of copies.

Why they go missing: a message whose delivery attempts run out while workers crash is
dead-lettered by Pub/Sub without any handler having failed on it; the Pub/Sub emulator can
hold a message that was on a killed worker's stream for many minutes (bench/chaos.py found
both). ``LagRepair.run_once`` is what ``confsync repair-lag``, the scheduler route ``POST
/tasks/repair-lag`` and the ingest service's background loop (every
``CONFSYNC_LAG_REPAIR_INTERVAL_S``) call. A calendar re-announced by this process is not
re-announced again within ``older_than``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import structlog

from confsync.contracts import CalendarChanged, Source
from confsync.errors import ConfsyncError
from confsync.ports import Publisher, Store
from confsync.rfc3339 import utc_now

__all__ = ["LagLoop", "LagRepair", "LagReport"]

log = structlog.get_logger(__name__)

_MAX_DELAY = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class LagReport:
    lagging: int  # calendars behind by more than older_than
    republished: list[str]  # of those, the ones re-announced now
    oldest_lag_s: float | None  # how far behind the oldest one was (the sync-lag metric)
    commands_republished: int = 0  # overdue outbox entries published again (a dry run: found)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class LagRepair:
    store: Store
    publisher: Publisher
    changes_topic: str
    commands_topic: str | None = None  # None: calendars only
    older_than: timedelta = timedelta(seconds=60)
    limit: int = 500
    clock: Callable[[], datetime] = utc_now
    _announced: dict[str, datetime] = field(default_factory=dict)

    def run_once(self, *, dry_run: bool = False) -> LagReport:
        now = self.clock()
        lagging = self.store.lagging_calendars(now - self.older_than, self.limit)
        self._announced = {k: at for k, at in self._announced.items() if now - at < self.older_than}
        due = [state.calendar_id for state in lagging if state.calendar_id not in self._announced]
        commands = 0
        if not dry_run:
            for calendar_id in due:
                change = CalendarChanged(calendar_id=calendar_id, source=Source.REPAIR, received_at=now)
                self.publisher.publish(self.changes_topic, change.to_bytes(), ordering_key=calendar_id)
                self._announced[calendar_id] = now
            commands = self._republish_commands(now)
        elif self.commands_topic is not None:
            commands = len(self.store.outbox_due(now, self.limit))
        oldest = min((s.last_notified_at for s in lagging if s.last_notified_at is not None), default=None)
        lag_s = None if oldest is None else round((now - oldest).total_seconds(), 1)
        report = LagReport(len(lagging), due, lag_s, commands)
        if lagging or commands:
            log.warning(
                "lag repaired" if not dry_run else "lag found (dry run)",
                lagging=report.lagging,
                republished=len(due),
                oldest_lag_s=lag_s,
                commands_republished=commands,
            )
        return report

    def _republish_commands(self, now: datetime) -> int:
        if self.commands_topic is None:
            return 0
        entries = self.store.outbox_due(now, self.limit)
        for entry in entries:
            self.publisher.publish(self.commands_topic, entry.data, ordering_key=entry.conference_id)
            delay = min(self.older_than * 2 ** min(entry.attempts + 1, 10), _MAX_DELAY)
            self.store.outbox_reschedule(entry.command_id, now + delay, entry.attempts + 1)
        return len(entries)


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
                log.warning("lag repair failed; retrying next round", error=str(err))

    def stop(self, deadline_s: float) -> bool:
        self._stopping.set()
        self._thread.join(timeout=deadline_s)
        return not self._thread.is_alive()
