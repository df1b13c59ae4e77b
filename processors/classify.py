"""What the conferencing service must do about one Calendar event: a pure function.

``classify(event, link, solution_names, orphaned_before=..., elsewhere=...)`` looks at nothing
but its arguments (docs/ARCHITECTURE.md, "Semantics"). ``link`` is this (calendar, event)'s
link, unless deleted; ``elsewhere`` is the conference's owning link when that is another
(calendar, event), with what the caller knows about it (``Elsewhere``):

==============================================  ==========================================
event                                           decision
==============================================  ==========================================
ours, live, fingerprint differs from the link   Update (changed)
ours, live, fingerprint equal to the link's     Skip (unchanged, or an echo of our write)
ours, live, link leaving (its delete waits)     as with a live link: the event was seen
                                                again (an undo), the link lives again
ours, not linked here nor anywhere              Skip: only the add-on's link speaks for a
                                                conference (NOT_LINKED)
conference linked to another event id           Skip: this event copied its conferenceData
                                                (COPIED; the caller warns)
conference linked to this event id in another   Skip: a guest's copy, or a shared calendar's
calendar; the organizer is elsewhere            (A_COPY), cancelled or not
conference linked to this event id in another   Follow: the event was moved here; the
calendar of the same owner, organized here      caller checks the old copy is gone, then the
                                                link follows
... organized here, another owner's calendar    Skip: moved out of its owner's calendars
cancelled single event or series, with link     Delete (cancelled); the caller confirms it
                                                with Calendar (it may have moved)
cancelled, link leaving                         Skip: its delete is already waiting
instance of a series without its own link,     Fold: the series' exceptions change (the
cancelled, or live at another time than its     caller merges it into the series' link and
rule gives it (moved), or live in its place     sends the series' payload with them, when
again                                           they changed)
link, but the event no longer carries our       Delete (conference_removed): removed,
conference                                      switched to Google Meet, or replaced by
                                                another of ours (copied conferenceData: that
                                                one is not this event's to change)
link the add-on made, not yet seen on the       Skip: Calendar has not saved the event
event, which is no newer than the add-on saw    with it yet (the add-on answers first);
                                                Delete (reconciled) once the link was made
                                                before ``orphaned_before``: the edit was
                                                discarded, the conference is an orphan
                                                (``Delete.orphan``)
not ours, no link                               Skip
==============================================  ==========================================

A conference belongs to whoever the add-on made it for, and its owning link is the one
(calendar, event) the add-on was called for (docs/ARCHITECTURE.md, "Identity and ownership"):
Calendar shows the same conference in every guest's copy of the meeting and in every calendar
the meeting is shared with, and none of those may change or delete it.

The add-on creates the conference and its link before Calendar saves the event with it, so
a listing in between sees a linked event without our conference. The link keeps the event
version the add-on saw (``last_event_updated``; None for an event that did not exist yet):
a version no newer than that is the event before the save, not a removal. Any newer version
without our conference is a removal, confirmed link or not. A conference whose event is never
saved, because the user discarded the edit, is an orphan: a full listing (410 recovery or
backfill) deletes it once its link is ``orphan_after_s`` old (``sweepable``), and
never sooner, since the user may still be editing.

"Ours" means conferenceData.conferenceSolution.key.type is ``addOn`` with one of the
configured solution names, or the conference id is the one the link recorded. The
fingerprint hashes only what the conferencing service cares about (``ConferencePayload``):
attendees are sorted, so Calendar reordering them is not a change; a change to anything
else (description, reminders, colour) is no change at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

from confsync.contracts import (
    CommandKind,
    CommandReason,
    ConferencePayload,
    EventTime,
    Occurrence,
    OccurrenceStatus,
)
from confsync.errors import InvalidMessage
from confsync.ports import CalendarEvent
from confsync.rfc3339 import parse_rfc3339
from confsync.store import Link, LinkState

__all__ = [
    "A_COPY",
    "COPIED",
    "DEFAULT_SOLUTION_NAMES",
    "NEVER_SAVED",
    "NOT_LINKED",
    "Decision",
    "Delete",
    "Elsewhere",
    "Fold",
    "Follow",
    "Skip",
    "Update",
    "classify",
    "delete_version",
    "exception_of",
    "payload_of",
    "sweepable",
]

DEFAULT_SOLUTION_NAMES = frozenset({"My Web Conference", "My Recorded Web Conference"})


@dataclass(frozen=True, slots=True)
class Skip:
    """Nothing for the conferencing service to do."""

    why: str  # a short human reason, for logs and `backfill --dry-run`
    conference_id: str | None = None
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Update:
    """Tell the conferencing service the event's new state."""

    kind: ClassVar[CommandKind] = CommandKind.UPDATE
    why: str
    conference_id: str
    payload: ConferencePayload
    fingerprint: str
    event_updated: datetime | None
    reason: CommandReason = CommandReason.CHANGED


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete:
    """Delete the linked conference."""

    kind: ClassVar[CommandKind] = CommandKind.DELETE
    why: str
    reason: CommandReason
    conference_id: str
    fingerprint: str
    event_updated: datetime | None
    orphan: bool = False  # the add-on's conference was never saved on its event
    deferred: bool = False  # goes out after the grace unless the event is seen again (processors/commands.py)


