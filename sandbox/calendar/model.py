"""The Calendar sandbox's state and rules, with no HTTP in sight.

Calendars hold events; every write takes the calendar's next sequence number, stamps the
event's ``updated`` (RFC 3339, milliseconds, strictly increasing per calendar) and appends
to the calendar's change log. That log is what makes sync tokens work as Google describes
(https://developers.google.com/calendar/api/guides/sync): a token names a position in the
log; an incremental listing returns every event whose latest change lies between the token
and the listing's snapshot, deleted ones as ``cancelled`` tombstones, and the last page
carries the snapshot as ``nextSyncToken``. Page positions are keys into append-only lists
(creation order, change log), so a write between two pages can never make a listing skip
an event; whatever changed after the snapshot is returned again by the next sync.

Every mutation validates the complete new resource first and changes nothing on error.
All public methods are thread-safe (one lock per model).
"""

from __future__ import annotations

import base64
import bisect
import copy
import hashlib
import json
import re
import secrets
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

from sandbox.calendar.errors import GoogleError, bad_request, not_found
from sandbox.calendar.recurrence import Series, parse_event_time, split_instance_id
from sandbox.clock import Clock

__all__ = ["CalendarModel", "ListQuery", "Notification", "Persistence"]

DEFAULT_PAGE = 250
MAX_PAGE = 2500
MAX_TTL_S = 30 * 24 * 3600
DEFAULT_TTL_S = 7 * 24 * 3600
SYNC_EXPIRED = "Sync token is no longer valid, a full sync is required."
_EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")
_READ_ONLY = ("kind", "etag", "created", "updated", "htmlLink", "creator", "organizer", "recurringEventId")
_FORBIDDEN_WITH_SYNC = (
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
)
_LOOPBACK_HOSTS = ("127.", "localhost", "[::1]", "::1")


class Persistence(Protocol):
    """Where a model writes through to (nothing, or SQLite with ``--db``)."""

    def save_meta(self, nonce: str) -> None: ...
    def save_calendar(self, row: dict[str, Any]) -> None: ...
    def save_event(self, calendar_id: str, event_id: str, seq: int, created_seq: int, resource: str) -> None: ...
    def save_channel(self, row: dict[str, Any]) -> None: ...
    def commit(self) -> None: ...
    def clear(self) -> None: ...


@dataclass
class _Event:
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
class _Calendar:
    id: str
    owner: str
    seq: int = 0
    epoch: int = 0
    last_updated_ms: int = 0
    events: dict[str, _Event] = field(default_factory=dict)
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
class _Channel:
    id: str
    calendar_id: str
    resource_id: str
    resource_uri: str
    address: str
    token: str | None
    expiration_ms: int
    state: str = "live"
    next_number: int = 1
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
        }


@dataclass(frozen=True, slots=True)
class Notification:
    """One push message to deliver: everything the webhook POST needs."""

    channel_id: str
    address: str
    token: str | None
    resource_id: str
    resource_uri: str
    expiration_ms: int
    message_number: int
    state: str  # sync | exists


