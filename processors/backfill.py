"""Backfill: a full resync of calendars, reconciling links with what Calendar holds now.

**One calendar** (``Backfill.resync``): list every event (no sync token; ``window_days`` limits
the listing to events ending after now - N days), classify each against its link exactly as the
processor does (a page's links read at once), publish the same commands through the same
publisher, update the links; then, on a full (unwindowed) listing, delete the conferences of
links whose events Calendar no longer shows (reason ``reconciled``), including orphans:
conferences the add-on made for an event that was never saved, once their link is
``orphan_after_s`` old (``classify.sweepable``). Deletes are confirmed and moves followed as the
processor does (processors/commands.py), and a guest's calendar never sweeps a conference it
does not own: only owning links are ever its. The listing's sync token is saved with
compare-and-set, so incremental sync continues from here (a lost CAS means a processor synced
meanwhile: fine). A page Calendar refuses for a rate limit (403/429) is asked again after a
backoff (``retry``), not the whole calendar.

**Many calendars** (``FanOut``, what ``confsync backfill`` runs): the job pages through the
store's calendars (``Selection``), records each as requested in the store and publishes one
``CalendarChanged(source=backfill, job_id=...)`` per calendar to the calendar-changes topic
(ordering key: the calendar), at most ``per_s`` a second; the processors do the listings
(processors/worker.py), so a million calendars spread over every processor instance. The
job's cursor is saved after each page is published, so a restarted job resumes at its page;
a processor claims a calendar before listing it (a lease), so a request published twice (the
page a killed job was publishing) is listed once. Each calendar's outcome is kept (done,
failed with its cause) and one failing calendar fails alone. ``Backfill.run`` lists calendars
one after another in this process: dry runs (which change nothing) and tests.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta

import structlog
from tenacity import Retrying

from confsync.contracts import CalendarChanged, Source
from confsync.errors import AuthError, CalendarGone, PermanentError
from confsync.ports import (
    CalendarClient,
    CalendarEvent,
    EventPage,
    OutgoingMessage,
    Publisher,
    Store,
    SubjectClients,
    client_for,
)
from confsync.retention import Retention
from confsync.rfc3339 import utc_now
from confsync.store import BackfillJob, BackfillState, CalendarState, CalendarStatus
from processors.classify import DEFAULT_SOLUTION_NAMES, Delete, Skip, Update
from processors.commands import CommandSink, Moved, Outcome, Revive
from processors.sync import page_through

__all__ = ["RESYNCED", "Backfill", "Decided", "FanOut", "Selection", "Summary"]

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
    failures: dict[str, str] = field(default_factory=dict)  # calendar id -> why it was not backfilled

    def add(self, other: Summary) -> None:
        for name in ("events_read", "updates", "deletes", "unchanged", "reconciled", "orphans", "moved", "errors"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.decisions += other.decisions
        self.failures |= other.failures

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k not in {"decisions", "failures"}}

    def to_json(self, *, with_decisions: bool) -> dict[str, object]:
        """The counts, and with ``with_decisions`` each decision as an object."""
        counts: dict[str, object] = {**self.counts(), "failures": self.failures}
        if not with_decisions:
            return counts
        return {**counts, "decisions": [asdict(decided) for decided in self.decisions]}


class _RateLimit:
    def __init__(self, per_s: float, sleep: Callable[[float], None]) -> None:
        self._interval = 1.0 / per_s if per_s > 0 else 0.0
        self._next = 0.0
        self._sleep = sleep

    def wait(self, count: int = 1) -> None:
        """Wait until ``count`` more may go at the rate."""
        now = time.monotonic()
        if now < self._next:
            self._sleep(self._next - now)
        self._next = max(now, self._next) + self._interval * count


@dataclass
class Backfill:
    store: Store
    calendar: CalendarClient
    publisher: Publisher
    commands_topic: str
    solution_names: frozenset[str] = DEFAULT_SOLUTION_NAMES
    requests_per_s: float = 5.0  # 0: no limit (a processor's listing: the job paces the requests)
    page_size: int = 2500
    dry_run: bool = False
    clock: Callable[[], datetime] = utc_now
    calendar_for: SubjectClients | None = None  # a client per calendar subject
    orphan_after_s: float = 86400.0  # see classify.sweepable
    delete_grace_s: float = 0.0  # see processors/commands.py
    retention: Retention | None = None  # when links expire (confsync/retention.py); None: never
    sleep: Callable[[float], None] = time.sleep
    on_progress: Callable[[str, int], None] = lambda _calendar, _events: None
    retry: Retrying | None = None  # asks a rate-limited page again; None: the error goes up
    republish_after_s: float = 60.0  # an unsettled command is republished after this (ingest/lag.py)

    def run(self, calendar_ids: list[str], *, window_days: int | None = None) -> Summary:
        """Each calendar in turn, here; one that fails is counted in ``errors`` and the rest go on."""
        total = Summary()
        limit = _RateLimit(self.requests_per_s, self.sleep)
        for calendar_id in calendar_ids:
            with structlog.contextvars.bound_contextvars(calendar_id=calendar_id):
                try:
                    total.add(self._calendar(calendar_id, window_days, limit))
                except (PermanentError, CalendarGone, AuthError) as err:
                    total.errors += 1
                    total.failures[calendar_id] = str(err)
                    log.warning("calendar not backfilled", error=str(err))
                total.calendars += 1
        log.info("backfill finished", **total.counts())
        return total

    def resync(self, calendar_id: str, window_days: int | None = None) -> Summary:
        """One calendar, listed in full (or over its window); errors go up."""
        return self._calendar(calendar_id, window_days, _RateLimit(self.requests_per_s, self.sleep))

    def _calendar(self, calendar_id: str, window_days: int | None, limit: _RateLimit) -> Summary:
        summary = Summary()
        state = self.store.get_calendar(calendar_id)
        calendar = client_for(state, self.calendar, self.calendar_for)
        commands = self.commands(calendar)
        version = state.token_version if state is not None else 0
        # The sync counts as of when the listing began: a notification that came during it may
        # be for a change its earlier pages missed, so it must not be taken as covered.
        began = self.clock()
        time_min = None if window_days is None else began - timedelta(days=window_days)

        def list_page(page_token: str | None) -> EventPage:
            limit.wait()

            def ask() -> EventPage:
                return calendar.list_events(
                    calendar_id, page_token=page_token, time_min=time_min, max_results=self.page_size
                )

            if self.retry is None:
                return ask()
            retrying: Retrying = self.retry.copy()  # its own state per call
            return retrying(ask)

        def on_page(page: EventPage) -> None:
            self._page(commands, calendar_id, page.events, summary)
            self.on_progress(calendar_id, len(page.events))

        listing = page_through(list_page, on_page)
        if window_days is None:  # a whole listing: what it did not show is gone
            self._reconcile(commands, calendar_id, listing.seen, summary)
        if not self.dry_run and listing.sync_token:
            self.store.save_sync_token(calendar_id, listing.sync_token, expected_version=version, at=began)
        if not self.dry_run:
            self._reactivate(calendar_id)
        return summary

    def commands(self, calendar: CalendarClient) -> CommandSink:
        return CommandSink(
            self.store,
            self.publisher,
            self.commands_topic,
            self.solution_names,
            self.republish_after_s,
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


# A backfill lists an active calendar, or a failed one (the backfill is what brings it back);
# never one waiting for its user's reconnect, which resyncs it then.
RESYNCED = frozenset({CalendarStatus.ACTIVE, CalendarStatus.FAILED})


@dataclass(frozen=True, slots=True)
class Selection:
    """Which calendars a job resyncs: every one confsync syncs, one domain's, or those named."""

    domain: str | None = None
    calendar_ids: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.calendar_ids:
            return "calendars " + " ".join(sorted(self.calendar_ids))
        return f"domain {self.domain}" if self.domain else "all"

    def picks(self, state: CalendarState) -> bool:
        """A calendar to resync (``RESYNCED``), of the domain if one is named."""
        if state.status not in RESYNCED:
            return False
        owner = (state.subject or state.calendar_id).lower()
        return self.domain is None or owner.endswith("@" + self.domain.lower())

    def pages(self, store: Store, cursor: str | None, size: int) -> Iterator[list[str]]:
        """The calendars after ``cursor``, a page at a time, in id order."""
        if self.calendar_ids:
            named = sorted(set(self.calendar_ids))
            after = [calendar_id for calendar_id in named if cursor is None or calendar_id > cursor]
            for first in range(0, len(after), size):
                yield after[first : first + size]
            return
        while page := store.calendars_after(cursor, size):
            cursor = page[-1].calendar_id
            picked = [state.calendar_id for state in page if self.picks(state)]
            if picked:
                yield picked
        return


