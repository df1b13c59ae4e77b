"""Backfill: a full resync of calendars, reconciling links with what Calendar holds now.

For each calendar: list every event (no sync token; ``window_days`` limits the listing to
events ending after now - N days), classify each against its link exactly as the processor
does, publish the same commands through the same publisher, update the links; then, on a full
(unwindowed) listing, delete the conferences of links whose events Calendar no longer shows
(reason ``reconciled``), including orphans: conferences the add-on made for an event that was
never saved, once their link is ``orphan_after_s`` old (``classify.sweepable``). The
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

from confsync.ports import CalendarClient, CalendarEvent, Publisher, Store
from confsync.rfc3339 import utc_now
from processors.classify import DEFAULT_SOLUTION_NAMES, Delete, Skip, Update, classify, sweepable
from processors.worker import CalendarWorker

__all__ = ["Backfill", "Checkpoints", "Summary"]

log = structlog.get_logger(__name__)


@dataclass
class Summary:
    calendars: int = 0
    events_read: int = 0
    updates: int = 0
    deletes: int = 0
    unchanged: int = 0
    reconciled: int = 0
    orphans: int = 0  # of the deletes and reconciled: conferences never saved on their event
    errors: int = 0
    decisions: list[dict[str, str]] = field(default_factory=list)  # dry runs only

    def add(self, other: Summary) -> None:
        for name in ("events_read", "updates", "deletes", "unchanged", "reconciled", "orphans", "errors"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.decisions += other.decisions


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
        counts = {k: v for k, v in asdict(summary).items() if k != "decisions"}
        self._data[calendar_id] = {"page_token": page_token, "done": done, "counts": counts}
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
    calendar_for: Callable[[str | None], CalendarClient] | None = None  # a client per calendar subject
    orphan_after_s: float = 86400.0  # see classify.sweepable
    sleep: Callable[[float], None] = time.sleep
    on_progress: Callable[[str, int], None] = lambda _calendar, _events: None

    def run(self, calendar_ids: list[str], *, window_days: int | None = None) -> Summary:
        total = Summary()
        limit = _RateLimit(self.requests_per_s, self.sleep)
        for calendar_id in calendar_ids:
            with structlog.contextvars.bound_contextvars(calendar_id=calendar_id):
                total.add(self._calendar(calendar_id, window_days, limit))
                total.calendars += 1
        log.info("backfill finished", **{k: v for k, v in asdict(total).items() if k != "decisions"})
        return total

    def _calendar(self, calendar_id: str, window_days: int | None, limit: _RateLimit) -> Summary:
        checkpoint = self.checkpoints.get(calendar_id)
        summary = Summary(**checkpoint.get("counts", {})) if checkpoint else Summary()  # type: ignore[arg-type]
        if checkpoint.get("done"):
            log.info("calendar already backfilled; skipped")
            return summary
        state = self.store.get_calendar(calendar_id)
        subject = state.subject if state is not None else None
        calendar = self.calendar if self.calendar_for is None else self.calendar_for(subject)
        worker = CalendarWorker(
            self.store,
            calendar,
            self.publisher,
            self.commands_topic,
            self.solution_names,
            clock=self.clock,
            orphan_after_s=self.orphan_after_s,
        )
        version = state.token_version if state is not None else 0
        time_min = None if window_days is None else self.clock() - timedelta(days=window_days)
        resumed = checkpoint.get("page_token")
        page_token: str | None = resumed if isinstance(resumed, str) else None
        seen: set[str] = set()
        while True:
            limit.wait()
            page = calendar.list_events(
                calendar_id, page_token=page_token, time_min=time_min, max_results=self.page_size
            )
            self._page(worker, calendar_id, page.events, summary)
            seen.update(event.id for event in page.events)
            self.on_progress(calendar_id, len(page.events))
            page_token = page.next_page_token
            if not self.dry_run:
                self.checkpoints.put(calendar_id, page_token=page_token, done=page_token is None, summary=summary)
            if page_token is None:
                break
        if window_days is None and checkpoint.get("page_token") is None:  # a whole, uninterrupted listing
            self._reconcile(worker, calendar_id, seen, summary)
        if not self.dry_run and page.next_sync_token:
            self.store.save_sync_token(calendar_id, page.next_sync_token, expected_version=version, at=self.clock())
        if not self.dry_run:
            worker.reactivate(calendar_id)
        return summary

    def _page(
        self, worker: CalendarWorker, calendar_id: str, events: tuple[CalendarEvent, ...], summary: Summary
    ) -> None:
        summary.events_read += len(events)
        decided: list[tuple[str, Update | Delete]] = []
        orphaned_before = worker.orphaned_before()
        for event in events:
            link = self.store.get_link(calendar_id, event.id)
            decision = classify(event, link, self.solution_names, orphaned_before=orphaned_before)
            match decision:
                case Update():
                    summary.updates += 1
                case Delete(orphan=orphan):
                    summary.deletes += 1
                    summary.orphans += orphan
                case Skip():
                    summary.unchanged += 1
                    continue
            decided.append((event.id, decision))
            if self.dry_run:
                summary.decisions.append(
                    {
                        "calendar_id": calendar_id,
                        "event_id": event.id,
                        "action": decision.kind.value,
                        "why": decision.why,
                    }
                )
        if self.dry_run:
            return
        worker.commands.send(calendar_id, decided)

    def _reconcile(self, worker: CalendarWorker, calendar_id: str, seen: set[str], summary: Summary) -> None:
        orphaned_before = worker.orphaned_before()
        stale = [
            link
            for link in self.store.live_links(calendar_id)
            if link.event_id not in seen and sweepable(link, orphaned_before)
        ]
        for link in stale:
            orphan = link.last_fingerprint is None
            summary.reconciled += 1
            summary.orphans += orphan
            if self.dry_run:
                why = "never saved on its event" if orphan else "event no longer in Calendar"
                summary.decisions.append(
                    {"calendar_id": calendar_id, "event_id": link.event_id, "action": "delete", "why": why}
                )
                continue
            worker.delete_link(link)
            if orphan:
                log.info("orphaned conference deleted", conference_id=link.conference_id, event_id=link.event_id)
