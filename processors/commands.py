"""What the processor decides for a calendar's events, and where those decisions go: the
outbox, the commands topic, then the links.

The one way worker.py (sync, sweep, calendar gone) and backfill.py decide and send commands:
``decide`` classifies a page of events against their links, ``stale`` picks the links a full
listing no longer shows, and ``send`` publishes. A batch is
written to the store's outbox, published with ordering key = conference id, and only then
remembered in the events' links (an update links the conference, a delete marks the link
deleted). A crash before the links are written lists the same events again and makes the same
command ids; a publisher settles each outbox entry, and ingest/lag.py republishes what stays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from confsync.contracts import CommandReason, ConferenceCommand
from confsync.ports import CalendarEvent, Publisher, Store
from confsync.rfc3339 import utc_now
from confsync.store import Link, LinkState, OutboxEntry
from processors.classify import (
    DEFAULT_SOLUTION_NAMES,
    Decision,
    Delete,
    Skip,
    Update,
    classify,
    delete_version,
    sweepable,
)

__all__ = ["CommandSink"]

log = structlog.get_logger(__name__)


@dataclass
class CommandSink:
    store: Store
    publisher: Publisher
    commands_topic: str
    solution_names: frozenset[str] = DEFAULT_SOLUTION_NAMES
    republish_after_s: float = 60.0  # an unsettled command is republished after this (ingest/lag.py)
    orphan_after_s: float = 86400.0  # an unconfirmed link this old, its event unlisted, is swept
    clock: Callable[[], datetime] = utc_now

    def decide(self, calendar_id: str, events: Iterable[CalendarEvent]) -> list[tuple[str, Decision]]:
        """Each event's decision (skips too) against its link, as (event id, decision) pairs."""
        orphaned_before = self.orphaned_before()
        decided: list[tuple[str, Decision]] = []
        for event in events:
            link = self.store.get_link(calendar_id, event.id)
            copy = self._copy_of_linked(calendar_id, event) if link is None else None
            if copy is not None:
                decided.append((event.id, copy))
                continue
            decided.append((event.id, classify(event, link, self.solution_names, orphaned_before=orphaned_before)))
        return decided

    def _copy_of_linked(self, calendar_id: str, event: CalendarEvent) -> Skip | None:
        """A Skip for an unlinked event showing a conference linked to another event or calendar:
        a guest's copy, a shared calendar's, or an event that copied its conferenceData. Only the
        linked event speaks for the conference (its owner's, in their vendor account); a copy
        acting with its own calendar owner's token would be refused, and its delete recorded as
        done would make the owner's real delete stale."""
        conference_id = event.conference.conference_id if event.conference is not None else None
        if not conference_id:
            return None
        owning = self.store.link_for_conference(conference_id)
        if owning is None or owning.state is not LinkState.LIVE:
            return None
        # Google gives a meeting's copies the event's id: another id carrying the conference is an
        # event that copied its conferenceData, which someone may be trying on purpose.
        copied = owning.event_id != event.id
        (log.warning if copied else log.info)(
            "an event copied a conference linked elsewhere: no command"
            if copied
            else "a copy of a meeting whose conference is linked elsewhere: no command",
            event_id=event.id,
            conference_id=conference_id,
            linked_calendar=owning.calendar_id if owning.calendar_id != calendar_id else "this",
        )
        return Skip("a copy of a conference linked to another event")

    def orphaned_before(self) -> datetime:
        """An unconfirmed link made at or before this is an orphan (classify.sweepable)."""
        return self.clock() - timedelta(seconds=self.orphan_after_s)

    def stale(self, calendar_id: str, seen: set[str]) -> list[Link]:
        """The live links a full listing (``seen``) did not show, that may be swept: a fresh
        unconfirmed link may await its event's save (classify.sweepable)."""
        orphaned_before = self.orphaned_before()
        return [
            link
            for link in self.store.live_links(calendar_id)
            if link.event_id not in seen and sweepable(link, orphaned_before)
        ]

    def delete_link(self, link: Link, reason: CommandReason = CommandReason.RECONCILED) -> None:
        """Delete a linked conference (publish the command, then mark the link deleted)."""
        decision = Delete(
            why=reason.value,
            reason=reason,
            conference_id=link.conference_id,
            fingerprint=link.last_fingerprint or reason.value,
            event_updated=delete_version(None, link) or self.clock(),
        )
        self.send(link.calendar_id, [(link.event_id, decision)])

    def send(self, calendar_id: str, decided: Sequence[tuple[str, Update | Delete]]) -> None:
        """Publish the commands of (event id, decision) pairs as one batch, then remember them."""
        self._publish(calendar_id, decided)  # all published first, then remembered in links
        for event_id, decision in decided:
            self._remember(calendar_id, event_id, decision)

    def _publish(self, calendar_id: str, decided: Sequence[tuple[str, Update | Delete]]) -> None:
        commands = [self._command(calendar_id, event_id, decision) for event_id, decision in decided]
        if not commands:
            return
        due = self.clock() + timedelta(seconds=self.republish_after_s)  # if no publisher settles it by then
        self.store.outbox_add([OutboxEntry(c.command_id, c.conference_id, c.to_bytes(), due) for c in commands])
        self.publisher.publish_many(
            self.commands_topic, [(command.to_bytes(), command.conference_id, {}) for command in commands]
        )
        for command in commands:
            log.info(
                "command published",
                kind=command.kind.value,
                reason=command.reason.value,
                conference_id=command.conference_id,
                command_id=command.command_id,
            )

    def _remember(self, calendar_id: str, event_id: str, decision: Update | Delete) -> None:
        """Record a published decision in the event's link."""
        match decision:
            case Delete():
                self.store.mark_link_deleted(calendar_id, event_id)
            case Update():
                self.store.upsert_link(
                    Link(calendar_id, event_id, decision.conference_id, decision.fingerprint, decision.event_updated)
                )

    def _command(self, calendar_id: str, event_id: str, decision: Update | Delete) -> ConferenceCommand:
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
