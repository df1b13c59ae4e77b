"""What happens when a user connects again: their held work goes out, their calendars resync.

- Commands held while their vendor grant was revoked (publishers/apply.py) are published
  again, oldest first, each with its conference as ordering key, and only then released from
  the store: a crash in between publishes some twice, which the publisher drops as duplicates.
- Calendars of theirs marked disconnected (a revoked Google grant) become active with their
  sync token cleared, and a CalendarChanged is published for each: the next sync lists the
  calendar in full and sweeps (mark-and-sweep), so whatever changed while confsync could not
  read it is caught up, and their watch is ensured again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from accounts.grants import normalise_email
from confsync.contracts import CalendarChanged, Source
from confsync.ports import Publisher, Store
from confsync.store.records import CalendarStatus

__all__ = ["Resume"]

log = structlog.get_logger(__name__)

_BATCH = 500


@dataclass(frozen=True, slots=True)
class Resume:
    """``Resume(...)(user)`` after ``user`` connected (the connect flow's ``on_connected``)."""

    store: Store
    publisher: Publisher
    commands_topic: str
    changes_topic: str
    ensure_channel: Callable[[str], object]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __call__(self, user: str) -> None:
        email = normalise_email(user)
        released = self.release_held(email)
        resynced = self.resync_calendars(email)
        log.info("user resumed", user=email, commands_released=released, calendars_resynced=resynced)

    def release_held(self, email: str) -> int:
        released = 0
        while held := self.store.held_commands(email, limit=_BATCH):
            self.publisher.publish_many(self.commands_topic, [(h.data, h.conference_id, {}) for h in held])
            self.store.release_held(email, [h.command_id for h in held])
            released += len(held)
        return released

    def resync_calendars(self, email: str) -> int:
        resynced = 0
        for state in self.store.calendars_of(email):
            if state.status is not CalendarStatus.DISCONNECTED:
                continue
            now = self.clock()
            self.store.save_sync_token(state.calendar_id, None, expected_version=state.token_version, at=now)
            self.store.set_calendar_status(state.calendar_id, CalendarStatus.ACTIVE)
            change = CalendarChanged(state.calendar_id, Source.MANUAL, now)
            self.publisher.publish(self.changes_topic, change.to_bytes(), ordering_key=state.calendar_id)
            try:
                self.ensure_channel(state.calendar_id)
            except Exception:  # the watch is retried by renewal; the resync is under way regardless
                log.warning("could not watch a reconnected calendar yet", calendar_id=state.calendar_id, exc_info=True)
            resynced += 1
        return resynced