@dataclass(frozen=True, slots=True, kw_only=True)
class Follow:
    """The owning event may have moved here from ``source``'s calendar: once the copy there is
    confirmed gone, the link follows (``payload`` and ``fingerprint`` are the event here)."""

    why: str
    conference_id: str
    source: Link
    payload: ConferencePayload
    fingerprint: str
    event_updated: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fold:
    """An occurrence of the series ``series_id`` without a conference of its own: its place
    among the series' exceptions (``occurrence`` None: where the rule puts it, so none)."""

    why: str
    series_id: str
    key: str  # the occurrence's original start (Occurrence.key)
    occurrence: Occurrence | None
    event_updated: datetime | None


@dataclass(frozen=True, slots=True)
class Elsewhere:
    """The conference's owning link, when it is another (calendar, event) than the one classified."""

    link: Link
    organized_here: bool  # the event's organizer is the calendar classified: not an attendee's copy
    same_owner: bool  # that calendar and the linked one belong to the same user


Decision = Skip | Update | Delete | Follow | Fold


NEVER_SAVED = "the add-on's conference was never saved on the event"
NOT_LINKED = "no owning link: the add-on did not make this conference for this event"
COPIED = "an event that copied the conferenceData of another event"
A_COPY = "a copy of a meeting whose conference another calendar owns"


def classify(  # noqa: PLR0911 - one return per row of the decision table
    event: CalendarEvent,
    link: Link | None,
    solution_names: frozenset[str] = DEFAULT_SOLUTION_NAMES,
    *,
    orphaned_before: datetime | None = None,
    elsewhere: Elsewhere | None = None,
) -> Decision:
    """The decision for one event; never raises, whatever shape the event has.

    ``orphaned_before``: an unconfirmed link made at or before this is an orphan (``sweepable``
    decides the same for links whose event a full listing does not show at all)."""
    live_link = link if link is not None and link.state is not LinkState.DELETED else None
    if live_link is None and elsewhere is not None:
        return _elsewhere(event, elsewhere)
    if event.status == "cancelled":
        return _cancelled(event, live_link)
    ours = _our_conference_id(event, live_link, solution_names)
    if live_link is not None and ours is not None and ours != live_link.conference_id:
        ours = None  # another conference of ours copied onto it: the linked one is gone, the other not its to change
    if ours is None:
        if live_link is not None and _not_saved_yet(event, live_link):
            if orphaned_before is None or not _made_by(live_link, orphaned_before):
                return Skip("the add-on's conference is not saved on the event yet")
            return Delete(
                why=NEVER_SAVED,
                reason=CommandReason.RECONCILED,
                conference_id=live_link.conference_id,
                fingerprint="orphan",
                event_updated=delete_version(event.updated, live_link),
                orphan=True,
            )
        if live_link is not None:
            return Delete(
                why="the event no longer carries our conference",
                reason=CommandReason.CONFERENCE_REMOVED,
                conference_id=live_link.conference_id,
                fingerprint=live_link.last_fingerprint or "removed",
                event_updated=delete_version(event.updated, live_link),
            )
        return Skip("not our conference")
    if event.recurring_event_id is not None and live_link is None:
        return _fold(event)
    if live_link is None:
        return Skip(NOT_LINKED, conference_id=ours)
    payload = payload_of(event, live_link.exceptions if event.recurrence else ())
    if payload is None:
        return Skip("the event has no usable start and end")
    fingerprint = payload.fingerprint()
    if live_link.conference_id == ours and live_link.last_fingerprint == fingerprint:
        return Skip("unchanged", conference_id=ours, fingerprint=fingerprint)
    return Update(
        why="changed",
        conference_id=ours,
        payload=payload,
        fingerprint=fingerprint,
        event_updated=event.updated,
    )


def _not_saved_yet(event: CalendarEvent, link: Link) -> bool:
    """An unconfirmed link (the add-on made it; no listing has shown the conference on the
    event yet) and a version of the event no newer than the one the add-on saw."""
    if link.last_fingerprint is not None or link.last_event_updated is None:
        return False
    return event.updated is None or event.updated <= link.last_event_updated


def _fold(event: CalendarEvent) -> Decision:
    """An occurrence without a conference of its own, as the series' exceptions see it."""
    series_id, original = event.recurring_event_id, event.original_start_time
    if series_id is None or original is None:
        return Skip("an instance with no original start")
    occurrence = exception_of(event)
    return Fold(
        why="an occurrence " + (occurrence.status.value if occurrence else "in its place"),
        series_id=series_id,
        key=original.date_time or original.date or "",
        occurrence=occurrence,
        event_updated=event.updated,
    )


