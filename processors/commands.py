"""What the processor decides for a calendar's events, and where those decisions go: the
outbox, the commands topic, then the links.

The one way worker.py (sync, sweep) and backfill.py decide and send commands: ``decide``
classifies a page of events against their links, ``stale`` picks the links a full listing no
longer shows and ``leave`` decides what their going means, and ``send`` publishes. A batch is
written to the store's outbox, published with ordering key = conference id, and only then
remembered in the events' links (an update links the conference, a delete marks the link
deleted). A crash before the links are written lists the same events again and makes the same
command ids; a publisher settles each outbox entry, and ingest/lag.py republishes what stays.

Ownership (docs/ARCHITECTURE.md, "Identity and ownership"), with ``calendar`` (the calendar
owner's Calendar client) given:

- Only the owning link speaks: a copy of the meeting (a guest's, a shared calendar's) makes no
  command and is logged; an event that copied another event's conferenceData is a warning.
- A delete is confirmed first. The owning copy turned cancelled, lost the conference, or is
  missing from a full listing: ``events.get`` on its calendar, as its owner, says whether it
  is so (a 403/404 there is lost access, raised: the worker disconnects the calendar and
  deletes nothing; unless ``calendarList.get`` shows the owner still reads the calendar, and
  then the event is gone for good). A cancelled copy may have moved: the owner's calendars (those confsync
  knows, then their calendar list's writable ones) are asked for the event, organized there,
  with the conference. Found: the link follows (``Moved``): the new calendar is watched, and
  an update goes out only if what the provider is told changed. Not found: the delete waits
  ``delete_grace_s`` in the outbox (deferred; the link is ``LEAVING``) and goes out unless
  the event is seen again first (an undo, a move back): then the link lives again and the
  publisher drops the waiting delete.
- An event that arrives in another calendar of the same owner, organized there, with the
  conference of their event elsewhere (``Follow``): the link follows once the old copy is
  confirmed gone.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import structlog

from confsync.contracts import CommandReason, ConferenceCommand, ConferencePayload
from confsync.errors import AuthError, CalendarGone, PermanentError
from confsync.ports import CalendarClient, CalendarEvent, Publisher, Store
from confsync.retention import Retention
from confsync.rfc3339 import utc_now
from confsync.settings import Secret
from confsync.store import PENDING_RESOURCE_ID, ChannelRecord, Link, LinkState, OutboxEntry
from processors.classify import (
    A_COPY,
    COPIED,
    DEFAULT_SOLUTION_NAMES,
    NOT_LINKED,
    Decision,
    Delete,
    Elsewhere,
    Fold,
    Follow,
    Skip,
    Update,
    classify,
    delete_version,
    payload_of,
    sweepable,
)

__all__ = ["CommandSink", "Moved", "Outcome", "Revive"]

log = structlog.get_logger(__name__)

_MOVE_SEARCH_LIMIT = 25  # calendars asked for a cancelled owning event: a move is looked for, not hunted


@dataclass(frozen=True, slots=True, kw_only=True)
class Moved:
    """The owning event moved to another of its owner's calendars: the link follows it there.
    ``update``: what the provider must hear (None when nothing it is told changed)."""

    why: str
    source: Link
    to: Link
    update: Update | None
    payload: ConferencePayload  # the event's, at its new place (when the link there expires)


@dataclass(frozen=True, slots=True)
class Revive:
    """A leaving link whose event was seen again, unchanged: it lives again (its waiting delete
    is then dropped by the publisher)."""

    link: Link
    why: str = "seen again"


Outcome = Skip | Update | Delete | Moved | Revive  # what decide and leave hand to send (Skips are dropped)


@dataclass
class CommandSink:
    store: Store
    publisher: Publisher
    commands_topic: str
    solution_names: frozenset[str] = DEFAULT_SOLUTION_NAMES
    republish_after_s: float = 60.0  # an unsettled command is republished after this (ingest/lag.py)
    orphan_after_s: float = 86400.0  # an unconfirmed link this old, its event unlisted, is swept
    clock: Callable[[], datetime] = utc_now
    # The calendar owner's Calendar client: confirms deletes and finds moves. None: a listing's word is taken.
    calendar: CalendarClient | None = None
    delete_grace_s: float = 0.0  # a confirmed cancel's delete waits this long for the event to come back
    retention: Retention | None = None  # when links expire (confsync/retention.py); None: never
    _owners: dict[str, str | None] = field(default_factory=dict, init=False, repr=False)

    def decide(self, calendar_id: str, events: Iterable[CalendarEvent]) -> list[tuple[str, Outcome]]:
        """Each event's decision (skips too) against its link, as (event id, decision) pairs;
        deletes confirmed and moves followed when the sink has a Calendar client."""
        orphaned_before = self.orphaned_before()
        decided: list[tuple[str, Outcome | Fold]] = []
        page = tuple(events)
        links = self.store.get_links(calendar_id, [event.id for event in page])  # one read for the page
        for event in page:
            link = links.get(event.id)
            usable = link if link is not None and link.state is not LinkState.DELETED else None
            elsewhere = None if usable is not None else self._elsewhere(calendar_id, event)
            decision = classify(
                event, usable, self.solution_names, orphaned_before=orphaned_before, elsewhere=elsewhere
            )
            decided.append((event.id, self._resolve(calendar_id, event, usable, decision)))
        return self._folded(calendar_id, decided)

    def _elsewhere(self, calendar_id: str, event: CalendarEvent) -> Elsewhere | None:
        """The conference's owning link, if it is another (calendar, event) and not deleted."""
        conference_id = event.conference.conference_id if event.conference is not None else None
        if not conference_id:
            return None
        owning = self.store.link_for_conference(conference_id)
        if owning is None or owning.state is LinkState.DELETED:
            return None
        if owning.calendar_id == calendar_id and owning.event_id in (event.id, event.recurring_event_id):
            return None  # its own link, or its series': classify decides by them
        owner = self._owner(calendar_id)
        return Elsewhere(
            owning,
            organized_here=_same(event.organizer, calendar_id),
            same_owner=owner is not None and owner == self._owner(owning.calendar_id),
        )

    def _resolve(self, calendar_id: str, event: CalendarEvent, link: Link | None, decision: Decision) -> Outcome | Fold:
        """What classify decided, made good with what Calendar says now where it must be."""
        match decision:
            case Skip(why=why, conference_id=conference_id):
                self._noted(event, why, conference_id)
                if link is not None and link.state is LinkState.LEAVING and conference_id == link.conference_id:
                    return Revive(replace(link, state=LinkState.LIVE, last_event_updated=event.updated))
                return decision
            case Follow():
                return self._follow(calendar_id, event, decision)
            case Delete(orphan=False) if link is not None and self.calendar is not None:
                return self._confirm(self.calendar, calendar_id, event.id, link, decision)
        return decision

    @staticmethod
    def _noted(event: CalendarEvent, why: str, conference_id: str | None) -> None:
        """Log the skips someone should be able to count."""
        ids = {"event_id": event.id, "conference_id": conference_id}
        if why == COPIED:  # another event carrying this conference: someone may be trying on purpose
            log.warning("an event copied a conference linked elsewhere: no command", **ids)
        elif why == A_COPY:
            log.info("a copy of a meeting whose conference is linked elsewhere: no command", **ids)
        elif why == NOT_LINKED:
            log.info("our conference, but no owning link: no command", **ids)

    # -- a series' exceptions ---------------------------------------------------------------------

    def _folded(self, calendar_id: str, decided: list[tuple[str, Outcome | Fold]]) -> list[tuple[str, Outcome]]:
        """The page's occurrences folded into their series: each series whose exceptions changed
        gets one update carrying them all (its own, if the series itself changed too)."""
        folds: dict[str, list[Fold]] = {}
        result: list[tuple[str, Outcome]] = []
        for event_id, outcome in decided:
            if isinstance(outcome, Fold):
                folds.setdefault(outcome.series_id, []).append(outcome)
                result.append((event_id, Skip(outcome.why)))
            else:
                result.append((event_id, outcome))
        for series_id, series_folds in folds.items():
            self._fold(calendar_id, series_id, series_folds, result)
        return result

    def _fold(self, calendar_id: str, series_id: str, folds: list[Fold], result: list[tuple[str, Outcome]]) -> None:
        link = self.store.get_link(calendar_id, series_id)
        if link is None or link.state is LinkState.DELETED:
            return  # not a series of ours (or one with a conference per occurrence only)
        merged = {occurrence.key(): occurrence for occurrence in link.exceptions}
        for fold in folds:
            if fold.occurrence is None:
                merged.pop(fold.key, None)
            else:
                merged[fold.key] = fold.occurrence
        exceptions = tuple(merged[key] for key in sorted(merged))
        at = next((i for i, (event_id, _) in enumerate(result) if event_id == series_id), None)
        series = result[at][1] if at is not None else None
        if at is not None and isinstance(series, Update):  # the series changed too: one update carries both
            payload = replace(series.payload, exceptions=exceptions)
            latest = _latest(series.event_updated, *(fold.event_updated for fold in folds), _after(link))
            update = replace(series, payload=payload, fingerprint=payload.fingerprint(), event_updated=latest)
            result[at] = (series_id, update)
            return
        if exceptions == link.exceptions or isinstance(series, Delete | Moved) or self.calendar is None:
            return
        master = _event_or_none(self.calendar, calendar_id, series_id)
        if master is None:
            return  # the series itself is gone: its tombstone, or the next full listing, says so
        decision = classify(master, replace(link, exceptions=exceptions), self.solution_names)
        if not isinstance(decision, Update):
            return  # the series itself is gone or no longer ours: its own listing says so
        latest = _latest(decision.event_updated, *(fold.event_updated for fold in folds), _after(link))
        update = replace(decision, why="an occurrence was cancelled or moved", event_updated=latest)
        log.info(
            "series exceptions changed",
            event_id=series_id,
            conference_id=link.conference_id,
            exceptions=len(exceptions),
        )
        if at is None:
            result.append((series_id, update))
        else:
            result[at] = (series_id, update)

    # -- deletes confirmed, moves followed ------------------------------------------------------

    def _confirm(
        self, calendar: CalendarClient, calendar_id: str, event_id: str, link: Link, decision: Delete
    ) -> Outcome:
        """A delete of the owning copy, checked with Calendar as its owner before it goes out."""
        current = self._current(calendar, calendar_id, event_id)
        if current is not None and current.status != "cancelled":  # the listing was behind, or the conference is gone
            again = classify(current, link, self.solution_names, orphaned_before=self.orphaned_before())
            return again if not isinstance(again, Follow | Fold) else Skip("unchanged")
        return self._gone(calendar_id, link, decision)  # cancelled, or deleted for good

    @staticmethod
    def _current(
        calendar: CalendarClient, calendar_id: str, event_id: str, *, readable: bool = False
    ) -> CalendarEvent | None:
        """The event as Calendar has it now, or None when it is gone for good from a calendar its
        owner still reads (``readable``: a full listing of it just went through). A 403/404 from a
        calendar they can no longer read is lost access: raised (the worker disconnects the
        calendar; nothing is deleted)."""
        try:
            return calendar.get_event(calendar_id, event_id)
        except CalendarGone:
            if not readable and calendar.access_role(calendar_id) is None:
                raise
            return None
        except AuthError:
            raise
        except PermanentError:  # 410: deleted, and past what Calendar keeps of it
            return None

    def _gone(self, calendar_id: str, link: Link, decision: Delete) -> Delete | Moved:
        """The owning copy is gone from its calendar: moved to another of the owner's, or to
        be deleted (after the grace, if there is one)."""
        moved = self._find_moved(calendar_id, link)
        if moved is not None:
            return moved
        return replace(decision, deferred=True) if self.delete_grace_s > 0 else decision

    def _find_moved(self, calendar_id: str, link: Link) -> Moved | None:
        owner = self._owner(calendar_id)
        if owner is None or self.calendar is None:
            return None
        known = [state.calendar_id for state in self.store.calendars_of(owner)]
        try:
            listed = self.calendar.writable_calendars()
        except PermanentError as err:  # e.g. a grant from before confsync asked for the calendar list
            log.warning(
                "the owner's calendar list could not be read; looked only in calendars confsync knows", error=str(err)
            )
            listed = ()
        candidates = [c for c in dict.fromkeys([*known, *listed]) if c != calendar_id]
        for candidate in candidates[:_MOVE_SEARCH_LIMIT]:
            found = _event_or_none(self.calendar, candidate, link.event_id)
            if found is None or not _carries(found, link.conference_id) or not _same(found.organizer, candidate):
                continue  # not there, cancelled, another conference, or a copy of someone's meeting
            state = self.store.get_calendar(candidate)
            if state is not None and state.subject is not None and state.subject.lower() != owner:
                continue  # another user's calendar: they own what happens there
            moved = self._moved(link, candidate, found)
            if moved is not None:
                return moved
        return None

    def _follow(self, calendar_id: str, event: CalendarEvent, follow: Follow) -> Outcome:
        """The owner's event arrived here with the conference of their event elsewhere."""
        source = follow.source
        if source.state is LinkState.LIVE and self.calendar is not None:
            old = _event_or_none(self.calendar, source.calendar_id, source.event_id)
            if old is not None and _carries(old, source.conference_id):
                log.warning(
                    "an event carries the conference of its owner's live event elsewhere: no command",
                    event_id=event.id,
                    conference_id=source.conference_id,
                )
                return Skip(COPIED, conference_id=source.conference_id)
        return self._moved(source, calendar_id, event) or Skip("the event has no usable start and end")

    @staticmethod
    def _moved(source: Link, calendar_id: str, event: CalendarEvent) -> Moved | None:
        """The link following ``event`` to ``calendar_id``, a series' exceptions with it."""
        payload = payload_of(event, source.exceptions if event.recurrence else ())
        if payload is None:
            return None
        fingerprint = payload.fingerprint()
        to = Link(
            calendar_id,
            source.event_id,
            source.conference_id,
            fingerprint,
            event.updated,
            exceptions=payload.exceptions,
        )
        update = None
        if fingerprint != source.last_fingerprint:
            update = Update(
                why="moved",
                conference_id=source.conference_id,
                payload=payload,
                fingerprint=fingerprint,
                event_updated=event.updated,
            )
        return Moved(
            why="moved to another of the owner's calendars", source=source, to=to, update=update, payload=payload
        )

    def _owner(self, calendar_id: str) -> str | None:
        if calendar_id not in self._owners:
            state = self.store.get_calendar(calendar_id)
            self._owners[calendar_id] = state.subject.lower() if state is not None and state.subject else None
        return self._owners[calendar_id]

    def orphaned_before(self) -> datetime:
        """An unconfirmed link made at or before this is an orphan (classify.sweepable)."""
        return self.clock() - timedelta(seconds=self.orphan_after_s)

    def stale(self, calendar_id: str, seen: set[str]) -> list[Link]:
        """The live links a full listing (``seen``) did not show, that may be swept: a fresh
        unconfirmed link may await its event's save (classify.sweepable)."""
        orphaned_before = self.orphaned_before()
        return [link for link in self.store.live_links(calendar_id, excluding=seen) if sweepable(link, orphaned_before)]

    def leave(self, link: Link, reason: CommandReason = CommandReason.RECONCILED) -> Outcome:
        """What a live link whose event a full listing no longer shows comes to: with a Calendar
        client, confirmed gone (it may have moved, or be back); else a delete."""
        decision = Delete(
            why=reason.value,
            reason=reason,
            conference_id=link.conference_id,
            fingerprint=link.last_fingerprint or reason.value,
            event_updated=delete_version(None, link) or self.clock(),
        )
        if self.calendar is None or link.last_fingerprint is None:  # an orphan was never anywhere else
            return decision
        current = self._current(self.calendar, link.calendar_id, link.event_id, readable=True)
        if current is not None and current.status != "cancelled":
            return Skip("listed again since")  # the next listing decides for it
        return self._gone(link.calendar_id, link, decision)

    def delete_link(self, link: Link, reason: CommandReason = CommandReason.RECONCILED) -> None:
        """A live link whose event is gone: delete its conference (``leave``, then ``send``)."""
        outcome = self.leave(link, reason)
        if not isinstance(outcome, Skip):
            self.send(link.calendar_id, [(link.event_id, outcome)])

    def send(self, calendar_id: str, decided: Sequence[tuple[str, Outcome]]) -> None:
        """Publish the commands of (event id, decision) pairs as one batch, then remember them."""
        acting = [(event_id, decision) for event_id, decision in decided if not isinstance(decision, Skip)]
        for _, decision in acting:
            if isinstance(decision, Moved):  # before its update goes out: the publisher acts as the calendar's owner
                self._watched(decision.to.calendar_id, self._owner(decision.source.calendar_id))
        self._publish(calendar_id, acting)  # all published first, then remembered in links
        updated = [self._link(calendar_id, event_id, d) for event_id, d in acting if isinstance(d, Update)]
        self.store.upsert_links(updated)
        for event_id, decision in acting:
            if not isinstance(decision, Update):  # updates are remembered above, in one write
                self._remember(calendar_id, event_id, decision)

    def _publish(self, calendar_id: str, decided: Sequence[tuple[str, Update | Delete | Moved | Revive]]) -> None:
        now = self.clock()
        due = now + timedelta(seconds=self.republish_after_s)  # if no publisher settles it by then
        later = now + timedelta(seconds=self.delete_grace_s)
        entries: list[OutboxEntry] = []
        commands: list[tuple[ConferenceCommand, bytes]] = []  # each encoded once, for the outbox and the topic
        for event_id, decision in decided:
            command = self._command(calendar_id, event_id, decision)
            if command is None:
                continue
            if isinstance(decision, Delete) and decision.deferred:
                entries.append(
                    OutboxEntry(
                        command.command_id,
                        command.conference_id,
                        command.to_bytes(),
                        later,
                        deferred=True,
                        calendar_id=command.calendar_id,
                    )
                )
                log.info(
                    "delete deferred: the event may come back",
                    conference_id=command.conference_id,
                    command_id=command.command_id,
                    grace_s=self.delete_grace_s,
                )
                continue
            data = command.to_bytes()
            entries.append(
                OutboxEntry(command.command_id, command.conference_id, data, due, calendar_id=command.calendar_id)
            )
            commands.append((command, data))
        if not entries:
            return
        self.store.outbox_add(entries)
        if commands:
            self.publisher.publish_many(
                self.commands_topic, [(data, command.conference_id, {}) for command, data in commands]
            )
        for command, _ in commands:
            log.info(
                "command published",
                kind=command.kind.value,
                reason=command.reason.value,
                conference_id=command.conference_id,
                command_id=command.command_id,
            )

    def _link(self, calendar_id: str, event_id: str, decision: Update) -> Link:
        """The link an update's event keeps once its command is published."""
        return Link(
            calendar_id,
            event_id,
            decision.conference_id,
            decision.fingerprint,
            decision.event_updated,
            exceptions=decision.payload.exceptions,
            expires_at=self._expiry(decision.payload),
        )

    def _remember(self, calendar_id: str, event_id: str, decision: Delete | Moved | Revive) -> None:
        """Record a published decision other than an update in the event's link."""
        match decision:
            case Revive(link=link):
                self.store.upsert_link(link)
                log.info("event seen again; its conference stays", event_id=event_id, conference_id=link.conference_id)
            case Delete(deferred=True):
                leaving = self.store.get_link(calendar_id, event_id)
                # Only the live owning link leaves: one a move made elsewhere meanwhile stays deleted.
                if (
                    leaving is not None
                    and leaving.state is LinkState.LIVE
                    and leaving.conference_id == decision.conference_id
                ):
                    self.store.upsert_link(replace(leaving, state=LinkState.LEAVING))
            case Delete():
                self.store.mark_link_deleted(calendar_id, event_id, expires_at=self._expiry(None))
            case Moved(source=source, to=to, payload=payload):
                # first: the conference's owning link is the new one
                self.store.upsert_link(replace(to, expires_at=self._expiry(payload)))
                self.store.mark_link_deleted(source.calendar_id, source.event_id, expires_at=self._expiry(None))
                log.info(
                    "conference followed its event to another of the owner's calendars",
                    conference_id=to.conference_id,
                    event_id=to.event_id,
                    to_calendar=to.calendar_id,
                )

    def _expiry(self, payload: ConferencePayload | None) -> datetime | None:
        """When a link written now for ``payload`` (None: a deleted one) may be forgotten."""
        return None if self.retention is None else self.retention.expiry(payload, self.clock())

    def _watched(self, calendar_id: str, owner: str | None) -> None:
        """The calendar a conference moved to is confsync's, read as the owner, and watched: one
        with no live channel gets a due one, which the next channel renewal opens (ingest/channels.py)."""
        self.store.ensure_calendar(calendar_id, owner)
        if self.store.live_channels(calendar_id):
            return
        self.store.add_channel(
            ChannelRecord(
                channel_id=str(uuid.uuid4()),
                calendar_id=calendar_id,
                resource_id=PENDING_RESOURCE_ID,
                token=Secret(secrets.token_urlsafe(32)),
                expiration=self.clock(),
            )
        )

    def _command(
        self, calendar_id: str, event_id: str, decision: Update | Delete | Moved | Revive
    ) -> ConferenceCommand | None:
        if isinstance(decision, Revive):
            return None
        if isinstance(decision, Moved):
            if decision.update is None:
                return None
            return self._command(decision.to.calendar_id, event_id, decision.update)
        return ConferenceCommand.create(
            kind=decision.kind,
            conference_id=decision.conference_id,
            calendar_id=calendar_id,
            event_id=event_id,
            event_updated=decision.event_updated or self.clock(),
            reason=decision.reason,
            payload=decision.payload if isinstance(decision, Update) else None,
            fingerprint=decision.fingerprint,
        )


def _event_or_none(calendar: CalendarClient, calendar_id: str, event_id: str) -> CalendarEvent | None:
    """The event, or None when Calendar answers that it is not there or not readable (any
    permanent error about it); refused credentials are the calendar owner's, raised."""
    try:
        return calendar.get_event(calendar_id, event_id)
    except AuthError:
        raise
    except PermanentError:
        return None


def _after(link: Link) -> datetime | None:
    """Just after the version last sent for the link: a series' new exceptions are newer than it
    even when Calendar's tombstone of an occurrence carries no ``updated``."""
    return None if link.last_event_updated is None else link.last_event_updated + timedelta(microseconds=1)


def _latest(*moments: datetime | None) -> datetime | None:
    known = [moment for moment in moments if moment is not None]
    return max(known) if known else None


def _same(email: str | None, calendar_id: str) -> bool:
    return email is not None and email.lower() == calendar_id.lower()


def _carries(event: CalendarEvent, conference_id: str) -> bool:
    """The event is live and shows this conference."""
    conference = event.conference
    return event.status != "cancelled" and conference is not None and conference.conference_id == conference_id
