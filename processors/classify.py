"""What the conferencing service must do about one Calendar event: a pure function.

``classify(event, link, solution_names, orphaned_before=...)`` looks at nothing but its
arguments (docs/ARCHITECTURE.md, "Semantics"):

==============================================  ==========================================
event                                           decision
==============================================  ==========================================
ours, live, fingerprint differs from the link   Update (changed)
ours, live, no link yet                         Update (changed); the worker links it
ours, live, fingerprint equal to the link's     Skip (unchanged, or an echo of our write)
cancelled single event or series, with link     Delete (cancelled)
cancelled instance of a series                  Skip unless this instance has its own
                                                link: the series' conference stays
link, but the event no longer carries our       Delete (conference_removed): removed, or
conference                                      switched to Google Meet
link the add-on made, not yet seen on the       Skip: Calendar has not saved the event
event, which is no newer than the add-on saw    with it yet (the add-on answers first);
                                                Delete (reconciled) once the link was made
                                                before ``orphaned_before``: the edit was
                                                discarded, the conference is an orphan
                                                (``Delete.orphan``)
live instance of a series without its own link  Skip: the series' conference speaks for it
not ours, no link                               Skip
==============================================  ==========================================

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

from confsync.contracts import CommandKind, CommandReason, ConferencePayload
from confsync.errors import InvalidMessage
from confsync.ports import CalendarEvent
from confsync.store import Link, LinkState

__all__ = [
    "DEFAULT_SOLUTION_NAMES",
    "NEVER_SAVED",
    "Decision",
    "Delete",
    "Skip",
    "Update",
    "classify",
    "delete_version",
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


Decision = Skip | Update | Delete


NEVER_SAVED = "the add-on's conference was never saved on the event"


def classify(  # noqa: PLR0911 - one return per row of the decision table
    event: CalendarEvent,
    link: Link | None,
    solution_names: frozenset[str] = DEFAULT_SOLUTION_NAMES,
    *,
    orphaned_before: datetime | None = None,
) -> Decision:
    """The decision for one event; never raises, whatever shape the event has.

    ``orphaned_before``: an unconfirmed link made at or before this is an orphan (``sweepable``
    decides the same for links whose event a full listing does not show at all)."""
    live_link = link if link is not None and link.state is LinkState.LIVE else None
    if event.status == "cancelled":
        return _cancelled(event, live_link)
    ours = _our_conference_id(event, live_link, solution_names)
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
        return Skip("an instance; the series' conference speaks for it")
    payload = payload_of(event)
    if payload is None:
        return Skip("the event has no usable start and end")
    fingerprint = payload.fingerprint()
    if live_link is not None and live_link.conference_id == ours and live_link.last_fingerprint == fingerprint:
        return Skip("unchanged", conference_id=ours, fingerprint=fingerprint)
    return Update(
        why="changed" if live_link is not None else "ours, not linked yet",
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


def _cancelled(event: CalendarEvent, link: Link | None) -> Decision:
    if link is None:
        if event.recurring_event_id is not None:
            return Skip("a cancelled instance; the series keeps its conference")
        return Skip("cancelled, and not linked to a conference")
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


def payload_of(event: CalendarEvent) -> ConferencePayload | None:
    """What the conferencing service is told about an event (None without start and end)."""
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
        )
    except InvalidMessage:
        return None