@dataclass
class FanOut:
    """The backfill job: one resync request per calendar to the processors, paced, resumable."""

    store: Store
    publisher: Publisher
    changes_topic: str
    per_s: float = 20.0  # requests published per second (each is a listing or more at Calendar)
    page_size: int = 500
    clock: Callable[[], datetime] = utc_now
    sleep: Callable[[float], None] = time.sleep
    on_progress: Callable[[BackfillJob], None] = lambda _job: None

    def job(self, selection: Selection, window_days: int | None, *, job_id: str | None, new: bool) -> BackfillJob:
        """The job to run: ``job_id``'s; else, unless ``new``, the newest job asking the same that
        has not paged to its end (a restarted job resumes); else a new one. A job that paged to
        its end is resumed only by its id: a daily run starts afresh, whatever one calendar of
        yesterday's job still waits for."""
        if job_id is not None:
            found = self.store.get_backfill_job(job_id)
            if found is not None:
                return found
        elif not new:
            for found in self.store.backfill_jobs():
                same = (found.selector, found.window_days) == (selection.describe(), window_days)
                if same and not found.paged_all:
                    return found
        made = BackfillJob(
            job_id=job_id or f"bf-{self.clock():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}",
            selector=selection.describe(),
            created_at=self.clock(),
            window_days=window_days,
        )
        self.store.put_backfill_job(made)
        return made

    def run(self, job: BackfillJob, selection: Selection) -> BackfillJob:
        """Publish the job's requests from its cursor on; the job as saved after its last page.

        A job that had already paged to the end publishes again the requests still pending
        that no processor holds: a message dead-lettered, or a claim whose processor died."""
        limit = _RateLimit(self.per_s, self.sleep)
        with structlog.contextvars.bound_contextvars(job_id=job.job_id):
            if job.paged_all:
                return self._stragglers(job, limit)
            if job.cursor is not None:
                log.info("backfill resumed", cursor=job.cursor, requested=job.requested)
            for page in selection.pages(self.store, job.cursor, self.page_size):
                job = self._page(job, page, limit)
            job = replace(job, paged_all=True)
            self.store.put_backfill_job(job)
            log.info("backfill requested", requested=job.requested, selector=job.selector)
        return job

    def _stragglers(self, job: BackfillJob, limit: _RateLimit) -> BackfillJob:
        now, again = self.clock(), 0
        for state in (BackfillState.REQUESTED, BackfillState.RUNNING):
            after: str | None = None
            while entries := self.store.backfill_entries(job.job_id, state, self.page_size, after=after):
                after = entries[-1].calendar_id
                idle = [e.calendar_id for e in entries if e.lease_until is None or e.lease_until <= now]
                again += sum(len(chunk) for chunk in self._published(job, idle, limit))
        job = replace(job, requested=job.requested + again)
        self.store.put_backfill_job(job)
        log.info("backfill's pending calendars requested again", requested_again=again)
        return job

    def _page(self, job: BackfillJob, page: list[str], limit: _RateLimit) -> BackfillJob:
        to_publish = self.store.request_backfill(job.job_id, page, self.clock())
        for chunk in self._published(job, to_publish, limit):
            job = replace(job, cursor=chunk[-1], requested=job.requested + len(chunk))
            self.store.put_backfill_job(job)  # after the publish: a kill before it publishes these again
            self.on_progress(job)
        if job.cursor != page[-1]:
            job = replace(job, cursor=page[-1])
            self.store.put_backfill_job(job)
        return job

    def _published(self, job: BackfillJob, calendar_ids: list[str], limit: _RateLimit) -> Iterator[list[str]]:
        """Publish the requests of ``calendar_ids`` at the rate, about a second's worth at a time,
        yielding each chunk once the broker holds it (the caller records it then)."""
        step = max(int(self.per_s), 1)
        for first in range(0, len(calendar_ids), step):
            chunk = calendar_ids[first : first + step]
            limit.wait(len(chunk))
            self.publisher.publish_many(self.changes_topic, [self._request(job, cid) for cid in chunk])
            yield chunk

    def _request(self, job: BackfillJob, calendar_id: str) -> OutgoingMessage:
        change = CalendarChanged(
            calendar_id, Source.BACKFILL, self.clock(), job_id=job.job_id, window_days=job.window_days
        )
        return change.to_bytes(), calendar_id, {}
