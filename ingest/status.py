"""What an operator asks without reading logs: is calendar X in step, and if not, why; and how
the whole installation is doing.

``confsync status`` (stack/cli/status.py) and the scheduler account's ``GET /v1/status``
(ingest/app.py) both read it here, so they say the same. It only reads: the store's records
and counts (aggregation queries on Firestore, not listings) and the dead letters, which it
hands straight back as ``confsync deadletter list`` does. It publishes and writes nothing.

Lag is ingest/lag.py's: a calendar notified after its last listing began has changes no
listing has read yet, for as long as it has been since that notification.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import structlog

from confsync.errors import ConfsyncError, NotFound
from confsync.ports import Store
from confsync.rfc3339 import format_rfc3339, utc_now
from confsync.store import CalendarState, CalendarStatus, LinkState

__all__ = [
    "DEAD_LETTERS_COUNTED_UP_TO",
    "CalendarCounts",
    "CalendarReport",
    "ChannelView",
    "LinkCounts",
    "Overview",
    "StatusReader",
    "Verdict",
]

log = structlog.get_logger(__name__)

DEAD_LETTERS_COUNTED_UP_TO = 1000  # Pub/Sub tells no backlog size: they are pulled (and handed back) to count


class Verdict(StrEnum):
    """One calendar in a word, the first that applies, in this order."""

    DISCONNECTED = "disconnected"  # its owner's credentials were refused: waits for a reconnect (cause)
    GONE = "gone"  # it can no longer be read
    FAILED = "failed"  # a permanent error (cause): waits for an operator's backfill
    LAGGING = "lagging"  # notified, and no listing has begun since
    UNWATCHED = "unwatched"  # it has live links but no live, unexpired channel: changes would go unnoticed
    PENDING = "pending"  # listed, and commands for it are not settled yet
    IN_STEP = "in_step"


@dataclass(frozen=True, slots=True)
class ChannelView:
    channel_id: str
    expiration: datetime


@dataclass(frozen=True, slots=True)
class LinkCounts:
    live: int
    leaving: int  # the owning copy left: its delete waits out the grace
    deleted: int


@dataclass(frozen=True, slots=True)
class CalendarReport:
    """One calendar as ``confsync status --calendar ID`` shows it."""

    calendar_id: str
    owner: str | None  # the user whose credentials read it
    state: CalendarStatus
    cause: str | None  # why it is not active, as recorded
    verdict: Verdict
    channels: tuple[ChannelView, ...]  # live ones: one, or two while one is renewed
    last_notified_at: datetime | None
    last_synced_at: datetime | None  # when the last completed listing began
    lag_s: float | None  # None: no notification waits for a listing
    links: LinkCounts
    commands_pending: int  # in the outbox: published or deferred, not settled by a publisher
    owner_commands_held: int  # all the owner's commands held for their vendor reconnect
    at: datetime

    def to_json(self) -> dict[str, object]:
        return _plain(self)


@dataclass(frozen=True, slots=True)
class CalendarCounts:
    active: int
    disconnected: int
    gone: int
    failed: int


@dataclass(frozen=True, slots=True)
class Overview:
    """Everything at once, as ``confsync status`` shows it."""

    calendars: CalendarCounts
    outbox_depth: int  # commands not settled by a publisher
    commands_held: int  # held for their owners' reconnects
    dead_letters: int | None  # counted up to DEAD_LETTERS_COUNTED_UP_TO; None: not readable from here
    oldest_lag_s: float | None
    oldest_lagging_calendar: str | None
    channels_expiring: int  # live channels expiring within expiring_within_s
    expiring_within_s: int
    at: datetime

    def to_json(self) -> dict[str, object]:
        return _plain(self)


@dataclass(frozen=True, slots=True)
class StatusReader:
    """Reads the status from the store and, where they can be seen, the dead letters.

    ``dead_letters(limit)`` counts the dead-lettered commands up to ``limit``; None when this
    process cannot see them (the in-process transport's live in the serving process only)."""

    store: Store
    dead_letters: Callable[[int], int] | None = None
    expiring_within: timedelta = timedelta(days=1)
    clock: Callable[[], datetime] = utc_now

    def calendar(self, calendar_id: str) -> CalendarReport:
        """One calendar's report; NotFound if confsync has never known it."""
        state = self.store.get_calendar(calendar_id)
        if state is None:
            raise NotFound(f"unknown calendar {calendar_id!r}: confsync has no record of it")
        now = self.clock()
        channels = tuple(ChannelView(c.channel_id, c.expiration) for c in self.store.live_channels(calendar_id))
        links = LinkCounts(**{kind.value: self.store.count_links(calendar_id, kind) for kind in LinkState})
        pending = self.store.count_outbox(calendar_id)
        lag = _lag_s(state, now)
        return CalendarReport(
            calendar_id=calendar_id,
            owner=state.subject,
            state=state.status,
            cause=state.last_error,
            verdict=_verdict(state, lag, links, _watched(channels, now), pending),
            channels=channels,
            last_notified_at=state.last_notified_at,
            last_synced_at=state.last_synced_at,
            lag_s=lag,
            links=links,
            commands_pending=pending,
            owner_commands_held=0 if state.subject is None else self.store.count_held(state.subject),
            at=now,
        )

    def overview(self) -> Overview:
        now = self.clock()
        oldest = next(iter(self.store.lagging_calendars(now, limit=1)), None)
        return Overview(
            calendars=CalendarCounts(**{status.value: self.store.count_calendars(status) for status in CalendarStatus}),
            outbox_depth=self.store.count_outbox(),
            commands_held=self.store.count_held(),
            dead_letters=self._dead_letters(),
            oldest_lag_s=None if oldest is None else _lag_s(oldest, now),
            oldest_lagging_calendar=None if oldest is None else oldest.calendar_id,
            channels_expiring=self.store.count_channels_expiring_before(now + self.expiring_within),
            expiring_within_s=int(self.expiring_within.total_seconds()),
            at=now,
        )

    def _dead_letters(self) -> int | None:
        if self.dead_letters is None:
            return None
        try:
            return self.dead_letters(DEAD_LETTERS_COUNTED_UP_TO)
        except ConfsyncError:  # the rest of the status is still worth having
            log.warning("dead letters could not be counted", exc_info=True)
            return None


def _lag_s(state: CalendarState, now: datetime) -> float | None:
    """How long the calendar's latest notification has waited for a listing; None if none waits."""
    notified, listed = state.last_notified_at, state.last_synced_at
    if notified is None or (listed is not None and listed > notified):
        return None
    return round(max((now - notified).total_seconds(), 0.0), 1)


def _watched(channels: tuple[ChannelView, ...], now: datetime) -> bool:
    return any(channel.expiration > now for channel in channels)


def _verdict(state: CalendarState, lag: float | None, links: LinkCounts, watched: bool, pending: int) -> Verdict:
    if state.status is not CalendarStatus.ACTIVE:
        return Verdict(state.status.value)
    if lag is not None:
        return Verdict.LAGGING
    if links.live and not watched:
        return Verdict.UNWATCHED
    return Verdict.PENDING if pending else Verdict.IN_STEP


def _plain(value: object) -> dict[str, object]:
    """A report as JSON values: times in RFC 3339, enums by value, nested reports as objects."""
    return {field.name: _value(getattr(value, field.name)) for field in fields(value)}  # type: ignore[arg-type]


def _value(value: object) -> object:
    if isinstance(value, datetime):
        return format_rfc3339(value)
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, tuple):
        return [_value(item) for item in value]
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(value)
    return value
