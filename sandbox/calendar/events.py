"""Events: insert, get, patch, update and delete, recurring-event instances included
(https://developers.google.com/calendar/api/v3/reference/events).

Every write takes the calendar's next sequence number, stamps the event's ``updated``
(strictly increasing per calendar), appends to the calendar's change log and owes each live
watch channel a notification. Every write validates the complete new resource first
(sandbox/calendar/event_rules.py) and changes nothing on error. A write to an organizer's
event reaches its attendees' copies, and a write to a copy is held to what an attendee may
change (sandbox/calendar/copies.py, which also moves events between calendars).
"""

from __future__ import annotations

import base64
import copy
import re
import secrets
from collections.abc import Callable, Sequence
from typing import Any

from sandbox.calendar.channels import Channels, Notification
from sandbox.calendar.copies import Copies, is_copy
from sandbox.calendar.errors import GoogleError, bad_request, not_found
from sandbox.calendar.event_rules import apply_conference, json_object, merge, validate
from sandbox.calendar.recurrence import Series, split_instance_id
from sandbox.calendar.store import CalendarRecord, EventRecord, Store, format_ms

__all__ = ["Events"]

_EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")
_READ_ONLY = ("kind", "etag", "created", "updated", "htmlLink", "creator", "organizer", "recurringEventId")


