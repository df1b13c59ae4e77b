"""Lag repair: publish again what the broker lost or holds too long.

Two kinds of work can go missing between stages, and both leave a trace in the store:

- A CalendarChanged. The webhook records every notification it publishes
  (``Store.record_notification``) and the processor records when each completed listing
  began (``save_sync_token``). A calendar notified after its last listing began, for longer
  than ``older_than``, gets a fresh CalendarChanged (source ``repair``): nothing else would
  sync it before its next change. The processor coalesces repeats.
- A calendar gone quiet. One that no listing has covered for ``poll_after`` (notified or
  not) gets a CalendarChanged (source ``poll``): Google may have stopped delivering on its
  channel while it still looks live, and this bounds how long a change can wait to that. It
  costs one incremental listing per quiet calendar per ``poll_after``.
- A ConferenceCommand. The processor writes each command to the store's outbox before
  publishing it, and a publisher removes it once settled (applied, dropped as stale or
  duplicate, or dead-lettered with its cause). An entry still there when due is published
  again (same command id, so the same Idempotency-Key) and rescheduled with a doubling
  delay (``older_than`` x 2^attempts, at most an hour), so a long provider outage does not
  turn into a flood of copies. After ``max_republishes`` copies it is given up: published to
  the commands' dead-letter topic with the cause (``confsync deadletter list`` shows it,
  ``replay`` brings it back), then removed from the outbox.

A deferred outbox entry (a delete waiting out ``CONFSYNC_DELETE_GRACE_S``, processors/commands.py)
is published the first time by the same pass once due: that is its schedule, not a repair, and is
counted apart (``deferred_released``).

Why they go missing: a message whose delivery attempts run out while workers crash is
dead-lettered by Pub/Sub without any handler having failed on it; the Pub/Sub emulator can
hold a message that was on a killed worker's stream for many minutes (bench/chaos.py found
both). ``LagRepair.run_once`` is what ``confsync repair-lag``, the scheduler route ``POST
/tasks/repair-lag`` and the ingest service's background loop (every
``CONFSYNC_LAG_REPAIR_INTERVAL_S``) call. A calendar re-announced by this process is not
re-announced again within ``older_than``. Only active calendars are re-announced: one the
processor marked failed waits for an operator (``confsync backfill --calendar``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import structlog

from confsync.contracts import CalendarChanged, Source
from confsync.errors import ConfsyncError, PermanentError
from confsync.ports import Publisher, Store
from confsync.rfc3339 import utc_now
from confsync.store import OutboxEntry
from confsync.transport.base import Message, dead_letter_attributes

__all__ = ["LagLoop", "LagRepair", "LagReport", "Unsettled"]

log = structlog.get_logger(__name__)

_MAX_DELAY = timedelta(hours=1)
_DEAD_LETTER_SOURCE = "lag-repair:outbox"


class Unsettled(PermanentError):
    """The cause a given-up outbox command is dead-lettered with: no publisher settled it."""


@dataclass(frozen=True, slots=True)
class LagReport:
    lagging: int  # calendars behind by more than older_than
    republished: list[str]  # of those, the ones re-announced now
    oldest_lag_s: float | None  # how far behind the oldest one was (the sync-lag metric)
    commands_republished: int = 0  # overdue outbox entries published again (a dry run: found)
    commands_dead_lettered: int = 0  # of the overdue, those past max_republishes (a dry run: found)
    deferred_released: int = 0  # deferred commands published now that their grace is over (a dry run: found)
    polled: int = 0  # quiet calendars announced for a listing (a dry run: found)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class LagRepair:
    store: Store
    publisher: Publisher
    changes_topic: str
    commands_topic: str | None = None  # None: calendars only
    commands_dead_topic: str | None = None  # None: a given-up command is only logged, at error
    older_than: timedelta = timedelta(seconds=60)
    max_republishes: int = 10
    limit: int = 500
    poll_after: timedelta | None = None  # None: quiet calendars are not polled
    clock: Callable[[], datetime] = utc_now
    _announced: dict[str, datetime] = field(default_factory=dict)
    _polled: dict[str, datetime] = field(default_factory=dict)  # not polled again within poll_after

    def run_once(self, *, dry_run: bool = False) -> LagReport:
        now = self.clock()
        lagging = self.store.lagging_calendars(now - self.older_than, self.limit)
        self._announced = {k: at for k, at in self._announced.items() if now - at < self.older_than}
        due = [state.calendar_id for state in lagging if state.calendar_id not in self._announced]
        commands = dead = released = 0
        quiet = self._quiet(now, set(due))
        if not dry_run:
            self._announce(due, Source.REPAIR, now, self._announced)
            self._announce(quiet, Source.POLL, now, self._polled)
            if quiet:
                log.info("quiet calendars polled", polled=len(quiet))
            commands, dead, released = self._republish_commands(now)
        elif self.commands_topic is not None:
            overdue = self.store.outbox_due(now, self.limit)
            released = sum(1 for entry in overdue if entry.deferred)
            dead = sum(1 for entry in overdue if not entry.deferred and self._exhausted(entry))
            commands = len(overdue) - dead - released
        oldest = min((s.last_notified_at for s in lagging if s.last_notified_at is not None), default=None)
        lag_s = None if oldest is None else round((now - oldest).total_seconds(), 1)
        report = LagReport(len(lagging), due, lag_s, commands, dead, released, len(quiet))
        if released:
            log.info("deferred commands released", deferred_released=released)
        if lagging or commands or dead:
            log.warning(
                "lag repaired" if not dry_run else "lag found (dry run)",
                lagging=report.lagging,
                republished=len(due),
                oldest_lag_s=lag_s,
                commands_republished=commands,
                commands_dead_lettered=dead,
            )
        return report

    def _announce(self, calendar_ids: list[str], source: Source, now: datetime, into: dict[str, datetime]) -> None:
        """A CalendarChanged for each calendar, remembered in ``into`` as announced ``now``."""
        for calendar_id in calendar_ids:
            change = CalendarChanged(calendar_id=calendar_id, source=source, received_at=now)
            self.publisher.publish(self.changes_topic, change.to_bytes(), ordering_key=calendar_id)
            into[calendar_id] = now

    def _quiet(self, now: datetime, announced_now: set[str]) -> list[str]:
        """The calendars no listing has covered for ``poll_after``, not announced just now."""
        if self.poll_after is None:
            return []
        poll_after = self.poll_after
        self._polled = {k: at for k, at in self._polled.items() if now - at < poll_after}
        quiet = self.store.quiet_calendars(now - poll_after, self.limit)
        skip = announced_now | set(self._polled)
        return [state.calendar_id for state in quiet if state.calendar_id not in skip]

    def _republish_commands(self, now: datetime) -> tuple[int, int, int]:
        """Publish the overdue commands again, and the deferred ones whose time has come; give up
        those past the cap. (republished, given up, deferred released)"""
        if self.commands_topic is None:
            return 0, 0, 0
        republished = given_up = released = 0
        for entry in self.store.outbox_due(now, self.limit):
            if entry.deferred:
                self.publisher.publish(self.commands_topic, entry.data, ordering_key=entry.conference_id)
                self.store.outbox_reschedule(entry.command_id, now + self.older_than, 0)
                released += 1
            elif self._exhausted(entry):
                self._give_up(entry)
                given_up += 1
            else:
                self._republish(self.commands_topic, entry, now)
                republished += 1
        return republished, given_up, released

    def _exhausted(self, entry: OutboxEntry) -> bool:
        return entry.attempts >= self.max_republishes

    def _republish(self, topic: str, entry: OutboxEntry, now: datetime) -> None:
        self.publisher.publish(topic, entry.data, ordering_key=entry.conference_id)
        delay = min(self.older_than * 2 ** min(entry.attempts + 1, 10), _MAX_DELAY)
        self.store.outbox_reschedule(entry.command_id, now + delay, entry.attempts + 1)
        log.info(
            "command republished",
            command_id=entry.command_id,
            conference_id=entry.conference_id,
            republishes=entry.attempts + 1,
            max_republishes=self.max_republishes,
        )

    def _give_up(self, entry: OutboxEntry) -> None:
        """Dead-letter a command no publisher settled after its last copy, then forget it."""
        cause = Unsettled(
            f"no publisher settled it after {entry.attempts} republishes "
            "(lost in the broker each time, or never handled)"
        )
        ids = {"command_id": entry.command_id, "conference_id": entry.conference_id, "republishes": entry.attempts}
        if self.commands_dead_topic is None:
            log.error("command given up; not dead-lettered (no dead-letter topic): resync its calendar", **ids)
        else:
            message = Message(entry.data, delivery_attempt=entry.attempts)
            attributes = dead_letter_attributes(message, cause, source=_DEAD_LETTER_SOURCE)
            self.publisher.publish(self.commands_dead_topic, entry.data, attributes=attributes)
            log.error("command dead-lettered after its last republish", topic=self.commands_dead_topic, **ids)
        self.store.outbox_done([entry.command_id])


class LagLoop:
    """``tick`` every ``interval_s`` on a thread, until ``stop``."""

    def __init__(
        self,
        repair: LagRepair,
        interval_s: float,
        *,
        channels: Callable[[], object] | None = None,
        retention: Callable[[], object] | None = None,
    ) -> None:
        """``channels`` is the channel reconciliation pass (a failed watch is tried again);
        ``retention`` the retention sweep (ingest/retention.py)."""
        self._repair = repair
        self._channels = channels
        self._retention = retention
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-repair", daemon=True)

    def start(self) -> LagLoop:
        self._thread.start()
        return self

    def tick(self) -> None:
        """One round of every step; each is guarded, so one failing stops neither the rest nor the loop."""
        _guarded("lag repair", self._repair.run_once)
        if self._channels is not None:
            _guarded("channel reconciliation", self._channels)
        if self._retention is not None:
            _guarded("retention sweep", self._retention)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            self.tick()

    def stop(self, deadline_s: float) -> bool:
        self._stopping.set()
        self._thread.join(timeout=deadline_s)
        return not self._thread.is_alive()


def _guarded(step: str, work: Callable[[], object]) -> None:
    try:
        work()
    except (ConfsyncError, TimeoutError):  # an outage of the store or the broker: expected now and then
        log.warning("background step failed; the next tick tries again", step=step, exc_info=True)
    except Exception:  # a bug must not end the loop: the other steps and later ticks still run
        log.exception("background step failed unexpectedly; the next tick tries again", step=step)
