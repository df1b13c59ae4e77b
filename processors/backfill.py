"""Backfill: a full resync of calendars, reconciling links with what Calendar holds now.

For each calendar: list every event (no sync token; ``window_days`` limits the listing to
events ending after now - N days), classify each against its link exactly as the processor
does, publish the same commands through the same publisher, update the links; then, on a full
(unwindowed) listing, delete the conferences of links whose events Calendar no longer shows
(reason ``reconciled``), including orphans: conferences the add-on made for an event that was
never saved, once their link is ``orphan_after_s`` old (``classify.sweepable``). Deletes are
confirmed and moves followed as the processor does (processors/commands.py), and a guest's
calendar never sweeps a conference it does not own: only owning links are ever its. The
listing's sync token is saved with compare-and-set, so incremental sync continues from here
(a lost CAS means a processor synced meanwhile: fine).

Resumable: after each page is published and linked, a checkpoint (calendar, next page token,
counts) is written atomically to a JSON file; a rerun skips finished calendars and resumes
the current one at its page. Rate-limited: at most ``requests_per_s`` Calendar listings per
second. ``dry_run`` decides and reports, and changes nothing anywhere.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from confsync.ports import CalendarClient, CalendarEvent, EventPage, Publisher, Store, SubjectClients, client_for
from confsync.retention import Retention
from confsync.rfc3339 import utc_now
from confsync.store import CalendarStatus
from processors.classify import DEFAULT_SOLUTION_NAMES, Delete, Skip, Update
from processors.commands import CommandSink, Moved, Outcome, Revive
from processors.sync import page_through

__all__ = ["Backfill", "Checkpoints", "Decided", "Summary"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Decided:
    """What a dry run would do for one event."""

    calendar_id: str
    event_id: str
    action: str  # update or delete
    why: str


@dataclass
class Summary:
    calendars: int = 0
    events_read: int = 0
    updates: int = 0
    deletes: int = 0
    unchanged: int = 0
    reconciled: int = 0
    orphans: int = 0  # of the deletes and reconciled: conferences never saved on their event
    moved: int = 0  # conferences that followed their event to another of the owner's calendars
    errors: int = 0
    decisions: list[Decided] = field(default_factory=list)  # dry runs only

    def add(self, other: Summary) -> None:
        for name in ("events_read", "updates", "deletes", "unchanged", "reconciled", "orphans", "moved", "errors"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.decisions += other.decisions

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k != "decisions"}

    def to_json(self, *, with_decisions: bool) -> dict[str, object]:
        """The counts, and with ``with_decisions`` each decision as an object."""
        if not with_decisions:
            return dict(self.counts())
        return {**self.counts(), "decisions": [asdict(decided) for decided in self.decisions]}


class Checkpoints:
    """Per calendar: the next page to read (or done) and the counts so far, in one JSON file."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._data: dict[str, dict[str, object]] = {}
        if path is not None and path.exists():
            self._data = json.loads(path.read_text(encoding="utf-8"))

    def get(self, calendar_id: str) -> dict[str, object]:
        return self._data.get(calendar_id, {})

    def put(self, calendar_id: str, *, page_token: str | None, done: bool, summary: Summary) -> None:
        self._data[calendar_id] = {"page_token": page_token, "done": done, "counts": summary.counts()}
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._data), encoding="utf-8")
        temporary.replace(self._path)  # atomic: a kill leaves the old or the new checkpoint


class _RateLimit:
    def __init__(self, per_s: float, sleep: Callable[[float], None]) -> None:
        self._interval = 1.0 / per_s if per_s > 0 else 0.0
        self._next = 0.0
        self._sleep = sleep

    def wait(self) -> None:
        now = time.monotonic()
        if now < self._next:
            self._sleep(self._next - now)
        self._next = max(now, self._next) + self._interval


