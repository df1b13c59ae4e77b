"""Attendees' copies of an event, and events.move
(https://developers.google.com/calendar/api/concepts/events-calendars#organizers,
https://developers.google.com/calendar/api/v3/reference/events/move).

An event whose attendees include a sandbox user (other than its organizer) has a copy in that
user's primary calendar: the same id and iCalUID, the organizer's fields, ``organizer`` without
``self`` and ``self: true`` on the user's own attendee entry. A copy is an ordinary event of
the attendee's calendar (so it is listed, synced, watched and persisted as events are); what
makes it a copy is that its ``organizer.email`` is not its calendar. The link between an
organizer's event and its copies is therefore never stored: it is the organizer's attendee
list plus the copies themselves, and survives a restart as they do.

- Every organizer write re-commits each copy (new ``updated`` and etag, a change in that
  calendar's log, a notification to its channels); a removed attendee's copy, and every copy of
  a cancelled event, turns ``cancelled``. ``reminders``, ``colorId`` and private extended
  properties are the copy's own and survive the organizer's writes.
- On a copy the attendee may change only those fields and their own ``responseStatus``,
  ``comment`` and ``additionalGuests``; anything else is 403 ``forbiddenForNonOrganizer``. Their
  response reaches the organizer's event (and from there every copy). Deleting a copy cancels
  only that copy and marks the attendee ``declined`` on the organizer's event; the copy then
  stays cancelled until the organizer re-invites them (a response other than declined).
- Instance exceptions are copied only to attendees who hold a copy of the series.
- An organizer's writes reach only copies of its own event: an event with the same id in the
  attendee's calendar whose organizer is another calendar (their own, or another organizer's
  copy, cancelled or not) is never overwritten or cancelled, and a move into a calendar holding
  such a copy is 409 ``duplicate``. A moved event takes its copies over from the source.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sandbox.calendar.channels import Notification
from sandbox.calendar.errors import GoogleError, bad_request, not_found
from sandbox.calendar.recurrence import split_instance_id
from sandbox.calendar.store import CalendarRecord, EventRecord, Store

if TYPE_CHECKING:
    from sandbox.calendar.events import Events

__all__ = ["Copies", "is_copy", "non_organizer"]

_PER_COPY = ("reminders", "colorId")  # with extendedProperties.private: each copy keeps its own
_OWN_ANSWER = ("responseStatus", "comment", "additionalGuests")  # what an attendee may change of their entry
_VOLATILE = ("kind", "etag", "updated", "created", "htmlLink", "sequence")


def is_copy(resource: dict[str, Any], calendar_id: str) -> bool:
    """Whether the event in this calendar is an attendee's copy (its organizer is elsewhere)."""
    organizer = resource.get("organizer")
    return isinstance(organizer, dict) and organizer.get("email") not in (None, calendar_id)


def non_organizer(message: str = "Shared properties can only be changed by the organizer of the event.") -> GoogleError:
    return GoogleError(403, "forbiddenForNonOrganizer", message, domain="calendar")


