"""The messages that travel between confsync's stages, and their wire format.

Every message is a frozen dataclass that writes itself as UTF-8 JSON with a schema version
``v`` (``to_bytes``) and reads itself back with full validation (``from_bytes``). Reading
never trusts its input: a message that is not valid UTF-8 JSON, has an unknown ``v``, lacks a
field, carries an unknown field or a value of the wrong shape raises ``InvalidMessage`` (a
``PermanentError``) naming the field, so the worker dead-letters it with that reason and
keeps running. Nothing else escapes ``from_bytes``.

- ``CalendarChanged`` (topic calendar-changes, ordering key = calendar id): "something in
  this calendar may have changed"; carries no event data, like Calendar's own push
  notifications (https://developers.google.com/calendar/api/guides/push).
- ``ConferenceCommand`` (topic conference-commands, ordering key = conference id): what the
  conferencing service must do for one event. ``event_updated`` (the event's RFC 3339
  ``updated``) is the version; ``command_id`` is a hash of (conference id, kind, version,
  fingerprint) and is sent as the Idempotency-Key, so a command replayed after a crash is the
  same command, and an event moved A -> B -> A gets a new key for its second A.
- ``ChannelWork`` and ``ChannelScan`` (topic channel-work, ingest's own): a channel pass fanned
  out, one calendar's channel to reconcile, or the next page of due calendars to fan out
  (ingest/channels.py). ``read_channel_message`` reads either, by its ``type``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Self, TypeVar

from confsync.errors import InvalidMessage
from confsync.rfc3339 import format_rfc3339, parse_rfc3339

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_WINDOW_DAYS",
    "SCHEMA_VERSION",
    "CalendarChanged",
    "ChannelScan",
    "ChannelSweep",
    "ChannelWork",
    "CommandKind",
    "CommandReason",
    "ConferenceCommand",
    "ConferencePayload",
    "EventTime",
    "Occurrence",
    "OccurrenceStatus",
    "ResourceState",
    "Source",
    "make_command_id",
    "read_channel_message",
]

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 1024 * 1024  # far above any real event; Pub/Sub's own cap is 10 MB
_MAX_ID = 1024  # Calendar ids are emails; event ids are at most 1024 characters
_MAX_TEXT = 64 * 1024
_MAX_ITEMS = 10_000
_E = TypeVar("_E", bound=StrEnum)
_EVENT_TIME_KEYS = frozenset({"dateTime", "date", "timeZone"})
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")  # C0 controls but tab, newline and carriage return


class Source(StrEnum):
    """Why a calendar is being looked at."""

    PUSH = "push"
    BACKFILL = "backfill"
    RENEWAL = "renewal"
    MANUAL = "manual"
    REPAIR = "repair"  # re-announced: a notification no sync covered in time (ingest/lag.py)
    POLL = "poll"  # no notification for CONFSYNC_POLL_AFTER_S: its channel may have gone silent (ingest/lag.py)


class ResourceState(StrEnum):
    """Calendar's X-Goog-Resource-State header."""

    SYNC = "sync"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"


class CommandKind(StrEnum):
    UPDATE = "update"
    DELETE = "delete"


class CommandReason(StrEnum):
    CHANGED = "changed"
    CANCELLED = "cancelled"
    CONFERENCE_REMOVED = "conference_removed"
    CALENDAR_GONE = "calendar_gone"
    RECONCILED = "reconciled"


