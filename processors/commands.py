"""Where the processor's decisions go: the outbox, the commands topic, then the links.

The one way worker.py (sync, sweep, calendar gone) and backfill.py send commands: a batch is
written to the store's outbox, published with ordering key = conference id, and only then
remembered in the events' links (an update links the conference, a delete marks the link
deleted). A crash before the links are written lists the same events again and makes the same
command ids; a publisher settles each outbox entry, and ingest/lag.py republishes what stays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from confsync.contracts import ConferenceCommand
from confsync.ports import Publisher, Store
from confsync.rfc3339 import utc_now
from confsync.store import Link, OutboxEntry
from processors.classify import Delete, Update

__all__ = ["CommandSink"]

log = structlog.get_logger(__name__)


@dataclass
class CommandSink:
    store: Store
    publisher: Publisher
    commands_topic: str
    republish_after_s: float = 60.0  # an unsettled command is republished after this (ingest/lag.py)
    clock: Callable[[], datetime] = utc_now

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