@dataclass(frozen=True, slots=True)
class ListQuery:
    """events.list / events.instances parameters, parsed from the query string."""

    params: Mapping[str, list[str]]

    def one(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[-1] if values else None

    def many(self, name: str) -> list[str]:
        return list(self.params.get(name, []))

    def flag(self, name: str) -> bool:
        value = self.one(name)
        if value is None:
            return False
        if value.lower() not in ("true", "false"):
            raise bad_request(f"Invalid boolean value: {value}", location=name)
        return value.lower() == "true"

    def time(self, name: str) -> datetime | None:
        value = self.one(name)
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as err:
            raise GoogleError(400, "badRequest", "Bad Request", location=name) from err
        if parsed.tzinfo is None:
            raise GoogleError(400, "badRequest", "Bad Request", location=name)
        return parsed.astimezone(UTC)

    def page_size(self) -> int:
        value = self.one("maxResults")
        if value is None:
            return DEFAULT_PAGE
        if not value.isdigit() or int(value) < 1:
            raise bad_request(
                f"Invalid value '{value}'. Values must be within the range: [1, 2500]", location="maxResults"
            )
        return min(int(value), MAX_PAGE)

    def fingerprint(self) -> str:
        kept = sorted((k, v) for k, v in self.params.items() if k not in ("pageToken", "maxResults", "alt"))
        return hashlib.sha256(json.dumps(kept).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ListPage:
    calendar_id: str
    items: list[bytes]
    updated: str
    next_page_token: str | None
    next_sync_token: str | None

    def to_bytes(self) -> bytes:
        head: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": f'"{int(hashlib.sha256(self.updated.encode()).hexdigest()[:12], 16)}"',
            "summary": self.calendar_id,
            "description": "",
            "updated": self.updated,
            "timeZone": "UTC",
            "accessRole": "owner",
            "defaultReminders": [],
        }
        if self.next_page_token:
            head["nextPageToken"] = self.next_page_token
        if self.next_sync_token:
            head["nextSyncToken"] = self.next_sync_token
        prefix = json.dumps(head, separators=(",", ":")).encode()[:-1]
        return prefix + b',"items":[' + b",".join(self.items) + b"]}"


class CalendarModel:
    """All calendars, events and watch channels of one sandbox."""

    def __init__(
        self,
        clock: Clock,
        *,
        default_owner: str = "owner@sandbox.test",
        persistence: Persistence | None = None,
        allow_remote_webhooks: bool = False,
    ) -> None:
        self.clock = clock
        self.default_owner = default_owner
        self.allow_remote_webhooks = allow_remote_webhooks
        self._persistence = persistence
        self._lock = threading.RLock()
        self._calendars: dict[str, _Calendar] = {}
        self._channels: dict[str, _Channel] = {}
        self._nonce = secrets.token_hex(4)

    # -- calendars ---------------------------------------------------------------------------

    def resolve(self, calendar_id: str, user: str | None) -> str:
        """``primary`` is the caller's own calendar (the default owner without auth)."""
        return (user or self.default_owner) if calendar_id == "primary" else calendar_id

    def create_calendar(self, calendar_id: str, owner: str | None = None) -> bool:
        """Create a calendar if it does not exist; True if it was created."""
        with self._lock:
            if calendar_id in self._calendars:
                return False
            self._new_calendar(calendar_id, owner)
            self._flush()
            return True

    def _new_calendar(self, calendar_id: str, owner: str | None) -> _Calendar:
        if not calendar_id or len(calendar_id) > 1024:
            raise bad_request("Invalid calendar id.", location="calendarId")
        calendar = _Calendar(calendar_id, owner or calendar_id)
        self._calendars[calendar_id] = calendar
        self._save_calendar(calendar)
        return calendar

    def _calendar(self, calendar_id: str) -> _Calendar:
        calendar = self._calendars.get(calendar_id)
        if calendar is None:
            raise not_found()
        return calendar

    def invalidate_sync_tokens(self, calendar_id: str) -> None:
        with self._lock:
            calendar = self._calendar(calendar_id)
            calendar.epoch += 1
            self._save_calendar(calendar)
            self._flush()

    def reset(self) -> None:
        with self._lock:
            self._calendars.clear()
            self._channels.clear()
            self._nonce = secrets.token_hex(4)
            if self._persistence is not None:
                self._persistence.clear()
                self._persistence.save_meta(self._nonce)
                self._persistence.commit()

    # -- events: writes ----------------------------------------------------------------------

    def insert(
        self, calendar_id: str, body: object, *, conference_data_version: int = 0
    ) -> tuple[dict[str, Any], list[Notification]]:
        with self._lock:
            calendar = self._calendars.get(calendar_id) or self._new_calendar(calendar_id, None)
            resource = self._prepare_insert(calendar, body, conference_data_version)
            notifications = self._commit(calendar, resource)
            self._flush()
            return copy.deepcopy(resource), notifications

    def insert_many(
        self, calendar_id: str, bodies: Sequence[object], *, conference_data_version: int = 0
    ) -> tuple[int, list[Notification]]:
        """Insert events all-or-nothing: every body is validated before any is stored."""
        with self._lock:
            calendar = self._calendars.get(calendar_id) or self._new_calendar(calendar_id, None)
            prepared: list[dict[str, Any]] = []
            seen: set[str] = set()
            for index, body in enumerate(bodies):
                try:
                    resource = self._prepare_insert(calendar, body, conference_data_version)
                except GoogleError as err:
                    raise GoogleError(err.code, err.reason, f"events[{index}]: {err.message}") from err
                if resource["id"] in seen:
                    raise GoogleError(409, "duplicate", f"events[{index}]: The requested identifier already exists.")
                seen.add(resource["id"])
                prepared.append(resource)
            notifications: list[Notification] = []
            for resource in prepared:
                notifications += self._commit(calendar, resource)
            self._flush()
            return len(prepared), notifications

    def _prepare_insert(self, calendar: _Calendar, body: object, cdv: int) -> dict[str, Any]:
        data = _object(body)
        event_id = data.get("id")
        if event_id is None:
            event_id = _new_event_id()
        elif not isinstance(event_id, str) or not _EVENT_ID.match(event_id):
            raise bad_request("Invalid resource id value.", location="id")
        if event_id in calendar.events:
            raise GoogleError(409, "duplicate", "The requested identifier already exists.")
        resource = {key: value for key, value in data.items() if key not in _READ_ONLY}
        resource.pop("originalStartTime", None)
        resource["id"] = event_id
        resource.setdefault("status", "confirmed")
        resource.setdefault("iCalUID", f"{event_id}@google.com")
        resource.setdefault("sequence", 0)
        resource["creator"] = {"email": calendar.owner}
        resource["organizer"] = {"email": calendar.id, "self": True}
        resource.setdefault("reminders", {"useDefault": True})
        resource.setdefault("eventType", "default")
        _apply_conference(resource, data, cdv, previous=None)
        _validate(resource)
        return resource

    def patch(
        self, calendar_id: str, event_id: str, body: object, *, conference_data_version: int = 0
    ) -> tuple[dict[str, Any], list[Notification]]:
        return self._modify(calendar_id, event_id, body, conference_data_version, replace=False)

    def update(
        self, calendar_id: str, event_id: str, body: object, *, conference_data_version: int = 0
    ) -> tuple[dict[str, Any], list[Notification]]:
        return self._modify(calendar_id, event_id, body, conference_data_version, replace=True)

    def _modify(
        self, calendar_id: str, event_id: str, body: object, cdv: int, *, replace: bool
    ) -> tuple[dict[str, Any], list[Notification]]:
        with self._lock:
            calendar = self._calendar(calendar_id)
            current, _ = self._current_or_instance(calendar, event_id)
            data = _object(body)
            changes = {key: value for key, value in data.items() if key not in (*_READ_ONLY, "id", "iCalUID")}
            changes.pop("originalStartTime", None)
            changes.pop("conferenceData", None)
            if replace:
                keep = ("id", "iCalUID", "creator", "organizer", "recurringEventId", "originalStartTime", "sequence")
                resource = {key: current[key] for key in keep if key in current}
                resource.update(changes)
                resource.setdefault("status", "confirmed")
            else:
                resource = _merge(current, changes)
            if "recurringEventId" in resource and resource.get("recurrence"):
                raise bad_request("Recurrence is not allowed on an instance of a recurring event.")
            if any(key in changes for key in ("start", "end", "recurrence", "status")):
                resource["sequence"] = int(current.get("sequence", 0)) + 1
            _apply_conference(resource, data, cdv, previous=current.get("conferenceData"))
            _validate(resource)
            notifications = self._commit(calendar, resource)
            if "recurrence" in current and resource.get("status") == "cancelled":
                notifications += self._cancel_exceptions(calendar, event_id)
            self._flush()
            return copy.deepcopy(resource), notifications

    def delete(self, calendar_id: str, event_id: str) -> list[Notification]:
        with self._lock:
            calendar = self._calendar(calendar_id)
            current, _ = self._current_or_instance(calendar, event_id)
            if current.get("status") == "cancelled":
                raise GoogleError(410, "deleted", "Resource has been deleted")
            resource = copy.deepcopy(current)
            resource["status"] = "cancelled"
            resource["sequence"] = int(current.get("sequence", 0)) + 1
            notifications = self._commit(calendar, resource)
            if "recurrence" in current:
                notifications += self._cancel_exceptions(calendar, event_id)
            self._flush()
            return notifications

    def _cancel_exceptions(self, calendar: _Calendar, series_id: str) -> list[Notification]:
        notifications: list[Notification] = []
        for event in list(calendar.events.values()):
            if event.resource.get("recurringEventId") == series_id and not event.cancelled:
                resource = copy.deepcopy(event.resource)
                resource["status"] = "cancelled"
                notifications += self._commit(calendar, resource)
        return notifications

    def _current_or_instance(self, calendar: _Calendar, event_id: str) -> tuple[dict[str, Any], bool]:
        """The stored event, or an unmodified instance of a series (then True: not yet stored)."""
        event = calendar.events.get(event_id)
        if event is not None:
            return copy.deepcopy(event.resource), False
        instance = self._instance(calendar, event_id)
        if instance is None:
            raise not_found()
        return instance, True

    def _instance(self, calendar: _Calendar, event_id: str) -> dict[str, Any] | None:
        parts = split_instance_id(event_id)
        if parts is None:
            return None
        master = calendar.events.get(parts[0])
        if master is None or master.cancelled or not master.resource.get("recurrence"):
            return None
        series = Series(master.resource)
        occurrence = series.occurrence_at(parts[1])
        return None if occurrence is None else series.instance(occurrence)

    def _commit(self, calendar: _Calendar, resource: dict[str, Any]) -> list[Notification]:
        now_ms = int(self.clock.now().timestamp() * 1000)
        calendar.last_updated_ms = max(now_ms, calendar.last_updated_ms + 1)
        calendar.seq += 1
        stamp = _format_ms(calendar.last_updated_ms)
        event_id = resource["id"]
        previous = calendar.events.get(event_id)
        resource["kind"] = "calendar#event"
        resource["etag"] = f'"{calendar.last_updated_ms}{calendar.seq % 1000:03d}"'
        resource["updated"] = stamp
        resource.setdefault("created", stamp)
        resource["htmlLink"] = _html_link(event_id, calendar.id)
        created_seq = calendar.seq if previous is None else previous.created_seq
        calendar.events[event_id] = _Event(resource, calendar.seq, created_seq)
        if previous is None:
            calendar.order.append(event_id)
        calendar.change_seqs.append(calendar.seq)
        calendar.change_ids.append(event_id)
        self._save_calendar(calendar)
        if self._persistence is not None:
            self._persistence.save_event(calendar.id, event_id, calendar.seq, created_seq, json.dumps(resource))
        return self._notifications(calendar.id, "exists")

    # -- events: reads -----------------------------------------------------------------------

    def get(self, calendar_id: str, event_id: str) -> dict[str, Any]:
        with self._lock:
            calendar = self._calendar(calendar_id)
            resource, _ = self._current_or_instance(calendar, event_id)
            return resource

    def list_events(self, calendar_id: str, query: ListQuery) -> ListPage:
        with self._lock:
            calendar = self._calendar(calendar_id)
            limit = query.page_size()
            sync_token = query.one("syncToken")
            if sync_token is not None:
                for name in _FORBIDDEN_WITH_SYNC:
                    if query.one(name) is not None:
                        raise bad_request(
                            f"The parameter {name} cannot be used together with syncToken.", location=name
                        )
            if query.one("orderBy") not in (None, "startTime", "updated"):
                raise bad_request("Invalid value for orderBy.", location="orderBy")
            if query.one("orderBy") == "startTime" and not query.flag("singleEvents"):
                raise bad_request(
                    "The requested ordering is not available for the particular query.", location="orderBy"
                )
            position = self._page_position(calendar, query)
            if sync_token is not None:
                since = self._token_seq(calendar, sync_token)
                snapshot = position.snapshot if position.snapshot is not None else calendar.seq
                return self._sync_page(calendar, query, since=since, snapshot=snapshot, position=position, limit=limit)
            return self._full_page(calendar, query, position, limit)

    def instances(self, calendar_id: str, event_id: str, query: ListQuery) -> ListPage:
        with self._lock:
            calendar = self._calendar(calendar_id)
            master = calendar.events.get(event_id)
            if master is None:
                raise not_found()
            limit = query.page_size()
            position = self._page_position(calendar, query)
            items: list[bytes] = []
            if master.resource.get("recurrence") and not master.cancelled:
                items = self._expand(calendar, master, query, show_deleted=query.flag("showDeleted"))
            original = query.one("originalStart")
            if original is not None:
                items = [
                    item for item in items if json.loads(item).get("originalStartTime", {}).get("dateTime") == original
                ]
            page = items[position.offset : position.offset + limit]
            more = position.offset + limit < len(items)
            token = self._page_token(calendar, query, offset=position.offset + limit) if more else None
            return ListPage(calendar.id, page, _format_ms(calendar.last_updated_ms), token, None)

    def _full_page(self, calendar: _Calendar, query: ListQuery, position: _Position, limit: int) -> ListPage:
        snapshot = position.snapshot if position.snapshot is not None else calendar.seq
        select = _Filter(query)
        single = query.flag("singleEvents")
        show_deleted = query.flag("showDeleted") or select.updated_min is not None

        def expand(event_id: str) -> list[bytes]:
            event = calendar.events[event_id]
            if single and "recurringEventId" in event.resource:
                return []  # shown where its series expands
            if single and event.resource.get("recurrence") and not event.cancelled:
                return self._expand(calendar, event, query, show_deleted=show_deleted)
            if event.cancelled and not show_deleted and not self._shown_when_cancelled(calendar, event, single):
                return []
            return [event.wire()] if select.accepts(event.resource) else []

        order_by = query.one("orderBy")
        if order_by is not None:
            return self._sorted_page(
                calendar=calendar,
                query=query,
                expand=expand,
                order_by=order_by,
                position=position,
                limit=limit,
                snapshot=snapshot,
            )
        items, next_position = _paginate(calendar.order, position, expand, limit)
        return self._page(calendar, query, items, next_position, snapshot)

    def _shown_when_cancelled(self, calendar: _Calendar, event: _Event, single: bool) -> bool:
        """Cancelled exceptions of a live series show even without showDeleted (as Google does)."""
        series_id = event.resource.get("recurringEventId")
        if single or series_id is None:
            return False
        series = calendar.events.get(series_id)
        return series is not None and not series.cancelled

    def _sorted_page(  # noqa: PLR0913 - the pieces of one listing
        self,
        *,
        calendar: _Calendar,
        query: ListQuery,
        expand: Callable[[str], list[bytes]],
        order_by: str,
        position: _Position,
        limit: int,
        snapshot: int,
    ) -> ListPage:
        items = [item for event_id in calendar.order for item in expand(event_id)]
        key = "updated" if order_by == "updated" else "start"
        items.sort(key=lambda item: _sort_key(json.loads(item), key))
        page = items[position.offset : position.offset + limit]
        if position.offset + limit < len(items):
            token = self._page_token(calendar, query, offset=position.offset + limit, snapshot=snapshot)
            return ListPage(calendar.id, page, _format_ms(calendar.last_updated_ms), token, None)
        return ListPage(
            calendar.id, page, _format_ms(calendar.last_updated_ms), None, self._sync_token(calendar, snapshot)
        )

    def _sync_page(  # noqa: PLR0913 - the pieces of one listing
        self, calendar: _Calendar, query: ListQuery, *, since: int, snapshot: int, position: _Position, limit: int
    ) -> ListPage:
        single = query.flag("singleEvents")
        first_page = query.one("pageToken") is None
        start = _Position(bisect.bisect_right(calendar.change_seqs, since)) if first_page else position
        end = bisect.bisect_right(calendar.change_seqs, snapshot)

        def expand(index: int) -> list[bytes]:
            event = calendar.events[calendar.change_ids[index]]
            if event.seq != calendar.change_seqs[index]:
                return []  # superseded by a later change: shown there (or by the next sync)
            if single and "recurringEventId" in event.resource:
                return []
            if single and event.resource.get("recurrence") and not event.cancelled:
                return self._expand(calendar, event, query, show_deleted=True)
            return [event.wire()]

        items, next_position = _paginate(range(end), start, expand, limit)
        return self._page(calendar, query, items, next_position, snapshot)

    def _page(
        self,
        calendar: _Calendar,
        query: ListQuery,
        items: list[bytes],
        next_position: _Position | None,
        snapshot: int,
    ) -> ListPage:
        updated = _format_ms(calendar.last_updated_ms)
        if next_position is not None:
            token = self._page_token(
                calendar, query, index=next_position.index, sub=next_position.sub, snapshot=snapshot
            )
            return ListPage(calendar.id, items, updated, token, None)
        return ListPage(calendar.id, items, updated, None, self._sync_token(calendar, snapshot))

    def _expand(self, calendar: _Calendar, master: _Event, query: ListQuery, *, show_deleted: bool) -> list[bytes]:
        series = Series(master.resource)
        select = _Filter(query)
        items: list[bytes] = []
        for occurrence in series.occurrences(after=query.time("timeMin"), before=query.time("timeMax")):
            stored = calendar.events.get(occurrence.instance_id)
            if stored is not None:
                if (show_deleted or not stored.cancelled) and select.accepts(stored.resource):
                    items.append(stored.wire())
                continue
            instance = series.instance(occurrence)
            if select.accepts(instance):
                items.append(json.dumps(instance, separators=(",", ":"), ensure_ascii=False).encode())
        return items

    # -- tokens ------------------------------------------------------------------------------

    def _sync_token(self, calendar: _Calendar, seq: int) -> str:
        return _encode_token({"n": self._nonce, "c": _short_hash(calendar.id), "e": calendar.epoch, "s": seq})

    def _token_seq(self, calendar: _Calendar, token: str) -> int:
        data = _decode_token(token)
        valid = (
            data is not None
            and data.get("n") == self._nonce
            and data.get("c") == _short_hash(calendar.id)
            and data.get("e") == calendar.epoch
            and isinstance(data.get("s"), int)
            and 0 <= data["s"] <= calendar.seq
        )
        if not valid or data is None:
            raise GoogleError(410, "fullSyncRequired", SYNC_EXPIRED, domain="calendar")
        return int(data["s"])

    def _page_token(self, calendar: _Calendar, query: ListQuery, **position: int | None) -> str:
        return _encode_token({"n": self._nonce, "c": _short_hash(calendar.id), "q": query.fingerprint(), **position})

    def _page_position(self, calendar: _Calendar, query: ListQuery) -> _Position:
        token = query.one("pageToken")
        if token is None:
            return _Position(0)
        data = _decode_token(token)
        if data is None or data.get("n") != self._nonce or data.get("c") != _short_hash(calendar.id):
            raise bad_request("Invalid page token value.", location="pageToken")
        if data.get("q") != query.fingerprint():
            raise bad_request("The page token does not belong to this query.", location="pageToken")
        return _Position(
            index=int(data.get("index") or 0),
            sub=int(data.get("sub") or 0),
            offset=int(data.get("offset") or 0),
            snapshot=data.get("snapshot"),
        )

    # -- watch channels ----------------------------------------------------------------------

    def watch(self, calendar_id: str, body: object, *, base_url: str) -> tuple[dict[str, Any], list[Notification]]:
        with self._lock:
            calendar = self._calendar(calendar_id)
            data = _object(body)
            channel_id, address = data.get("id"), data.get("address")
            if not isinstance(channel_id, str) or not channel_id:
                raise GoogleError(400, "required", "Required", location="id")
            if channel_id in self._channels:
                raise GoogleError(400, "channelIdNotUnique", f"Channel id {channel_id} not unique")
            if data.get("type") not in ("web_hook", "webhook"):
                raise bad_request("Invalid value for type: only web_hook is supported.", location="type")
            self._check_address(address)
            token = data.get("token")
            if token is not None and (not isinstance(token, str) or len(token) > 256):
                raise bad_request("Invalid channel token: a string of at most 256 characters.", location="token")
            ttl = _ttl(data.get("params"))
            expiration = int(self.clock.now().timestamp() * 1000) + ttl * 1000
            channel = _Channel(
                id=channel_id,
                calendar_id=calendar.id,
                resource_id=_short_hash(f"{self._nonce}:{calendar.id}", 20),
                resource_uri=_resource_uri(base_url, calendar.id),
                address=str(address),
                token=token,
                expiration_ms=expiration,
            )
            self._channels[channel_id] = channel
            notifications = [self._next_notification(channel, "sync")]
            self._flush()
            answer = {
                "kind": "api#channel",
                "id": channel.id,
                "resourceId": channel.resource_id,
                "resourceUri": channel.resource_uri,
                "expiration": str(channel.expiration_ms),
            }
            if token is not None:
                answer["token"] = token
            return answer, notifications

    def _check_address(self, address: object) -> None:
        if not isinstance(address, str) or not address:
            raise GoogleError(400, "required", "Required", location="address")
        parts = urlsplit(address)
        host = parts.hostname or ""
        loopback = host.startswith(_LOOPBACK_HOSTS) or host == "::1"
        if parts.scheme == "http" and not loopback:
            raise GoogleError(400, "push.webhookUrlNotHttps", f"WebHook callback must be HTTPS: {address}")
        if parts.scheme not in ("http", "https") or not host:
            raise bad_request(f"Invalid webhook address: {address}", location="address")
        if not loopback and not self.allow_remote_webhooks:
            raise GoogleError(
                400,
                "push.webhookUrlNotAllowed",
                "This sandbox delivers only to loopback addresses (127.0.0.0/8, localhost, [::1]).",
            )

    def stop_channel(self, body: object) -> None:
        with self._lock:
            data = _object(body)
            channel = self._channels.get(str(data.get("id")))
            if channel is None or data.get("resourceId") != channel.resource_id or channel.state == "stopped":
                raise GoogleError(404, "notFound", f"Channel '{data.get('id')}' not found for project 'sandbox'")
            channel.state = "stopped"
            self._save_channel(channel)
            self._flush()

    def is_deliverable(self, channel_id: str) -> bool:
        """Whether a channel still takes deliveries (live and not expired)."""
        with self._lock:
            channel = self._channels.get(channel_id)
            return channel is not None and channel.state == "live" and not self._expired(channel)

    def record_delivery(self, channel_id: str, message_number: int, **outcome: Any) -> None:
        with self._lock:
            channel = self._channels.get(channel_id)
            if channel is None:
                return
            for delivery in channel.deliveries:
                if delivery["message_number"] == message_number:
                    delivery.update(outcome)
                    return

    def channels(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "id": channel.id,
                    "calendarId": channel.calendar_id,
                    "resourceId": channel.resource_id,
                    "address": channel.address,
                    "expiration": str(channel.expiration_ms),
                    "state": "expired" if channel.state == "live" and self._expired(channel) else channel.state,
                    "lastMessageNumber": channel.next_number - 1,
                    "deliveries": [dict(delivery) for delivery in channel.deliveries],
                }
                for channel in self._channels.values()
            ]

    def _expired(self, channel: _Channel) -> bool:
        return channel.expiration_ms <= int(self.clock.now().timestamp() * 1000)

    def _notifications(self, calendar_id: str, state: str) -> list[Notification]:
        return [
            self._next_notification(channel, state)
            for channel in self._channels.values()
            if channel.calendar_id == calendar_id and channel.state == "live" and not self._expired(channel)
        ]

    def _next_notification(self, channel: _Channel, state: str) -> Notification:
        number = channel.next_number
        channel.next_number += 1
        channel.deliveries.append(
            {"message_number": number, "state": state, "status": None, "attempts": 0, "delivered": False, "error": None}
        )
        self._save_channel(channel)
        return Notification(
            channel.id,
            channel.address,
            channel.token,
            channel.resource_id,
            channel.resource_uri,
            channel.expiration_ms,
            number,
            state,
        )

    # -- persistence -------------------------------------------------------------------------

    def load(
        self,
        meta: str | None,
        calendars: list[dict[str, Any]],
        events: list[tuple[Any, ...]],
        channels: list[dict[str, Any]],
    ) -> None:
        """Rebuild the state a Persistence saved (``--db``)."""
        with self._lock:
            if meta is None:
                if self._persistence is not None:
                    self._persistence.save_meta(self._nonce)
                    self._persistence.commit()
            else:
                self._nonce = meta
            for row in calendars:
                self._calendars[row["id"]] = _Calendar(
                    row["id"], row["owner"], row["seq"], row["epoch"], row["last_updated_ms"]
                )
            for calendar_id, event_id, seq, created_seq, resource in sorted(events, key=lambda r: (r[0], r[3])):
                self._calendars[calendar_id].events[event_id] = _Event(json.loads(resource), seq, created_seq)
                self._calendars[calendar_id].order.append(event_id)
            for calendar in self._calendars.values():
                log = sorted((event.seq, event_id) for event_id, event in calendar.events.items())
                calendar.change_seqs = [seq for seq, _ in log]
                calendar.change_ids = [event_id for _, event_id in log]
            for row in channels:
                self._channels[row["id"]] = _Channel(**row)

    def _save_calendar(self, calendar: _Calendar) -> None:
        if self._persistence is not None:
            self._persistence.save_calendar(calendar.row())

    def _save_channel(self, channel: _Channel) -> None:
        if self._persistence is not None:
            self._persistence.save_channel(channel.row())

    def _flush(self) -> None:
        if self._persistence is not None:
            self._persistence.commit()