@dataclass
class Backfill:
    store: Store
    calendar: CalendarClient
    publisher: Publisher
    commands_topic: str
    solution_names: frozenset[str] = DEFAULT_SOLUTION_NAMES
    checkpoints: Checkpoints = field(default_factory=lambda: Checkpoints(None))
    requests_per_s: float = 5.0
    page_size: int = 2500
    dry_run: bool = False
    clock: Callable[[], datetime] = utc_now
    calendar_for: SubjectClients | None = None  # a client per calendar subject
    orphan_after_s: float = 86400.0  # see classify.sweepable
    delete_grace_s: float = 0.0  # see processors/commands.py
    retention: Retention | None = None  # when links expire (confsync/retention.py); None: never
    sleep: Callable[[float], None] = time.sleep
    on_progress: Callable[[str, int], None] = lambda _calendar, _events: None

    def run(self, calendar_ids: list[str], *, window_days: int | None = None) -> Summary:
        total = Summary()
        limit = _RateLimit(self.requests_per_s, self.sleep)
        for calendar_id in calendar_ids:
            with structlog.contextvars.bound_contextvars(calendar_id=calendar_id):
                total.add(self._calendar(calendar_id, window_days, limit))
                total.calendars += 1
        log.info("backfill finished", **total.counts())
        return total

    def _calendar(self, calendar_id: str, window_days: int | None, limit: _RateLimit) -> Summary:
        checkpoint = self.checkpoints.get(calendar_id)
        summary = Summary(**checkpoint.get("counts", {})) if checkpoint else Summary()  # type: ignore[arg-type]
        if checkpoint.get("done"):
            log.info("calendar already backfilled; skipped")
            return summary
        state = self.store.get_calendar(calendar_id)
        calendar = client_for(state, self.calendar, self.calendar_for)
        commands = self.commands(calendar)
        version = state.token_version if state is not None else 0
        time_min = None if window_days is None else self.clock() - timedelta(days=window_days)
        resumed = checkpoint.get("page_token")

        def list_page(page_token: str | None) -> EventPage:
            limit.wait()
            return calendar.list_events(
                calendar_id, page_token=page_token, time_min=time_min, max_results=self.page_size
            )

        def on_page(page: EventPage) -> None:
            self._page(commands, calendar_id, page.events, summary)
            self.on_progress(calendar_id, len(page.events))
            if not self.dry_run:
                next_token = page.next_page_token
                self.checkpoints.put(calendar_id, page_token=next_token, done=next_token is None, summary=summary)

        listing = page_through(list_page, on_page, page_token=resumed if isinstance(resumed, str) else None)
        if window_days is None and resumed is None:  # a whole, uninterrupted listing
            self._reconcile(commands, calendar_id, listing.seen, summary)
        if not self.dry_run and listing.sync_token:
            self.store.save_sync_token(calendar_id, listing.sync_token, expected_version=version, at=self.clock())
        if not self.dry_run:
            self._reactivate(calendar_id)
        return summary

    def commands(self, calendar: CalendarClient) -> CommandSink:
        return CommandSink(
            self.store,
            self.publisher,
            self.commands_topic,
            self.solution_names,
            orphan_after_s=self.orphan_after_s,
            clock=self.clock,
            calendar=calendar,
            delete_grace_s=self.delete_grace_s,
            retention=self.retention,
        )

    def _page(
        self, commands: CommandSink, calendar_id: str, events: tuple[CalendarEvent, ...], summary: Summary
    ) -> None:
        summary.events_read += len(events)
        decided = commands.decide(calendar_id, events)
        for event_id, decision in decided:
            self._count(summary, calendar_id, event_id, decision)
        if not self.dry_run:
            commands.send(calendar_id, decided)

    def _count(self, summary: Summary, calendar_id: str, event_id: str, decision: Outcome) -> None:
        match decision:
            case Update():
                summary.updates += 1
            case Delete(orphan=orphan):
                summary.deletes += 1
                summary.orphans += orphan
            case Moved(update=update):
                summary.moved += 1
                summary.updates += update is not None
            case Skip() | Revive():
                summary.unchanged += 1
                return
        if self.dry_run:
            kind = "move" if isinstance(decision, Moved) else decision.kind.value
            summary.decisions.append(Decided(calendar_id, event_id, kind, decision.why))

    def _reconcile(self, commands: CommandSink, calendar_id: str, seen: set[str], summary: Summary) -> None:
        for link in commands.stale(calendar_id, seen):
            outcome = commands.leave(link)
            if isinstance(outcome, Moved):
                self._count(summary, calendar_id, link.event_id, outcome)
                if not self.dry_run:
                    commands.send(calendar_id, [(link.event_id, outcome)])
                continue
            if isinstance(outcome, Skip):
                continue
            orphan = link.last_fingerprint is None
            summary.reconciled += 1
            summary.orphans += orphan
            if self.dry_run:
                why = "never saved on its event" if orphan else "event no longer in Calendar"
                summary.decisions.append(Decided(calendar_id, link.event_id, "delete", why))
                continue
            commands.send(calendar_id, [(link.event_id, outcome)])
            if orphan:
                log.info("orphaned conference deleted", conference_id=link.conference_id, event_id=link.event_id)

    def _reactivate(self, calendar_id: str) -> None:
        """After a listing went through: a failed calendar is synced again."""
        state = self.store.get_calendar(calendar_id)
        if state is not None and state.status is CalendarStatus.FAILED:
            self.store.set_calendar_status(calendar_id, CalendarStatus.ACTIVE)
            log.info("failed calendar active again", previous_error=state.last_error)
