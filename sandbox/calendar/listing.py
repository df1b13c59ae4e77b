"""Listings: events.list and events.instances, full and incremental, page by page
(https://developers.google.com/calendar/api/guides/sync).

A sync token names a position in the calendar's change log; an incremental listing returns
every event whose latest change lies between the token and the listing's snapshot, deleted
ones as ``cancelled`` tombstones, and the last page carries the snapshot as
``nextSyncToken``. Page positions are keys into append-only lists (creation order, change
log), so a write between two pages can never make a listing skip an event; whatever changed
after the snapshot is returned again by the next sync.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sandbox.calendar import tokens
from sandbox.calendar.errors import GoogleError, bad_request, not_found
from sandbox.calendar.event_rules import utc
from sandbox.calendar.partial import Partials, parse_fields, project
from sandbox.calendar.recurrence import Series
from sandbox.calendar.store import CalendarRecord, EventRecord, Store, format_ms
from sandbox.calendar.tokens import Position

__all__ = ["ListPage", "ListQuery", "Listings"]

DEFAULT_PAGE = 250
MAX_PAGE = 2500
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
        kept = sorted((k, v) for k, v in self.params.items() if k not in ("pageToken", "maxResults", "alt", "fields"))
        return hashlib.sha256(json.dumps(kept).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ListPage:
    calendar_id: str
    items: list[bytes]
    updated: str
    next_page_token: str | None
    next_sync_token: str | None

    def to_bytes(self, fields: str | None = None, partials: Partials | None = None) -> bytes:
        """The page as Calendar answers it, shaped by ``fields`` when given (``partials`` keeps the
        items' projections)."""
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
        items = self.items
        if fields:  # a partial response (sandbox/calendar/partial.py)
            selection = parse_fields(fields)
            head = project(head, selection)
            if "items" not in selection and "*" not in selection:
                return json.dumps(head, separators=(",", ":")).encode()
            below = selection["items"] if "items" in selection else selection["*"]
            items = (partials or Partials()).items(fields, below, items)
        prefix = json.dumps(head, separators=(",", ":")).encode()[:-1]
        return prefix + (b',"items":[' if head else b'"items":[') + b",".join(items) + b"]}"


class Listings:
    """Listings of a Store's calendars; callers hold the store's lock."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def invalidate_sync_tokens(self, calendar_id: str) -> None:
        calendar = self._store.calendar(calendar_id)
        calendar.epoch += 1
        self._store.save_calendar(calendar)

    def list_events(self, calendar_id: str, query: ListQuery) -> ListPage:
        calendar = self._store.calendar(calendar_id)
        limit = query.page_size()
        sync_token = query.one("syncToken")
        if sync_token is not None:
            for name in _FORBIDDEN_WITH_SYNC:
                if query.one(name) is not None:
                    raise bad_request(f"The parameter {name} cannot be used together with syncToken.", location=name)
        if query.one("orderBy") not in (None, "startTime", "updated"):
            raise bad_request("Invalid value for orderBy.", location="orderBy")
        if query.one("orderBy") == "startTime" and not query.flag("singleEvents"):
            raise bad_request("The requested ordering is not available for the particular query.", location="orderBy")
        position = self._page_position(calendar, query)
        if sync_token is not None:
            since = tokens.token_seq(self._store.nonce, calendar, sync_token)
            snapshot = position.snapshot if position.snapshot is not None else calendar.seq
            return self._sync_page(calendar, query, since=since, snapshot=snapshot, position=position, limit=limit)
        return self._full_page(calendar, query, position, limit)

    def instances(self, calendar_id: str, event_id: str, query: ListQuery) -> ListPage:
        calendar = self._store.calendar(calendar_id)
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
        return ListPage(calendar.id, page, format_ms(calendar.last_updated_ms), token, None)

    def _full_page(self, calendar: CalendarRecord, query: ListQuery, position: Position, limit: int) -> ListPage:
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

    def _shown_when_cancelled(self, calendar: CalendarRecord, event: EventRecord, single: bool) -> bool:
        """Cancelled exceptions of a live series show even without showDeleted (as Google does)."""
        series_id = event.resource.get("recurringEventId")
        if single or series_id is None:
            return False
        series = calendar.events.get(series_id)
        return series is not None and not series.cancelled

    def _sorted_page(  # noqa: PLR0913 - the pieces of one listing
        self,
        *,
        calendar: CalendarRecord,
        query: ListQuery,
        expand: Callable[[str], list[bytes]],
        order_by: str,
        position: Position,
        limit: int,
        snapshot: int,
    ) -> ListPage:
        items = [item for event_id in calendar.order for item in expand(event_id)]
        key = "updated" if order_by == "updated" else "start"
        items.sort(key=lambda item: _sort_key(json.loads(item), key))
        page = items[position.offset : position.offset + limit]
        if position.offset + limit < len(items):
            token = self._page_token(calendar, query, offset=position.offset + limit, snapshot=snapshot)
            return ListPage(calendar.id, page, format_ms(calendar.last_updated_ms), token, None)
        return ListPage(
            calendar.id, page, format_ms(calendar.last_updated_ms), None, self._sync_token(calendar, snapshot)
        )

    def _sync_page(  # noqa: PLR0913 - the pieces of one listing
        self, calendar: CalendarRecord, query: ListQuery, *, since: int, snapshot: int, position: Position, limit: int
    ) -> ListPage:
        single = query.flag("singleEvents")
        first_page = query.one("pageToken") is None
        start = Position(bisect.bisect_right(calendar.change_seqs, since)) if first_page else position
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
        calendar: CalendarRecord,
        query: ListQuery,
        items: list[bytes],
        next_position: Position | None,
        snapshot: int,
    ) -> ListPage:
        updated = format_ms(calendar.last_updated_ms)
        if next_position is not None:
            token = self._page_token(
                calendar, query, index=next_position.index, sub=next_position.sub, snapshot=snapshot
            )
            return ListPage(calendar.id, items, updated, token, None)
        return ListPage(calendar.id, items, updated, None, self._sync_token(calendar, snapshot))

    def _expand(
        self, calendar: CalendarRecord, master: EventRecord, query: ListQuery, *, show_deleted: bool
    ) -> list[bytes]:
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

    def _sync_token(self, calendar: CalendarRecord, seq: int) -> str:
        return tokens.sync_token(self._store.nonce, calendar, seq)

    def _page_token(self, calendar: CalendarRecord, query: ListQuery, **position: int | None) -> str:
        return tokens.page_token(self._store.nonce, calendar, query.fingerprint(), **position)

    def _page_position(self, calendar: CalendarRecord, query: ListQuery) -> Position:
        return tokens.page_position(self._store.nonce, calendar, query.one("pageToken"), query.fingerprint())


# -- helpers ----------------------------------------------------------------------------------


_T = TypeVar("_T")


def _paginate(
    entries: Sequence[_T], start: Position, expand: Callable[[_T], list[bytes]], limit: int
) -> tuple[list[bytes], Position | None]:
    """Up to ``limit`` items from ``entries`` at ``start``, and where the next page starts."""
    items: list[bytes] = []
    index, skip = start.index, start.sub
    while index < len(entries):
        produced = expand(entries[index])[skip:]
        room = limit - len(items)
        if len(produced) > room:
            items += produced[:room]
            return items, Position(index, skip + room)
        items += produced
        index, skip = index + 1, 0
        if len(items) == limit and index < len(entries):
            return items, Position(index, 0)
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
        if self.updated_min and resource.get("updated", "") < format_ms(int(self.updated_min.timestamp() * 1000)):
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
        start, end = utc(resource["start"]), utc(resource["end"])
        if resource.get("recurrence"):
            end = datetime.max.replace(tzinfo=UTC)  # a series may run on; expansion decides per instance
        return (self.time_min is None or end > self.time_min) and (self.time_max is None or start < self.time_max)


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise bad_request("Extended property filters take the form propertyName=value.")
    return key, value


def _sort_key(resource: dict[str, Any], key: str) -> tuple[str, str]:
    if key == "updated":
        return (resource.get("updated", ""), resource["id"])
    start = resource.get("start")
    return ((utc(start).isoformat() if start else ""), resource["id"])