# -- helpers ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Position:
    index: int = 0
    sub: int = 0
    offset: int = 0
    snapshot: int | None = None


_T = TypeVar("_T")


def _paginate(
    entries: Sequence[_T], start: _Position, expand: Callable[[_T], list[bytes]], limit: int
) -> tuple[list[bytes], _Position | None]:
    """Up to ``limit`` items from ``entries`` at ``start``, and where the next page starts."""
    items: list[bytes] = []
    index, skip = start.index, start.sub
    while index < len(entries):
        produced = expand(entries[index])[skip:]
        room = limit - len(items)
        if len(produced) > room:
            items += produced[:room]
            return items, _Position(index, skip + room)
        items += produced
        index, skip = index + 1, 0
        if len(items) == limit and index < len(entries):
            return items, _Position(index, 0)
    return items, None


class _Filter:
    """timeMin/timeMax/updatedMin/q/iCalUID/extended-property filters of one listing."""

    def __init__(self, query: ListQuery) -> None:
        self.time_min = query.time("timeMin")
        self.time_max = query.time("timeMax")
        self.updated_min = query.time("updatedMin")
        self.text = (query.one("q") or "").lower()
        self.ical_uid = query.one("iCalUID")
        self.private = [_pair(item) for item in query.many("privateExtendedProperty")]
        self.shared = [_pair(item) for item in query.many("sharedExtendedProperty")]

    def accepts(self, resource: dict[str, Any]) -> bool:
        if (self.time_min or self.time_max) and "start" in resource and not self._overlaps(resource):
            return False
        if self.updated_min and resource.get("updated", "") < _format_ms(int(self.updated_min.timestamp() * 1000)):
            return False
        if self.ical_uid and resource.get("iCalUID") != self.ical_uid:
            return False
        if self.text and not any(
            self.text in str(resource.get(key, "")).lower() for key in ("summary", "description", "location")
        ):
            return False
        props = resource.get("extendedProperties", {})
        if any(props.get("private", {}).get(k) != v for k, v in self.private):
            return False
        return all(props.get("shared", {}).get(k) == v for k, v in self.shared)

    def _overlaps(self, resource: dict[str, Any]) -> bool:
        start, end = _utc(resource["start"]), _utc(resource["end"])
        if resource.get("recurrence"):
            end = datetime.max.replace(tzinfo=UTC)  # a series may run on; expansion decides per instance
        return (self.time_min is None or end > self.time_min) and (self.time_max is None or start < self.time_max)


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise bad_request("Extended property filters take the form propertyName=value.")
    return key, value


