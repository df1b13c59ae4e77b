"""The Calendar sandbox's state and rules, with no HTTP in sight: one facade over its resources.

``CalendarModel`` is what the HTTP layer, the notifier and ``build_sandbox`` call. It composes
the modules that hold each resource's rules over one Store (sandbox/calendar/store.py):

- events.py: event writes and reads, recurring instances, the change log
  (event_rules.py: what makes a resource valid, patch merge, conferenceData; copies.py:
  attendees' copies of an event, and events.move);
- listing.py: events.list and events.instances, full and incremental (tokens.py: sync and
  page tokens);
- channels.py: watch channels and the notifications each change owes them;
- store.py: the records, the lock and the write-through to a Persistence (``--db``).

Every public method is thread-safe (one lock per model); a write commits to the Persistence
once it succeeded, and a failed one changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sandbox.calendar.access import Access, Role, User
from sandbox.calendar.channels import Channels, Notification
from sandbox.calendar.events import Events
from sandbox.calendar.listing import Listings, ListPage, ListQuery
from sandbox.calendar.store import Persistence, Store
from sandbox.clock import Clock
from sandbox.identity import Principal

__all__ = ["CalendarModel", "ListPage", "ListQuery", "Notification", "Persistence"]


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
        self._store = Store(clock, persistence)
        self._channels = Channels(self._store, allow_remote_webhooks=allow_remote_webhooks)
        self.access = Access()
        self._events = Events(self._store, self._channels, self.access.is_user)
        self._listings = Listings(self._store)

    @property
    def allow_remote_webhooks(self) -> bool:
        return self._channels.allow_remote_webhooks

    @allow_remote_webhooks.setter
    def allow_remote_webhooks(self, value: bool) -> None:
        self._channels.allow_remote_webhooks = value

    # -- calendars ---------------------------------------------------------------------------

    def resolve(self, calendar_id: str, user: str | None) -> str:
        """``primary`` is the caller's own calendar (the default owner without auth)."""
        return (user or self.default_owner) if calendar_id == "primary" else calendar_id

    def create_calendar(self, calendar_id: str, owner: str | None = None) -> bool:
        """Create a calendar if it does not exist; True if it was created."""
        with self._store.lock:
            if calendar_id in self._store.calendars:
                return False
            with self._store.writing():
                self._store.new_calendar(calendar_id, owner)
            return True

    def add_user(self, email: str, name: str = "") -> User:
        """A sandbox user, with their primary calendar (its id is their email)."""
        with self._store.writing():
            user = self.access.add_user(email, name)
            self._store.save_user(email, name)
            if email not in self._store.calendars:
                self._store.new_calendar(email, email)
            return user

    def invalidate_sync_tokens(self, calendar_id: str) -> None:
        with self._store.writing():
            self._listings.invalidate_sync_tokens(calendar_id)

    def reset(self) -> None:
        with self._store.lock:
            self._store.reset()
            self.access.clear()

    def load(
        self,
        meta: str | None,
        calendars: list[dict[str, Any]],
        events: list[tuple[Any, ...]],
        channels: list[dict[str, Any]],
    ) -> None:
        """Rebuild the state a Persistence saved (``--db``)."""
        self._store.load(meta, calendars, events, channels)

    # -- users and ACLs (sandbox/calendar/access.py) ---------------------------------------------

    def user(self, email: str) -> User | None:
        with self._store.lock:
            return self.access.users.get(email)

    def role(self, calendar_id: str, email: str) -> Role | None:
        """``email``'s role on the calendar; None if there is no such calendar."""
        with self._store.lock:
            calendar = self._store.calendars.get(calendar_id)
            return None if calendar is None else self.access.role(calendar_id, email, calendar.owner)

    def acl(self, calendar_id: str) -> list[tuple[str, Role]]:
        """The calendar's rules, its owner's first (404 if there is no such calendar)."""
        with self._store.lock:
            owner = self._store.calendar(calendar_id).owner.lower()
            rules = self.access.acl.get(calendar_id, {})
            return [(owner, Role.OWNER), *((email, rules[email]) for email in sorted(rules) if email != owner)]

    def grant(self, calendar_id: str, email: str, role: Role) -> None:
        with self._store.writing():
            self._store.calendar(calendar_id)
            self.access.grant(calendar_id, email, role)
            self._store.save_acl(calendar_id, email.lower(), role.wire)

    def revoke(self, calendar_id: str, email: str) -> bool:
        with self._store.writing():
            found = self.access.revoke(calendar_id, email)
            self._store.save_acl(calendar_id, email.lower(), None)
            return found

    def calendars_of(self, email: str) -> dict[str, Role]:
        """The calendars ``email`` owns or is shared, with its role on each (calendarList)."""
        with self._store.lock:
            mine = email.lower()
            owned = {cid: Role.OWNER for cid, cal in self._store.calendars.items() if cal.owner.lower() == mine}
            shared = self.access.shared_with(email)
            return {**{cid: role for cid, role in shared.items() if cid in self._store.calendars}, **owned}

    def load_access(self, users: list[tuple[str, str]], rules: list[tuple[str, str, str]]) -> None:
        """Rebuild the users and ACLs a Persistence saved (``--db``)."""
        with self._store.lock:
            for email, name in users:
                self.access.add_user(email, name)
            for calendar_id, email, role in rules:
                parsed = Role.parse(role)
                if parsed is not None:
                    self.access.grant(calendar_id, email, parsed)

    # -- events ------------------------------------------------------------------------------

    def insert(
        self, calendar_id: str, body: object, *, conference_data_version: int = 0
    ) -> tuple[dict[str, Any], list[Notification]]:
        with self._store.writing():
            return self._events.insert(calendar_id, body, conference_data_version)

    def insert_many(
        self, calendar_id: str, bodies: Sequence[object], *, conference_data_version: int = 0
    ) -> tuple[int, list[Notification]]:
        """Insert events all-or-nothing: every body is validated before any is stored."""
        with self._store.writing():
            return self._events.insert_many(calendar_id, bodies, conference_data_version)

    def patch(
        self, calendar_id: str, event_id: str, body: object, *, conference_data_version: int = 0
    ) -> tuple[dict[str, Any], list[Notification]]:
        with self._store.writing():
            return self._events.modify(calendar_id, event_id, body, conference_data_version, replace=False)

    def update(
        self, calendar_id: str, event_id: str, body: object, *, conference_data_version: int = 0
    ) -> tuple[dict[str, Any], list[Notification]]:
        with self._store.writing():
            return self._events.modify(calendar_id, event_id, body, conference_data_version, replace=True)

    def delete(self, calendar_id: str, event_id: str) -> list[Notification]:
        with self._store.writing():
            return self._events.delete(calendar_id, event_id)

    def move(self, calendar_id: str, event_id: str, destination: str) -> tuple[dict[str, Any], list[Notification]]:
        """events.move: the organizer's event to another calendar (sandbox/calendar/copies.py)."""
        with self._store.writing():
            return self._events.copies.move(calendar_id, event_id, destination)

    def get(self, calendar_id: str, event_id: str) -> dict[str, Any]:
        with self._store.lock:
            return self._events.get(calendar_id, event_id)

    def list_events(self, calendar_id: str, query: ListQuery) -> ListPage:
        with self._store.lock:
            return self._listings.list_events(calendar_id, query)

    def instances(self, calendar_id: str, event_id: str, query: ListQuery) -> ListPage:
        with self._store.lock:
            return self._listings.instances(calendar_id, event_id, query)

    # -- watch channels ----------------------------------------------------------------------

    def watch(
        self, calendar_id: str, body: object, *, base_url: str, principal: Principal | None = None
    ) -> tuple[dict[str, Any], list[Notification]]:
        """Open a channel; with auth on, only ``principal`` may stop it."""
        who = None if principal is None else principal.describe()
        with self._store.writing():
            return self._channels.watch(calendar_id, body, base_url=base_url, principal=who)

    def stop_channel(self, body: object, principal: Principal | None = None) -> None:
        """channels.stop: 404 unless ``principal`` opened the channel (anyone without auth). A
        channel opened without auth, or saved before channels recorded their principal, may be
        stopped by a principal that may read its calendar."""

        def may_read(calendar_id: str) -> bool:
            calendar = self._store.calendars.get(calendar_id)
            return (
                principal is not None
                and calendar is not None
                and self.access.role(calendar_id, principal.email, calendar.owner) >= Role.READER
            )

        with self._store.writing():
            self._channels.stop(body, None if principal is None else principal.describe(), may_stop_unowned=may_read)

    def is_deliverable(self, channel_id: str) -> bool:
        """Whether a channel still takes deliveries (live and not expired)."""
        with self._store.lock:
            return self._channels.is_deliverable(channel_id)

    def record_delivery(self, channel_id: str, message_number: int, **outcome: Any) -> None:
        with self._store.lock:
            self._channels.record_delivery(channel_id, message_number, outcome)

    def channels(self) -> list[dict[str, Any]]:
        with self._store.lock:
            return self._channels.describe()

    def drop_channel(self, channel_id: str) -> bool:
        """A channel that stays live on paper and delivers nothing (False: no such channel)."""
        with self._store.lock:
            return self._channels.drop(channel_id)
