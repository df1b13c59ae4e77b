"""The Calendar sandbox's records and where they are kept: calendars with their change log,
events, watch channels and the token nonce, written through to a Persistence (``--db``).

Every resource module (events, listing, channels) works on one Store, under its lock; the
model (sandbox/calendar/model.py) takes the lock and commits a write once it succeeded.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sandbox.calendar.errors import bad_request, not_found
from sandbox.clock import Clock

__all__ = ["CalendarRecord", "ChannelRecord", "EventRecord", "Persistence", "Store", "format_ms"]


class Persistence(Protocol):
    """Where a model writes through to (nothing, or SQLite with ``--db``)."""

    def save_meta(self, nonce: str) -> None: ...
    def save_calendar(self, row: dict[str, Any]) -> None: ...
    def save_event(self, calendar_id: str, event_id: str, seq: int, created_seq: int, resource: str) -> None: ...
    def save_channel(self, row: dict[str, Any]) -> None: ...
    def save_user(self, email: str, name: str) -> None: ...
    def save_acl(self, calendar_id: str, email: str, role: str | None) -> None: ...  # None: removed
    def commit(self) -> None: ...
    def clear(self) -> None: ...


@dataclass
class EventRecord:
    resource: dict[str, Any]
    seq: int
    created_seq: int
    _wire: bytes | None = None

    @property
    def cancelled(self) -> bool:
        return bool(self.resource.get("status") == "cancelled")

    def wire(self) -> bytes:
        """The event as a listing shows it (tombstones reduced to what Google guarantees)."""
        if self._wire is None:
            shown = self.resource
            if self.cancelled:
                keep = ("kind", "etag", "id", "status", "updated", "recurringEventId", "originalStartTime")
                shown = {key: self.resource[key] for key in keep if key in self.resource}
            self._wire = json.dumps(shown, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return self._wire


@dataclass
class CalendarRecord:
    id: str
    owner: str
    seq: int = 0
    epoch: int = 0
    last_updated_ms: int = 0
    events: dict[str, EventRecord] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # creation order, append-only
    change_seqs: list[int] = field(default_factory=list)  # the change log, append-only
    change_ids: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "seq": self.seq,
            "epoch": self.epoch,
            "last_updated_ms": self.last_updated_ms,
        }


@dataclass
class ChannelRecord:
    id: str
    calendar_id: str
    resource_id: str
    resource_uri: str
    address: str
    token: str | None
    expiration_ms: int
    state: str = "live"
    next_number: int = 1
    principal: str | None = None  # who opened it (``Principal.describe()``); None without auth, or saved before
    dropped: bool = False  # live on paper, delivering nothing (POST /_sandbox/channels/{id}/drop); not saved
    deliveries: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "calendar_id": self.calendar_id,
            "resource_id": self.resource_id,
            "resource_uri": self.resource_uri,
            "address": self.address,
            "token": self.token,
            "expiration_ms": self.expiration_ms,
            "state": self.state,
            "next_number": self.next_number,
            "principal": self.principal,
        }


class Store:
    """All records of one sandbox, one lock over them, and their write-through."""

    def __init__(self, clock: Clock, persistence: Persistence | None) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.calendars: dict[str, CalendarRecord] = {}
        self.channels: dict[str, ChannelRecord] = {}
        self.nonce = secrets.token_hex(4)
        self._persistence = persistence

    def now_ms(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the lock; commit what was saved if the block succeeds (nothing on error)."""
        with self.lock:
            yield
            self.flush()

    # -- calendars ---------------------------------------------------------------------------

    def calendar(self, calendar_id: str) -> CalendarRecord:
        calendar = self.calendars.get(calendar_id)
        if calendar is None:
            raise not_found()
        return calendar

    def calendar_or_new(self, calendar_id: str) -> CalendarRecord:
        """The calendar, created on first use (as an event insert does)."""
        return self.calendars.get(calendar_id) or self.new_calendar(calendar_id, None)

    def new_calendar(self, calendar_id: str, owner: str | None) -> CalendarRecord:
        if not calendar_id or len(calendar_id) > 1024:
            raise bad_request("Invalid calendar id.", location="calendarId")
        calendar = CalendarRecord(calendar_id, owner or calendar_id)
        self.calendars[calendar_id] = calendar
        self.save_calendar(calendar)
        return calendar

    # -- write-through -----------------------------------------------------------------------

    def save_calendar(self, calendar: CalendarRecord) -> None:
        if self._persistence is not None:
            self._persistence.save_calendar(calendar.row())

    def save_event(self, calendar: CalendarRecord, event_id: str) -> None:
        if self._persistence is not None:
            event = calendar.events[event_id]
            resource = json.dumps(event.resource)
            self._persistence.save_event(calendar.id, event_id, event.seq, event.created_seq, resource)

    def save_channel(self, channel: ChannelRecord) -> None:
        if self._persistence is not None:
            self._persistence.save_channel(channel.row())

    def save_user(self, email: str, name: str) -> None:
        if self._persistence is not None:
            self._persistence.save_user(email, name)

    def save_acl(self, calendar_id: str, email: str, role: str | None) -> None:
        if self._persistence is not None:
            self._persistence.save_acl(calendar_id, email, role)

    def flush(self) -> None:
        if self._persistence is not None:
            self._persistence.commit()

    def reset(self) -> None:
        with self.lock:
            self.calendars.clear()
            self.channels.clear()
            self.nonce = secrets.token_hex(4)
            if self._persistence is not None:
                self._persistence.clear()
                self._persistence.save_meta(self.nonce)
                self._persistence.commit()

    def load(
        self,
        meta: str | None,
        calendars: list[dict[str, Any]],
        events: list[tuple[Any, ...]],
        channels: list[dict[str, Any]],
    ) -> None:
        """Rebuild the state a Persistence saved (``--db``)."""
        with self.lock:
            if meta is None:
                if self._persistence is not None:
                    self._persistence.save_meta(self.nonce)
                    self._persistence.commit()
            else:
                self.nonce = meta
            for row in calendars:
                self.calendars[row["id"]] = CalendarRecord(
                    row["id"], row["owner"], row["seq"], row["epoch"], row["last_updated_ms"]
                )
            for calendar_id, event_id, seq, created_seq, resource in sorted(events, key=lambda r: (r[0], r[3])):
                self.calendars[calendar_id].events[event_id] = EventRecord(json.loads(resource), seq, created_seq)
                self.calendars[calendar_id].order.append(event_id)
            for calendar in self.calendars.values():
                log = sorted((event.seq, event_id) for event_id, event in calendar.events.items())
                calendar.change_seqs = [seq for seq, _ in log]
                calendar.change_ids = [event_id for _, event_id in log]
            for row in channels:
                self.channels[row["id"]] = ChannelRecord(**row)


def format_ms(ms: int) -> str:
    """An ``updated`` stamp: RFC 3339 in UTC with milliseconds."""
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"