class Events:
    """The events of a Store's calendars; callers hold the store's lock."""

    def __init__(self, store: Store, channels: Channels, is_user: Callable[[str], bool] = lambda _: False) -> None:
        self._store = store
        self._channels = channels
        self.copies = Copies(store, self, is_user)

    def get(self, calendar_id: str, event_id: str) -> dict[str, Any]:
        resource, _ = self.current_or_instance(self._store.calendar(calendar_id), event_id)
        return resource

    def insert(self, calendar_id: str, body: object, cdv: int) -> tuple[dict[str, Any], list[Notification]]:
        calendar = self._store.calendar_or_new(calendar_id)
        resource = self._prepare_insert(calendar, body, cdv)
        notifications = self.commit(calendar, resource)
        return copy.deepcopy(resource), notifications

    def insert_many(self, calendar_id: str, bodies: Sequence[object], cdv: int) -> tuple[int, list[Notification]]:
        """Insert events all-or-nothing: every body is validated before any is stored."""
        calendar = self._store.calendar_or_new(calendar_id)
        prepared: list[dict[str, Any]] = []
        seen: set[str] = set()
        for index, body in enumerate(bodies):
            try:
                resource = self._prepare_insert(calendar, body, cdv)
            except GoogleError as err:
                raise GoogleError(err.code, err.reason, f"events[{index}]: {err.message}") from err
            if resource["id"] in seen:
                raise GoogleError(409, "duplicate", f"events[{index}]: The requested identifier already exists.")
            seen.add(resource["id"])
            prepared.append(resource)
        notifications: list[Notification] = []
        for resource in prepared:
            notifications += self.commit(calendar, resource)
        return len(prepared), notifications

    def _prepare_insert(self, calendar: CalendarRecord, body: object, cdv: int) -> dict[str, Any]:
        data = json_object(body)
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
        apply_conference(resource, data, cdv, previous=None)
        validate(resource)
        return resource

    def modify(
        self, calendar_id: str, event_id: str, body: object, cdv: int, *, replace: bool
    ) -> tuple[dict[str, Any], list[Notification]]:
        """events.update (``replace``) or events.patch."""
        calendar = self._store.calendar(calendar_id)
        current, _ = self.current_or_instance(calendar, event_id)
        data = json_object(body)
        changes = {key: value for key, value in data.items() if key not in (*_READ_ONLY, "id", "iCalUID")}
        changes.pop("originalStartTime", None)
        changes.pop("conferenceData", None)
        if replace:
            keep = ("id", "iCalUID", "creator", "organizer", "recurringEventId", "originalStartTime", "sequence")
            resource = {key: current[key] for key in keep if key in current}
            resource.update(changes)
            resource.setdefault("status", "confirmed")
        else:
            resource = merge(current, changes)
        if "recurringEventId" in resource and resource.get("recurrence"):
            raise bad_request("Recurrence is not allowed on an instance of a recurring event.")
        if any(key in changes for key in ("start", "end", "recurrence", "status")):
            resource["sequence"] = int(current.get("sequence", 0)) + 1
        apply_conference(resource, data, cdv, previous=current.get("conferenceData"))
        validate(resource)  # first: the attendee's check below reads a well-formed resource
        attendee = is_copy(current, calendar.id)
        if attendee:
            self.copies.check_attendee_edit(calendar, current, resource)
        notifications = self.commit(calendar, resource)
        if "recurrence" in current and resource.get("status") == "cancelled":
            notifications += self._cancel_exceptions(calendar, event_id)
        if attendee:
            notifications += self.copies.answer(calendar, current, resource)
            resource = calendar.events[resource["id"]].resource  # as the organizer's answer left it
        return copy.deepcopy(resource), notifications

    def delete(self, calendar_id: str, event_id: str) -> list[Notification]:
        calendar = self._store.calendar(calendar_id)
        current, _ = self.current_or_instance(calendar, event_id)
        if current.get("status") == "cancelled":
            raise GoogleError(410, "deleted", "Resource has been deleted")
        resource = copy.deepcopy(current)
        resource["status"] = "cancelled"
        attendee = is_copy(current, calendar.id)
        if attendee:  # only this copy goes; the organizer sees the attendee decline
            for item in resource.get("attendees", []):
                if str(item.get("email", "")).lower() == calendar.id.lower():
                    item["responseStatus"] = "declined"
        else:
            resource["sequence"] = int(current.get("sequence", 0)) + 1
        notifications = self.commit(calendar, resource)
        if "recurrence" in current:
            notifications += self._cancel_exceptions(calendar, event_id)
        if attendee:
            notifications += self.copies.answer(calendar, current, resource)
        return notifications

    def _cancel_exceptions(self, calendar: CalendarRecord, series_id: str) -> list[Notification]:
        notifications: list[Notification] = []
        for event in list(calendar.events.values()):
            if event.resource.get("recurringEventId") == series_id and not event.cancelled:
                resource = copy.deepcopy(event.resource)
                resource["status"] = "cancelled"
                notifications += self.commit(calendar, resource)
        return notifications

    def current_or_instance(self, calendar: CalendarRecord, event_id: str) -> tuple[dict[str, Any], bool]:
        """The stored event, or an unmodified instance of a series (then True: not yet stored)."""
        event = calendar.events.get(event_id)
        if event is not None:
            return copy.deepcopy(event.resource), False
        instance = _instance(calendar, event_id)
        if instance is None:
            raise not_found()
        return instance, True

    def commit(
        self, calendar: CalendarRecord, resource: dict[str, Any], *, propagate: bool = True
    ) -> list[Notification]:
        """Store one event's new state; an organizer's write then reaches the copies (``propagate``)."""
        calendar.last_updated_ms = max(self._store.now_ms(), calendar.last_updated_ms + 1)
        calendar.seq += 1
        stamp = format_ms(calendar.last_updated_ms)
        event_id = resource["id"]
        previous = calendar.events.get(event_id)
        resource["kind"] = "calendar#event"
        resource["etag"] = f'"{calendar.last_updated_ms}{calendar.seq % 1000:03d}"'
        resource["updated"] = stamp
        resource.setdefault("created", stamp)
        resource["htmlLink"] = _html_link(event_id, calendar.id)
        created_seq = calendar.seq if previous is None else previous.created_seq
        calendar.events[event_id] = EventRecord(resource, calendar.seq, created_seq)
        if previous is None:
            calendar.order.append(event_id)
        calendar.change_seqs.append(calendar.seq)
        calendar.change_ids.append(event_id)
        self._store.save_calendar(calendar)
        self._store.save_event(calendar, event_id)
        notifications = self._channels.notify(calendar.id, "exists")
        before = None if previous is None else previous.resource
        guests = resource.get("attendees") or (before is not None and before.get("attendees"))
        if propagate and guests and not is_copy(resource, calendar.id):
            notifications += self.copies.sync(calendar, before, resource)
        return notifications


def _instance(calendar: CalendarRecord, event_id: str) -> dict[str, Any] | None:
    parts = split_instance_id(event_id)
    if parts is None:
        return None
    master = calendar.events.get(parts[0])
    if master is None or master.cancelled or not master.resource.get("recurrence"):
        return None
    series = Series(master.resource)
    occurrence = series.occurrence_at(parts[1])
    return None if occurrence is None else series.instance(occurrence)


def _new_event_id() -> str:
    alphabet = "0123456789abcdefghijklmnopqrstuv"
    return "".join(secrets.choice(alphabet) for _ in range(26))


def _html_link(event_id: str, calendar_id: str) -> str:
    eid = base64.urlsafe_b64encode(f"{event_id} {calendar_id}".encode()).decode().rstrip("=")
    return f"https://www.google.com/calendar/event?eid={eid}"