class Copies:
    """Keeps attendees' copies in line with the organizer's event; callers hold the store's lock."""

    def __init__(self, store: Store, events: Events, is_user: Callable[[str], bool]) -> None:
        self._store = store
        self._events = events
        self._is_user = is_user

    # -- the organizer's side ------------------------------------------------------------------

    def sync(
        self,
        calendar: CalendarRecord,
        previous: dict[str, Any] | None,
        resource: dict[str, Any],
        *,
        moved_from: str | None = None,
    ) -> list[Notification]:
        """After a write to the organizer's event: every attendee's copy, brought in line.

        Only copies of this organizer's event are touched (``moved_from``: or of the calendar it
        was moved from, which this write takes over)."""
        if previous is None and "recurringEventId" in resource:
            series = calendar.events.get(resource["recurringEventId"])
            previous = None if series is None else series.resource  # a new exception: its series' guests
        live = resource.get("status") != "cancelled"
        now = _guests(resource, calendar.id) if live else []
        organizers = (calendar.id,) if moved_from is None else (calendar.id, moved_from)
        notifications: list[Notification] = []
        for email in dict.fromkeys([*now, *(_guests(previous, calendar.id) if previous else [])]):
            notifications += self._sync_one(email, resource, organizers, attending=email in now)
        return notifications

    def _sync_one(
        self, email: str, resource: dict[str, Any], organizers: tuple[str, ...], *, attending: bool
    ) -> list[Notification]:
        target = self._calendar_of(email, create=attending)
        if target is None:
            return []
        existing = target.events.get(resource["id"])
        if existing is not None and not _organized_by(existing, organizers):
            return []  # the attendee's own event, or a copy of another organizer's, that shares the id
        series_id = resource.get("recurringEventId")
        if series_id is not None:
            series = target.events.get(series_id)
            if series is None or not _organized_by(series, organizers):
                return []  # an exception is copied only where its series is
        if attending:
            return self._write(target, resource, existing)
        if (existing is None and series_id is None) or (existing is not None and existing.cancelled):
            return []
        tombstone = _copy_for(resource, target.id, existing)
        tombstone["status"] = "cancelled"
        return self._events.commit(target, tombstone, propagate=False)

    def _write(
        self, target: CalendarRecord, resource: dict[str, Any], existing: EventRecord | None
    ) -> list[Notification]:
        if not self._is_user(target.id) and (existing is None or not is_copy(existing.resource, target.id)):
            return []
        if existing is not None and existing.cancelled and _answer(resource, target.id) == "declined":
            return []  # the attendee deleted their copy; it stays deleted until re-invited
        return self._events.commit(target, _copy_for(resource, target.id, existing), propagate=False)

    def _calendar_of(self, email: str, *, create: bool) -> CalendarRecord | None:
        for key in dict.fromkeys((email, email.lower())):
            found = self._store.calendars.get(key)
            if found is not None:
                return found
            if create and self._is_user(key):
                return self._store.new_calendar(key, key)
        return None

    # -- the attendee's side -------------------------------------------------------------------

    def check_attendee_edit(self, calendar: CalendarRecord, current: dict[str, Any], resource: dict[str, Any]) -> None:
        """403 unless a write to a copy changes only what the attendee may change."""
        if _shared(current, calendar.id) != _shared(resource, calendar.id):
            raise non_organizer()
        resource["sequence"] = current.get("sequence", 0)

    def answer(self, calendar: CalendarRecord, before: dict[str, Any], after: dict[str, Any]) -> list[Notification]:
        """After a write to a copy: the attendee's own response (``responseStatus``, ``comment``,
        ``additionalGuests``, validated with the copy), carried to the organizer's event."""
        mine = _own_answer(after, calendar.id)
        if mine is None or mine == _own_answer(before, calendar.id):
            return []
        organizer = self._store.calendars.get(str(after["organizer"]["email"]))
        if organizer is None:
            return []
        try:
            event, _ = self._events.current_or_instance(organizer, after["id"])
        except GoogleError:
            return []
        if event.get("status") == "cancelled" or is_copy(event, organizer.id):
            return []
        entries = [item for item in event.get("attendees", []) if _same(item.get("email"), calendar.id)]
        if not entries or all(_own_answer({"attendees": [item]}, calendar.id) == mine for item in entries):
            return []
        for item in entries:
            for key in _OWN_ANSWER:
                item.pop(key, None)
            item.update(mine)
        return self._events.commit(organizer, event)

    # -- events.move ---------------------------------------------------------------------------

    def move(self, source_id: str, event_id: str, destination_id: str) -> tuple[dict[str, Any], list[Notification]]:
        """The organizer's event (a series with its exceptions) moved to another calendar: a
        tombstone in the source, the event (same id) in the destination, copies re-pointed."""
        source = self._store.calendar(source_id)
        event = source.events.get(event_id)
        if event is None and split_instance_id(event_id) is not None:
            self._events.current_or_instance(source, event_id)  # 404 unless such an instance exists
            raise _instance_move()
        if event is None or event.cancelled:
            raise not_found()
        if "recurringEventId" in event.resource:
            raise _instance_move()
        if is_copy(event.resource, source.id):
            raise non_organizer("Only the organizer of the event can move it.")
        if event.resource.get("eventType", "default") != "default":
            raise bad_request("Only default events can be moved.", reason="eventTypeRestriction")
        destination = self._store.calendar(destination_id)
        if destination.id == source.id:
            return copy.deepcopy(event.resource), []
        moving = [event, *_exceptions(source, event_id)]
        for item in moving:
            _check_free(destination, item.resource["id"], source.id)
        notifications: list[Notification] = []
        for item in moving:
            moved = _moved(item.resource, destination.id)
            if not item.cancelled:
                tombstone = copy.deepcopy(item.resource)
                tombstone["status"] = "cancelled"
                notifications += self._events.commit(source, tombstone, propagate=False)
            notifications += self._events.commit(destination, moved, propagate=False)
            notifications += self.sync(destination, item.resource, moved, moved_from=source.id)
        return copy.deepcopy(destination.events[event_id].resource), notifications


# -- helpers ----------------------------------------------------------------------------------


def _same(email: object, calendar_id: str) -> bool:
    return isinstance(email, str) and email.lower() == calendar_id.lower()