def exception_of(event: CalendarEvent) -> Occurrence | None:
    """An instance as an exception of its series: cancelled, moved (start or end not where the
    rule puts it), or None (in its place, or not an instance at all)."""
    original = event.original_start_time
    if event.recurring_event_id is None or original is None:
        return None
    if event.status == "cancelled":
        return Occurrence(original, OccurrenceStatus.CANCELLED)
    if event.start is None or event.end is None or _same_moment(event.start, original):
        return None  # unmoved (a changed title is not the service's business) or unreadable
    return Occurrence(original, OccurrenceStatus.MOVED, event.start, event.end)


def _same_moment(a: EventTime, b: EventTime) -> bool:
    if a.date is not None or b.date is not None:
        return a.date == b.date
    try:
        return parse_rfc3339(a.date_time or "") == parse_rfc3339(b.date_time or "")
    except ValueError:
        return a.date_time == b.date_time


def _elsewhere(event: CalendarEvent, elsewhere: Elsewhere) -> Decision:
    """An event showing a conference whose owning link is another (calendar, event)."""
    owning = elsewhere.link
    if owning.event_id == event.recurring_event_id:  # an occurrence of that series, in another calendar
        return Skip(A_COPY, conference_id=owning.conference_id)
    if owning.event_id != event.id:
        return Skip(COPIED, conference_id=owning.conference_id)
    if not elsewhere.organized_here or event.status == "cancelled":
        return Skip(A_COPY, conference_id=owning.conference_id)
    if not elsewhere.same_owner:
        return Skip("moved out of its owner's calendars", conference_id=owning.conference_id)
    payload = payload_of(event)
    if payload is None:
        return Skip("the event has no usable start and end")
    return Follow(
        why="moved here from another of the owner's calendars",
        conference_id=owning.conference_id,
        source=owning,
        payload=payload,
        fingerprint=payload.fingerprint(),
        event_updated=event.updated,
    )


def _cancelled(event: CalendarEvent, link: Link | None) -> Decision:
    if link is None:
        if event.recurring_event_id is not None:
            return _fold(event)
        return Skip("cancelled, and not linked to a conference")
    if link.state is LinkState.LEAVING:
        return Skip("cancelled; its delete is already waiting out the grace")
    return Delete(
        why="cancelled",
        reason=CommandReason.CANCELLED,
        conference_id=link.conference_id,
        fingerprint=link.last_fingerprint or "cancelled",
        event_updated=delete_version(event.updated, link),
    )


def sweepable(link: Link, orphaned_before: datetime) -> bool:
    """May a full listing that did not show ``link``'s event delete its conference?

    A confirmed link (a listing showed our conference on the event): yes, the event is gone.
    An unconfirmed one (the add-on made it; no listing has shown the event with it yet): only
    if it was made at or before ``orphaned_before`` (now minus the grace). Sooner, the user
    may still be editing the event; with no age known at all, never."""
    return link.last_fingerprint is not None or _made_by(link, orphaned_before)


def _made_by(link: Link, moment: datetime) -> bool:
    """The link existed at ``moment``, by ``created_at`` (or, for links older than that
    field, the event version the add-on saw); False when neither is known."""
    made = link.created_at or link.last_event_updated
    return made is not None and made <= moment


def delete_version(updated: datetime | None, link: Link) -> datetime | None:
    """The version a delete command carries: the event's ``updated``, or, when Calendar leaves
    it out (a cancelled event's tombstone need only carry its id), one microsecond after the
    last version published for the link. Never the clock: every copy of one delete (a calendar
    listed twice, a sweep repeated) must carry the same version, so publishers see duplicates."""
    if updated is not None:
        return updated
    if link.last_event_updated is not None:
        return link.last_event_updated + timedelta(microseconds=1)
    return link.created_at  # an orphan whose event never existed: its version is its birth


def _our_conference_id(event: CalendarEvent, link: Link | None, solution_names: frozenset[str]) -> str | None:
    conference = event.conference
    if conference is None or not conference.conference_id:
        return None
    if link is not None and conference.conference_id == link.conference_id:
        return conference.conference_id
    if conference.solution_type == "addOn" and conference.solution_name in solution_names:
        return conference.conference_id
    return None


def payload_of(event: CalendarEvent, exceptions: tuple[Occurrence, ...] = ()) -> ConferencePayload | None:
    """What the conferencing service is told about an event (None without start and end), with
    its series' exceptions when it is a series."""
    if event.start is None or event.end is None:
        return None
    try:
        return ConferencePayload(
            start=event.start,
            end=event.end,
            summary=event.summary,
            attendees=tuple(sorted(set(event.attendees))),
            organizer=event.organizer,
            recurrence=event.recurrence,
            html_link=event.html_link,
            exceptions=exceptions,
        )
    except InvalidMessage:
        return None