@dataclass(frozen=True, slots=True)
class EventTime:
    """An event's start or end, shaped like Calendar's: a ``dateTime`` or an all-day ``date``.

    Values are carried through exactly as Calendar wrote them (no zone conversion).
    """

    date_time: str | None = None
    date: str | None = None
    time_zone: str | None = None

    def __post_init__(self) -> None:
        if (self.date_time is None) == (self.date is None):
            raise InvalidMessage("exactly one of dateTime and date is required")
        if self.date_time is not None:
            _check_date_time(self.date_time, has_zone=self.time_zone is not None)
        if self.date is not None:
            _check_date(self.date)

    def to_json(self) -> dict[str, str]:
        pairs = (("dateTime", self.date_time), ("date", self.date), ("timeZone", self.time_zone))
        return {key: value for key, value in pairs if value is not None}

    @classmethod
    def from_json(cls, value: object, name: str) -> Self:
        if type(value) is dict and value.keys() <= _EVENT_TIME_KEYS and all(map(_plain, value.values())):
            # Calendar's usual shape, which the checks below would pass as it is: a listing parses two per event.
            try:
                return cls(value.get("dateTime"), value.get("date"), value.get("timeZone"))
            except InvalidMessage as err:
                raise InvalidMessage(str(err), field=err.field or name) from err
        return cls._field_by_field(value, name)

    @classmethod
    def _field_by_field(cls, value: object, name: str) -> Self:
        fields = _Fields(value, name)
        try:
            result = cls(
                date_time=fields.optional_text("dateTime"),
                date=fields.optional_text("date"),
                time_zone=fields.optional_text("timeZone"),
            )
        except InvalidMessage as err:
            raise InvalidMessage(str(err), field=err.field or name) from err
        fields.done()
        return result


class OccurrenceStatus(StrEnum):
    CANCELLED = "cancelled"
    MOVED = "moved"


_MAX_OCCURRENCES = 1000  # Calendar expands a series to at most so many instances per request


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One occurrence of a recurring series that is not where the series' rule puts it:
    cancelled, or moved to ``start``-``end`` (Calendar's instance exceptions). The
    conferencing service follows the real dates: its reminders, dial-in schedules and
    recordings."""

    original_start: EventTime
    status: OccurrenceStatus
    start: EventTime | None = None
    end: EventTime | None = None

    def __post_init__(self) -> None:
        if (self.status is OccurrenceStatus.MOVED) != (self.start is not None and self.end is not None):
            raise InvalidMessage("a moved occurrence, and only a moved one, has start and end")

    def key(self) -> str:
        """The original start as written, to order and merge a series' exceptions by."""
        return self.original_start.date_time or self.original_start.date or ""

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"original_start": self.original_start.to_json(), "status": self.status.value}
        if self.start is not None and self.end is not None:
            value |= {"start": self.start.to_json(), "end": self.end.to_json()}
        return value

    @classmethod
    def from_json(cls, value: object, name: str) -> Self:
        fields = _Fields(value, name)
        original = EventTime.from_json(fields.raw("original_start"), f"{name}.original_start")
        status = fields.choice("status", OccurrenceStatus)
        start, end = fields.raw("start", optional=True), fields.raw("end", optional=True)
        try:
            result = cls(
                original,
                status,
                None if start is None else EventTime.from_json(start, f"{name}.start"),
                None if end is None else EventTime.from_json(end, f"{name}.end"),
            )
        except InvalidMessage as err:
            raise InvalidMessage(str(err), field=err.field or name) from err
        fields.done()
        return result


@dataclass(frozen=True, slots=True)
class ConferencePayload:
    """What the conferencing service cares about in an event; its hash is the fingerprint.

    ``exceptions``: a series' occurrences that were cancelled or moved, ordered by original
    start (always on the wire, so the last one removed reaches the service; left out of the
    fingerprint when there are none, so a payload without any keeps the one it always had)."""

    start: EventTime
    end: EventTime
    summary: str | None = None
    attendees: tuple[str, ...] = ()
    organizer: str | None = None
    recurrence: tuple[str, ...] = ()
    html_link: str | None = None
    exceptions: tuple[Occurrence, ...] = ()

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "summary": self.summary,
            "start": self.start.to_json(),
            "end": self.end.to_json(),
            "attendees": list(self.attendees),
            "organizer": self.organizer,
            "recurrence": list(self.recurrence),
            "html_link": self.html_link,
            "exceptions": [occurrence.to_json() for occurrence in self.exceptions],
        }
        return value

    def fingerprint(self) -> str:
        """A stable hash of every payload field: equal payloads, equal fingerprints."""
        value = self.to_json()
        if not self.exceptions:
            del value["exceptions"]
        return _digest(value)

    @classmethod
    def from_json(cls, value: object, name: str) -> Self:
        fields = _Fields(value, name)
        result = cls(
            summary=fields.optional_text("summary", empty_ok=True, limit=_MAX_TEXT),
            start=EventTime.from_json(fields.raw("start"), f"{name}.start"),
            end=EventTime.from_json(fields.raw("end"), f"{name}.end"),
            attendees=fields.texts("attendees"),
            organizer=fields.optional_text("organizer"),
            recurrence=fields.texts("recurrence"),
            html_link=fields.optional_text("html_link", limit=_MAX_TEXT),
            exceptions=_occurrences(fields.raw("exceptions", optional=True), f"{name}.exceptions"),
        )
        fields.done()
        return result