def _guests(resource: dict[str, Any], organizer_id: str) -> list[str]:
    """The attendees who may hold a copy: everyone but the organizer's own calendar."""
    attendees = resource.get("attendees") or []
    return [item["email"] for item in attendees if not _same(item.get("email"), organizer_id)]


def _organizer(resource: dict[str, Any]) -> object:
    organizer = resource.get("organizer")
    return organizer.get("email") if isinstance(organizer, dict) else None


def _organized_by(event: EventRecord, organizers: tuple[str, ...]) -> bool:
    return any(_same(_organizer(event.resource), organizer) for organizer in organizers)


def _answer(resource: dict[str, Any], calendar_id: str) -> str | None:
    mine = _own_answer(resource, calendar_id)
    return None if mine is None else str(mine["responseStatus"])


def _own_answer(resource: dict[str, Any], calendar_id: str) -> dict[str, Any] | None:
    """The attendee's own answer in an event (None if they are not an attendee)."""
    for item in resource.get("attendees") or []:
        if _same(item.get("email"), calendar_id):
            mine = {key: item[key] for key in _OWN_ANSWER if key in item}
            mine.setdefault("responseStatus", "needsAction")
            return mine
    return None


def _without_self(value: dict[str, Any]) -> dict[str, Any]:
    return {key: item for key, item in value.items() if key != "self"}


def _copy_for(resource: dict[str, Any], calendar_id: str, existing: EventRecord | None) -> dict[str, Any]:
    """The organizer's event as it appears in an attendee's calendar."""
    result = copy.deepcopy(resource)
    mine = {} if existing is None else existing.resource
    for key in _PER_COPY:
        result.pop(key, None)
        if key in mine:
            result[key] = copy.deepcopy(mine[key])
    result.setdefault("reminders", {"useDefault": True})
    props = {k: v for k, v in result.pop("extendedProperties", {}).items() if k != "private"}
    private = mine.get("extendedProperties", {}).get("private")
    if private is not None:
        props["private"] = copy.deepcopy(private)
    if props:
        result["extendedProperties"] = props
    result["organizer"] = _without_self(result.get("organizer", {}))
    if "creator" in result:
        result["creator"] = _without_self(result["creator"])
    if "attendees" in result:
        result["attendees"] = [_marked(item, calendar_id) for item in result["attendees"]]
    if "created" in mine:
        result["created"] = mine["created"]
    return result


def _marked(attendee: dict[str, Any], calendar_id: str) -> dict[str, Any]:
    entry = _without_self(attendee)
    if _same(entry.get("email"), calendar_id):
        entry["self"] = True
    return entry


def _shared(resource: dict[str, Any], calendar_id: str) -> dict[str, Any]:
    """What only the organizer may change: everything but the copy's own fields."""
    shared = {k: v for k, v in resource.items() if k not in (*_PER_COPY, *_VOLATILE)}
    props = {k: v for k, v in shared.pop("extendedProperties", {}).items() if k != "private" and v}
    if props:
        shared["extendedProperties"] = props
    attendees = []
    for item in shared.pop("attendees", None) or []:
        entry = _without_self(item)
        if _same(entry.get("email"), calendar_id):
            entry = {k: v for k, v in entry.items() if k not in _OWN_ANSWER}
        attendees.append(entry)
    if attendees:
        shared["attendees"] = attendees
    return shared


def _moved(resource: dict[str, Any], destination_id: str) -> dict[str, Any]:
    moved = copy.deepcopy(resource)
    moved["organizer"] = {"email": destination_id, "self": True}
    if "attendees" in moved:
        moved["attendees"] = [_without_self(item) for item in moved["attendees"]]
    return moved


def _check_free(destination: CalendarRecord, event_id: str, source_id: str) -> None:
    """409 ``duplicate`` unless the id is free in the destination of a move: unused, a deleted
    event of its own, or its own copy of the very event moved (which the event takes over); a
    copy of another organizer's event is never overwritten."""
    taken = destination.events.get(event_id)
    if taken is None:
        return
    copied = is_copy(taken.resource, destination.id)
    if not (_same(_organizer(taken.resource), source_id) if copied else taken.cancelled):
        raise GoogleError(409, "duplicate", "The requested identifier already exists.")


def _exceptions(calendar: CalendarRecord, series_id: str) -> Iterable[EventRecord]:
    return [event for event in calendar.events.values() if event.resource.get("recurringEventId") == series_id]


def _instance_move() -> GoogleError:
    return bad_request("Cannot change the organizer of an instance.", reason="cannotChangeOrganizerOfInstance")