def _utc(value: dict[str, Any]) -> datetime:
    parsed = parse_event_time(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _sort_key(resource: dict[str, Any], key: str) -> tuple[str, str]:
    if key == "updated":
        return (resource.get("updated", ""), resource["id"])
    start = resource.get("start")
    return ((_utc(start).isoformat() if start else ""), resource["id"])


def _object(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise GoogleError(400, "badRequest", "The request body must be a JSON object.")
    return body


def _merge(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Google's patch: named fields replace, nested objects merge, null clears, arrays replace.

    start, end and conferenceData replace wholesale (a date and a dateTime never mix)."""
    result = copy.deepcopy(current)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict) and key not in ("start", "end"):
            result[key] = _merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _apply_conference(resource: dict[str, Any], body: dict[str, Any], cdv: int, previous: object) -> None:
    """conferenceData is written only with conferenceDataVersion=1; otherwise the old one stays."""
    if cdv != 1 or "conferenceData" not in body:
        if previous is not None:
            resource["conferenceData"] = copy.deepcopy(previous)
        else:
            resource.pop("conferenceData", None)
        return
    data = body["conferenceData"]
    if data is None:
        resource.pop("conferenceData", None)
        return
    if not isinstance(data, dict):
        raise bad_request("Invalid conference data.", location="conferenceData")
    resource["conferenceData"] = _with_created_conference(copy.deepcopy(data))


def _with_created_conference(data: dict[str, Any]) -> dict[str, Any]:
    """A createRequest for Google Meet is answered at once, as Calendar does; others stay as sent."""
    request = data.get("createRequest")
    if not isinstance(request, dict):
        return data
    kind = (request.get("conferenceSolutionKey") or {}).get("type")
    if kind != "hangoutsMeet":
        raise bad_request(f"Invalid conference type value: {kind}.", location="conferenceData.createRequest")
    code = "-".join(secrets.token_hex(2)[:n] for n in (3, 4, 3)).translate(str.maketrans("0123456789", "abcdefghij"))
    data.update(
        {
            "conferenceId": code,
            "conferenceSolution": {
                "key": {"type": "hangoutsMeet"},
                "name": "Google Meet",
                "iconUri": "https://fonts.gstatic.com/s/i/productlogos/meet_2020q4/v6/web-512dp/logo_meet_2020q4_color_2x_web_512dp.png",
            },
            "entryPoints": [
                {
                    "entryPointType": "video",
                    "uri": f"https://meet.google.com/{code}",
                    "label": f"meet.google.com/{code}",
                }
            ],
        }
    )
    request["status"] = {"statusCode": "success"}
    return data


def _validate(resource: dict[str, Any]) -> None:
    """The whole resource, as it would be stored; raises GoogleError as Calendar would."""
    for key in ("summary", "description", "location"):
        if key in resource and not isinstance(resource[key], str):
            raise bad_request(f"Invalid value for {key}.", location=key)
    if resource.get("status") not in ("confirmed", "tentative", "cancelled"):
        raise bad_request("Invalid value for status.", location="status")
    start = _event_time(resource.get("start"), "start")
    end = _event_time(resource.get("end"), "end")
    if ("date" in resource["start"]) != ("date" in resource["end"]):
        raise bad_request("Start and end must both be dates or both be date-times.")
    if end < start:
        raise GoogleError(400, "timeRangeEmpty", "The specified time range is empty.", location="end.dateTime")
    attendees = resource.get("attendees", [])
    if not isinstance(attendees, list) or not all(
        isinstance(item, dict) and isinstance(item.get("email"), str) and "@" in item["email"] for item in attendees
    ):
        raise bad_request("Invalid attendee email.", location="attendees")
    recurrence = resource.get("recurrence")
    if recurrence is not None:
        if not isinstance(recurrence, list) or not all(isinstance(line, str) for line in recurrence):
            raise bad_request("Invalid recurrence rule.", location="recurrence")
        if recurrence:
            Series(resource)
    props = resource.get("extendedProperties", {})
    if not isinstance(props, dict) or not all(
        isinstance(props.get(scope, {}), dict) and all(isinstance(v, str) for v in props.get(scope, {}).values())
        for scope in ("private", "shared")
    ):
        raise bad_request("Invalid extended properties.", location="extendedProperties")


def _event_time(value: object, name: str) -> datetime:
    if not isinstance(value, dict):
        missing = "Missing end time." if name == "end" else "Missing start time."
        raise GoogleError(400, "required", missing, location=name)
    if ("date" in value) == ("dateTime" in value):
        raise bad_request(f"Exactly one of {name}.date and {name}.dateTime is required.", location=name)
    if "dateTime" in value and not value.get("timeZone") and _naive(value["dateTime"]):
        raise GoogleError(400, "required", f"Missing time zone definition for {name} time.", location=name)
    if "date" in value and len(str(value["date"])) != len("YYYY-MM-DD"):
        raise bad_request(f"Invalid {name} time.", location=name)
    try:
        return _utc(value)
    except (ValueError, TypeError) as err:
        raise bad_request(f"Invalid {name} time.", location=name) from err


def _naive(text: object) -> bool:
    """Whether a dateTime parses but carries no offset (then a timeZone must say where)."""
    try:
        return datetime.fromisoformat(str(text)).tzinfo is None
    except ValueError:
        return False


def _ttl(params: object) -> int:
    if params is None:
        return DEFAULT_TTL_S
    if not isinstance(params, dict):
        raise bad_request("Invalid channel params.", location="params")
    raw = params.get("ttl")
    if raw is None:
        return DEFAULT_TTL_S
    if not str(raw).isdigit() or int(raw) < 1:
        raise bad_request(f"Invalid ttl value: {raw}", location="params.ttl")
    return min(int(raw), MAX_TTL_S)


def _resource_uri(base_url: str, calendar_id: str) -> str:
    return f"{base_url.rstrip('/')}/calendar/v3/calendars/{quote(calendar_id, safe='')}/events?alt=json"


def _new_event_id() -> str:
    alphabet = "0123456789abcdefghijklmnopqrstuv"
    return "".join(secrets.choice(alphabet) for _ in range(26))


def _html_link(event_id: str, calendar_id: str) -> str:
    eid = base64.urlsafe_b64encode(f"{event_id} {calendar_id}".encode()).decode().rstrip("=")
    return f"https://www.google.com/calendar/event?eid={eid}"


def _format_ms(ms: int) -> str:
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def _short_hash(text: str, length: int = 12) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _encode_token(data: dict[str, Any]) -> str:
    compact = {key: value for key, value in data.items() if value is not None}
    return base64.urlsafe_b64encode(json.dumps(compact, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_token(token: str) -> dict[str, Any] | None:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError):
        return None
    return data if isinstance(data, dict) else None