def _occurrences(value: object, name: str) -> tuple[Occurrence, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > _MAX_OCCURRENCES:
        raise InvalidMessage(f"expected a list of at most {_MAX_OCCURRENCES} occurrences", field=name)
    return tuple(Occurrence.from_json(item, f"{name}[{i}]") for i, item in enumerate(value))


# A backfill job's id names store documents (with a calendar id): short and plain.
_JOB_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_WINDOW_DAYS = 3650


@dataclass(frozen=True, slots=True)
class CalendarChanged:
    """Something in ``calendar_id`` may have changed; a processor should sync it."""

    calendar_id: str
    source: Source
    received_at: datetime
    channel_id: str | None = None
    resource_state: ResourceState | None = None
    message_number: int | None = None
    # A backfill job's request (processors/backfill.py): the job that records the outcome, and
    # how far back its listing reaches (None: everything, then the links it did not see go).
    job_id: str | None = None
    window_days: int | None = None
    # How many of the calendar's push notifications this message stands for: ingest folds a
    # storm's (ingest/fold.py), and the processor's listing pace counts them all.
    notifications: int = 1
    v: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.source is Source.PUSH and (self.channel_id is None or self.resource_state is None):
            raise InvalidMessage("a push notification needs channel_id and resource_state")
        if self.notifications < 1:
            raise InvalidMessage("stands for at least one notification", field="notifications")
        if self.notifications > 1 and self.source is not Source.PUSH:
            raise InvalidMessage("only push notifications are folded", field="notifications")
        if self.received_at.tzinfo is None:
            raise InvalidMessage("must carry a UTC offset", field="received_at")
        if self.job_id is None and self.window_days is not None:
            raise InvalidMessage("a listing window belongs to a backfill job's request", field="window_days")
        if self.job_id is not None and self.source is not Source.BACKFILL:
            raise InvalidMessage("only a backfill request names a job", field="job_id")
        if self.job_id is not None and not _JOB_ID.fullmatch(self.job_id):
            raise InvalidMessage("expected 1-64 letters, digits, '.', '_' or '-'", field="job_id")
        if self.window_days is not None and not 1 <= self.window_days <= MAX_WINDOW_DAYS:
            raise InvalidMessage(f"expected 1 to {MAX_WINDOW_DAYS} days", field="window_days")

    def to_bytes(self) -> bytes:
        return _encode(
            {
                "v": self.v,
                "calendar_id": self.calendar_id,
                "source": self.source.value,
                "channel_id": self.channel_id,
                "resource_state": self.resource_state and self.resource_state.value,
                "message_number": self.message_number,
                "received_at": format_rfc3339(self.received_at),
                # Only a backfill request carries these: every other message reads as before.
                **({"job_id": self.job_id, "window_days": self.window_days} if self.job_id else {}),
                # Only a folded one carries its count: a single notification reads as before.
                **({"notifications": self.notifications} if self.notifications > 1 else {}),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        fields = _Fields(_decode(data), "CalendarChanged")
        fields.version()
        folded = fields.optional_integer("notifications")
        result = cls(
            calendar_id=fields.text("calendar_id"),
            source=fields.choice("source", Source),
            channel_id=fields.optional_text("channel_id"),
            resource_state=fields.optional_choice("resource_state", ResourceState),
            message_number=fields.optional_integer("message_number"),
            received_at=fields.timestamp("received_at"),
            job_id=fields.optional_text("job_id"),
            window_days=fields.optional_integer("window_days"),
            notifications=1 if folded is None else folded,
        )
        fields.done()
        return result


class ChannelSweep(StrEnum):
    """Which calendars a channel pass reconciles."""

    RENEW = "renew"  # those with a live channel expiring before the pass's horizon (failed watches included)
    WATCH = "watch"  # every active calendar: one with live links and no live channel gets one


@dataclass(frozen=True, slots=True)
class ChannelWork:
    """Reconcile one calendar's watch channel against ``due_before`` (ordering key = calendar id)."""

    calendar_id: str
    sweep: ChannelSweep
    due_before: datetime
    v: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.due_before.tzinfo is None:
            raise InvalidMessage("must carry a UTC offset", field="due_before")

    def to_bytes(self) -> bytes:
        return _encode(
            {
                "v": self.v,
                "type": "work",
                "calendar_id": self.calendar_id,
                "sweep": self.sweep.value,
                "due_before": format_rfc3339(self.due_before),
            }
        )


@dataclass(frozen=True, slots=True)
class ChannelScan:
    """Fan out the next page of a pass: the due calendars after the cursor (none: from the start).

    The cursor is where the last page ended: for ``renew``, the last channel's expiration and
    id (channels soonest first); for ``watch``, the last calendar id."""

    sweep: ChannelSweep
    due_before: datetime
    started_at: datetime  # a watch that fails after this is left to the next pass, not retried in a loop
    after_id: str | None = None
    after_expiration: datetime | None = None
    v: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        for name in ("due_before", "started_at"):
            if getattr(self, name).tzinfo is None:
                raise InvalidMessage("must carry a UTC offset", field=name)
        renew_cursor = self.sweep is ChannelSweep.RENEW and self.after_id is not None
        if renew_cursor != (self.after_expiration is not None):
            raise InvalidMessage("a renew cursor, and only one, is an expiration with a channel id", field="after")
        if self.after_expiration is not None and self.after_expiration.tzinfo is None:
            raise InvalidMessage("must carry a UTC offset", field="after_expiration")

    def to_bytes(self) -> bytes:
        return _encode(
            {
                "v": self.v,
                "type": "scan",
                "sweep": self.sweep.value,
                "due_before": format_rfc3339(self.due_before),
                "started_at": format_rfc3339(self.started_at),
                "after_id": self.after_id,
                "after_expiration": None if self.after_expiration is None else format_rfc3339(self.after_expiration),
            }
        )


def read_channel_message(data: bytes) -> ChannelWork | ChannelScan:
    """A channel-work message, whichever of the two it is; InvalidMessage naming the field if bad."""
    fields = _Fields(_decode(data), "ChannelWork")
    fields.version()
    kind = fields.text("type")
    result: ChannelWork | ChannelScan
    if kind == "work":
        result = ChannelWork(
            calendar_id=fields.text("calendar_id"),
            sweep=fields.choice("sweep", ChannelSweep),
            due_before=fields.timestamp("due_before"),
        )
    elif kind == "scan":
        after = fields.raw("after_expiration", optional=True)
        result = ChannelScan(
            sweep=fields.choice("sweep", ChannelSweep),
            due_before=fields.timestamp("due_before"),
            started_at=fields.timestamp("started_at"),
            after_id=fields.optional_text("after_id"),
            after_expiration=None if after is None else _timestamp(after, "ChannelWork.after_expiration"),
        )
    else:
        raise InvalidMessage(f"expected work or scan, got {_show(kind)}", field="ChannelWork.type")
    fields.done()
    return result


def make_command_id(conference_id: str, kind: CommandKind, event_updated: datetime, fingerprint: str) -> str:
    """The deterministic id of a command: the same decision about the same version, the same id.

    The version is in the hash: without it a reverted change reused its first key, and the
    provider replayed its first answer instead of applying it."""
    return _digest([conference_id, kind.value, format_rfc3339(event_updated), fingerprint])


def _legacy_command_id(conference_id: str, kind: CommandKind, fingerprint: str) -> str:
    """The id that commands published before the version joined the hash carry.

    Accepted on read so that commands already in outboxes and topics at a deploy still apply
    (under the key they were first sent with); new commands never get it. Remove it once no
    outbox entry or topic message from before the deploy remains."""
    return _digest([conference_id, kind.value, fingerprint])


@dataclass(frozen=True, slots=True)
class ConferenceCommand:
    """What the conferencing service must do for one event.

    Build new commands with ``ConferenceCommand.create``, which derives ``command_id`` (and,
    for updates, ``fingerprint`` from the payload). For a delete, ``fingerprint`` is the last
    fingerprint the link recorded, so a delete decided twice for one version has one id.
    """

    command_id: str
    kind: CommandKind
    conference_id: str
    calendar_id: str
    event_id: str
    event_updated: datetime
    fingerprint: str
    reason: CommandReason
    payload: ConferencePayload | None = None
    v: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.kind is CommandKind.UPDATE and self.payload is None:
            raise InvalidMessage("an update needs a payload", field="payload")
        if self.payload is not None and self.payload.fingerprint() != self.fingerprint:
            raise InvalidMessage("does not match the payload", field="fingerprint")
        if self.event_updated.tzinfo is None:
            raise InvalidMessage("must carry a UTC offset", field="event_updated")
        if self.command_id not in (
            make_command_id(self.conference_id, self.kind, self.event_updated, self.fingerprint),
            _legacy_command_id(self.conference_id, self.kind, self.fingerprint),
        ):
            raise InvalidMessage(
                "is not the hash of conference_id, kind, event_updated, fingerprint", field="command_id"
            )

    @classmethod
    def create(  # noqa: PLR0913 - one argument per field of the contract
        cls,
        *,
        kind: CommandKind,
        conference_id: str,
        calendar_id: str,
        event_id: str,
        event_updated: datetime,
        reason: CommandReason,
        payload: ConferencePayload | None = None,
        fingerprint: str | None = None,
    ) -> Self:
        if payload is not None:
            fingerprint = payload.fingerprint()
        if not fingerprint:
            raise InvalidMessage("a command without a payload needs a fingerprint", field="fingerprint")
        return cls(
            command_id=make_command_id(conference_id, kind, event_updated, fingerprint),
            kind=kind,
            conference_id=conference_id,
            calendar_id=calendar_id,
            event_id=event_id,
            event_updated=event_updated,
            fingerprint=fingerprint,
            reason=reason,
            payload=payload,
        )

    def to_bytes(self) -> bytes:
        return _encode(
            {
                "v": self.v,
                "command_id": self.command_id,
                "kind": self.kind.value,
                "conference_id": self.conference_id,
                "calendar_id": self.calendar_id,
                "event_id": self.event_id,
                "event_updated": format_rfc3339(self.event_updated),
                "fingerprint": self.fingerprint,
                "reason": self.reason.value,
                "payload": self.payload and self.payload.to_json(),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        fields = _Fields(_decode(data), "ConferenceCommand")
        fields.version()
        raw_payload = fields.raw("payload", optional=True)
        result = cls(
            command_id=fields.text("command_id"),
            kind=fields.choice("kind", CommandKind),
            conference_id=fields.text("conference_id"),
            calendar_id=fields.text("calendar_id"),
            event_id=fields.text("event_id"),
            event_updated=fields.timestamp("event_updated"),
            fingerprint=fields.text("fingerprint"),
            reason=fields.choice("reason", CommandReason),
            payload=None if raw_payload is None else ConferencePayload.from_json(raw_payload, "payload"),
        )
        fields.done()
        return result


def _digest(value: object) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def _encode(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _decode(data: object) -> object:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidMessage(f"expected bytes, got {type(data).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message is {len(data)} bytes, more than {MAX_MESSAGE_BYTES}")
    try:
        return json.loads(bytes(data).decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError too
        raise InvalidMessage(f"not UTF-8 JSON: {err}") from err


def _check_date_time(value: str, *, has_zone: bool) -> None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as err:
        raise InvalidMessage(f"dateTime is not RFC 3339: {value!r}") from err
    if "T" not in value.upper() or (parsed.tzinfo is None and not has_zone):
        raise InvalidMessage(f"dateTime needs an offset or a timeZone: {value!r}")


def _check_date(value: str) -> None:
    try:
        date.fromisoformat(value)
    except ValueError as err:
        raise InvalidMessage(f"date is not YYYY-MM-DD: {value!r}") from err
    if len(value) != len("YYYY-MM-DD"):
        raise InvalidMessage(f"date is not YYYY-MM-DD: {value!r}")


@dataclass
class _Fields:
    """Takes validated fields out of one decoded JSON object, naming each bad one."""

    source: object
    name: str
    _values: dict[str, object] = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.source, dict):
            raise InvalidMessage(f"expected a JSON object, got {type(self.source).__name__}", field=self.name)
        self._values = dict(self.source)

    def _path(self, key: str) -> str:
        return f"{self.name}.{key}"

    def raw(self, key: str, *, optional: bool = False) -> object:
        value = self._values.pop(key, None)
        if value is None and not optional:
            raise InvalidMessage("is required", field=self._path(key))
        return value

    def version(self) -> None:
        value = self.raw("v")
        if type(value) is not int or value != SCHEMA_VERSION:
            raise InvalidMessage(f"unknown schema version {_show(value)}; this build reads {SCHEMA_VERSION}", field="v")

    def text(self, key: str, *, empty_ok: bool = False, limit: int = _MAX_ID) -> str:
        return _text(self.raw(key), self._path(key), empty_ok=empty_ok, limit=limit)

    def optional_text(self, key: str, *, empty_ok: bool = False, limit: int = _MAX_ID) -> str | None:
        value = self.raw(key, optional=True)
        return None if value is None else _text(value, self._path(key), empty_ok=empty_ok, limit=limit)

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.raw(key, optional=True)
        if value is None:
            return ()
        if not isinstance(value, list) or len(value) > _MAX_ITEMS:
            raise InvalidMessage(f"expected a list of at most {_MAX_ITEMS} strings", field=self._path(key))
        return tuple(_text(item, f"{self._path(key)}[{i}]", limit=_MAX_TEXT) for i, item in enumerate(value))

    def optional_integer(self, key: str) -> int | None:
        value = self.raw(key, optional=True)
        if value is not None and (type(value) is not int or not 0 <= value < 2**63):
            raise InvalidMessage(f"expected a non-negative 64-bit integer, got {_show(value)}", field=self._path(key))
        return value

    def choice(self, key: str, enum: type[_E]) -> _E:
        value = self.raw(key)
        members = {member.value: member for member in enum}
        if not isinstance(value, str) or value not in members:
            allowed = ", ".join(members)
            raise InvalidMessage(f"expected one of {allowed}, got {_show(value)}", field=self._path(key))
        return members[value]

    def optional_choice(self, key: str, enum: type[_E]) -> _E | None:
        if self._values.get(key) is None:
            self._values.pop(key, None)
            return None
        return self.choice(key, enum)

    def timestamp(self, key: str) -> datetime:
        return _timestamp(self.raw(key), self._path(key))

    def done(self) -> None:
        if self._values:
            unknown = ", ".join(sorted(map(str, self._values)))
            raise InvalidMessage(f"unknown field(s) {unknown}", field=self.name)


def _text(value: object, path: str, *, empty_ok: bool = False, limit: int = _MAX_ID) -> str:
    if not isinstance(value, str):
        raise InvalidMessage(f"expected a string, got {type(value).__name__}", field=path)
    if not value and not empty_ok:
        raise InvalidMessage("must not be empty", field=path)
    if len(value) > limit:
        raise InvalidMessage(f"longer than {limit} characters", field=path)
    if value.isascii() and value.isprintable():  # neither check below can fail
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidMessage("is not valid Unicode text", field=path) from err
    if _CONTROL.search(value):
        raise InvalidMessage("contains control characters", field=path)
    return value


def _plain(value: object) -> bool:
    """A value ``_text`` takes as it is with its defaults (a False says nothing either way)."""
    return type(value) is str and 0 < len(value) <= _MAX_ID and value.isascii() and value.isprintable()


def _timestamp(raw: object, path: str) -> datetime:
    value = _text(raw, path)
    try:
        return parse_rfc3339(value)
    except ValueError as err:
        raise InvalidMessage(f"expected an RFC 3339 timestamp, got {_show(value)}", field=path) from err


def _show(value: object) -> str:
    """A short repr for error messages: a hostile message must not flood the logs."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
