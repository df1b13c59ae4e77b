"""The CalendarChanged handler: sync one calendar and publish what its conferences need.

For each message: a notification older than the calendar's last completed sync is
acknowledged without calling Google (and without reading the store, when this process made that
sync: most of a storm's notifications); one that comes sooner after the last listing than the
calendar's pace allows (``processors.pacing``: half a second for a quiet calendar, up to 2 s
for one notified 18 times a second or more) first waits the interval out (the transport holds
that calendar's later notifications behind it), so a burst of N notifications costs a few
listings. Otherwise the calendar is synced (``processors.sync.run_sync``) and every event
classified (``processors.classify``): commands are written to the store's outbox, published with
ordering key = conference id, then the links are updated. A publisher settles each outbox entry; one
still there after ``republish_after_s`` was lost or is stuck in the broker, and ingest/lag.py
publishes it again. Lost access is never a delete: a calendar that answers 404/403 (gone, or
no longer shared with its owner) or whose credentials are refused is marked disconnected with
the cause, logged once, and acknowledged (no retry storm); its conferences stay, its owner's
next add-on call asks them to connect, and their reconnect resyncs it in full
(accounts/resume.py). Any other permanent
error marks it failed with the error (no retry, and ingest/lag.py stops re-announcing it) until
an operator's backfill lists it again (``reactivate``). Everything else transient is raised,
so the transport retries.

A backfill job's request (``job_id`` set: processors/backfill.py) is a full listing instead: the
calendar is claimed for the job first (a lease of ``backfill_lease_s``), so a request delivered
twice is listed once. A claim another processor holds is retried later (the transport's
backoff); a finished one is acknowledged. The outcome goes to the job: done with its counts,
or failed with its cause (lost access also disconnects the calendar, as above); a transient
error gives the claim back and is raised, so the redelivery lists it.

Traces (confsync/tracing.py): a message is handled in the trace its ``traceparent`` names, so a
listing runs in the trace of the notification that triggered it, and every command it
publishes carries that trace, whichever other notifications the listing covers. Those
coalesced notifications end in their own traces, with "notification older than the last sync".
A message that names no trace (a backfill, a lag repair) starts one, so commands always carry one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

import structlog
from tenacity import Retrying

from confsync.contracts import CalendarChanged, CommandReason
from confsync.errors import AuthError, CalendarGone, ConfigError, PermanentError, TransientError
from confsync.ports import CalendarClient, CalendarEvent, Publisher, Store, SubjectClients, client_for
from confsync.retention import Retention
from confsync.rfc3339 import utc_now
from confsync.store import BackfillClaim, BackfillEntry, BackfillState, CalendarState, CalendarStatus
from confsync.transport.base import Message
from processors.backfill import RESYNCED, Backfill, Summary
from processors.classify import DEFAULT_SOLUTION_NAMES
from processors.commands import CommandSink
from processors.pacing import ListingPace
from processors.sync import run_sync

__all__ = ["CalendarWorker"]

log = structlog.get_logger(__name__)

_LOCK_STRIPES = 64
_LISTINGS_KEPT = 10_000


@dataclass
class CalendarWorker:
    store: Store
    calendar: CalendarClient
    publisher: Publisher
    commands_topic: str
    solution_names: frozenset[str] = DEFAULT_SOLUTION_NAMES
    page_size: int = 2500
    pace: ListingPace = field(default_factory=ListingPace)
    republish_after_s: float = 60.0  # an unsettled command is republished after this (ingest/lag.py)
    orphan_after_s: float = 86400.0  # an unconfirmed link this old, its event unlisted, is swept
    delete_grace_s: float = 0.0  # a confirmed cancel's delete waits this long in the outbox (0: at once)
    calendar_for: SubjectClients | None = None  # a client per calendar subject
    retention: Retention | None = None  # when links expire (confsync/retention.py); None: never
    clock: Callable[[], datetime] = utc_now
    sleep: Callable[[float], None] = time.sleep
    backfill_lease_s: float = 900.0  # a claimed backfill calendar is another's to take after this
    retry: Retrying | None = None  # a backfill's rate-limited page is asked again under it

    def __call__(self, message: Message) -> None:
        """The transport handler: one CalendarChanged message."""
        change = CalendarChanged.from_bytes(message.data)
        self.handle(change)

    def __post_init__(self) -> None:
        # One calendar's notifications run one at a time in this process. Pub/Sub's ordering
        # key does this where subscriptions are ordered; where they are not (the emulator), N
        # notifications handled side by side would cost N listings and N copies of each command.
        # After the first, the rest find the calendar synced since they arrived.
        self._calendar_locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        # When this process's latest listing of each calendar began, once that listing saved its
        # token: a notification received before then is covered without a store read (a Firestore
        # read per coalesced notification in production). The store's time is never earlier.
        self._listed_from: dict[str, datetime] = {}

    def handle(self, change: CalendarChanged) -> None:
        if change.job_id is None:
            self.pace.note(change.calendar_id, change.received_at, change.notifications)
        with self._calendar_locks[hash(change.calendar_id) % _LOCK_STRIPES]:
            self._handle(change)

    def _handle(self, change: CalendarChanged) -> None:
        calendar_id = change.calendar_id
        if change.job_id is not None:
            with structlog.contextvars.bound_contextvars(calendar_id=calendar_id, job_id=change.job_id):
                self._backfill(change.job_id, calendar_id, change.window_days)
            return
        with structlog.contextvars.bound_contextvars(calendar_id=calendar_id):
            done, state = self._needs_no_listing(change)
            if done:
                return
            if state is not None and state.last_synced_at is not None:
                wait = (state.last_synced_at - self.clock()).total_seconds() + self.pace.interval_s(calendar_id)
                if wait > 0:  # a burst: let it gather (its later notifications queue behind this one)
                    self.sleep(wait)
                    if self._covered(change, self.store.get_calendar(calendar_id)):
                        return
            started = time.perf_counter()
            # The sync counts as of when its listing began: a notification received after that
            # may be for a change the listing missed, so it must not be coalesced away.
            listing_began = self.clock()
            client = client_for(state, self.calendar, self.calendar_for)
            commands = self.commands(client)
            try:
                result = run_sync(
                    read_state=lambda: self.store.get_calendar(calendar_id),
                    list_page=lambda token, page: client.list_events(
                        calendar_id, sync_token=token, page_token=page, max_results=self.page_size
                    ),
                    handle_page=lambda events: self._handle_events(commands, calendar_id, events),
                    sweep=lambda seen: self._sweep(commands, calendar_id, seen),
                    save_token=lambda token, version: self.store.save_sync_token(
                        calendar_id, token, expected_version=version, at=listing_began
                    ),
                )
            except (CalendarGone, AuthError) as err:  # lost access, not cancellation: nothing is deleted
                self.store.set_calendar_status(calendar_id, CalendarStatus.DISCONNECTED, str(err))
                log.error("calendar can no longer be read; disconnected, nothing deleted", error=str(err))  # noqa: TRY400
                return
            except ConfigError:
                raise  # a bad setting is the deployment's to fix, not this calendar's
            except PermanentError as err:
                self._failed(calendar_id, err)
                return
            if result.token_saved:
                self._listed(calendar_id, listing_began)
            log.info(
                "calendar synced",
                source=change.source.value,
                listed=result.listed,
                full_sync=result.full_sync,
                recovered_from_410=result.recovered_from_410,
                swept=result.swept,
                token_saved=result.token_saved,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )

    def _needs_no_listing(self, change: CalendarChanged) -> tuple[bool, CalendarState | None]:
        """Whether the notification is settled without a listing (covered, or its calendar not
        active), and the calendar's state when it was read."""
        if self._covered_at(change, self._listed_from.get(change.calendar_id)):
            return True, None
        state = self.store.get_calendar(change.calendar_id)
        if state is not None and state.status is not CalendarStatus.ACTIVE:
            log.info("calendar not active; nothing to do", status=state.status.value)
            return True, state
        return self._covered(change, state), state

    @classmethod
    def _covered(cls, change: CalendarChanged, state: CalendarState | None) -> bool:
        return cls._covered_at(change, None if state is None else state.last_synced_at)

    @staticmethod
    def _covered_at(change: CalendarChanged, listing_began: datetime | None) -> bool:
        """A listing that began after this notification arrived has already seen its change."""
        if listing_began is not None and change.received_at < listing_began:
            log.info("notification older than the last sync; acknowledged without listing")
            return True
        return False

    def _listed(self, calendar_id: str, began: datetime) -> None:
        if len(self._listed_from) >= _LISTINGS_KEPT:
            self._listed_from.clear()  # costs only a store read per calendar until each is listed again
        self._listed_from[calendar_id] = began

    @staticmethod
    def _handle_events(commands: CommandSink, calendar_id: str, events: tuple[CalendarEvent, ...]) -> None:
        commands.send(calendar_id, commands.decide(calendar_id, events))

    def commands(self, client: CalendarClient | None) -> CommandSink:
        """Where one sync's decisions are made and go: outbox, commands topic, then links, with
        ``client`` (the calendar owner's) to confirm deletes and follow moves."""
        return CommandSink(
            self.store,
            self.publisher,
            self.commands_topic,
            self.solution_names,
            self.republish_after_s,
            self.orphan_after_s,
            self.clock,
            calendar=client,
            delete_grace_s=self.delete_grace_s,
            retention=self.retention,
        )

    @staticmethod
    def _sweep(commands: CommandSink, calendar_id: str, seen: set[str]) -> int:
        """After a full listing: the conferences of linked events it no longer shows go (confirmed first)."""
        stale = commands.stale(calendar_id, seen)
        for link in stale:
            commands.delete_link(link, CommandReason.RECONCILED)
        return len(stale)

    def _backfill(self, job_id: str, calendar_id: str, window_days: int | None) -> None:
        now = self.clock()
        until = now + timedelta(seconds=self.backfill_lease_s)
        claim = self.store.claim_backfill(job_id, calendar_id, now=now, until=until)
        if claim is BackfillClaim.HELD:
            raise TransientError("another processor is listing this calendar for the job; asked again later")
        if claim is not BackfillClaim.CLAIMED:
            log.info("backfill request acknowledged without listing", claim=claim.value)
            return
        finish = partial(self._finish, job_id, calendar_id, until)
        state = self.store.get_calendar(calendar_id)
        # Read now, not when the job paged: a calendar forgotten or disconnected since is not listed.
        if state is None or state.status not in RESYNCED:
            why = (
                "not in the store" if state is None else f"{state.status.value}: {state.last_error or 'no cause kept'}"
            )
            finish(BackfillState.FAILED, cause=f"not listed: the calendar is {why}")
            log.info("backfill request refused: the calendar is not synced", reason=why)
            return
        try:
            summary = self.backfill().resync(calendar_id, window_days)
        except (CalendarGone, AuthError) as err:
            self.store.set_calendar_status(calendar_id, CalendarStatus.DISCONNECTED, str(err))
            finish(BackfillState.FAILED, cause=f"lost access: {err}")
            log.error("calendar can no longer be read; disconnected, nothing deleted", error=str(err))  # noqa: TRY400
            return
        except ConfigError:
            finish(BackfillState.REQUESTED)
            raise  # a bad setting is the deployment's to fix, not this calendar's
        except PermanentError as err:
            finish(BackfillState.FAILED, cause=str(err))
            log.error("calendar not backfilled", error=str(err), status=err.status)  # noqa: TRY400
            return
        except BaseException:
            finish(BackfillState.REQUESTED)  # for the redelivery to take
            raise
        finish(BackfillState.DONE, summary=summary)
        log.info("calendar backfilled", **summary.counts())

    def _finish(  # noqa: PLR0913 - the claim, then its outcome
        self,
        job_id: str,
        calendar_id: str,
        held_until: datetime,
        state: BackfillState,
        *,
        cause: str | None = None,
        summary: Summary | None = None,
    ) -> None:
        done = summary or Summary()
        commands = done.updates + done.deletes + done.reconciled
        entry = BackfillEntry(job_id, calendar_id, state, self.clock(), cause, None, done.events_read, commands)
        if not self.store.finish_backfill(entry, held_until=held_until):
            log.warning("backfill claim ran out before the listing ended; its outcome is another's to record")

    def backfill(self) -> Backfill:
        """A full listing of one calendar as this processor's sync makes its commands."""
        return Backfill(
            self.store,
            self.calendar,
            self.publisher,
            self.commands_topic,
            self.solution_names,
            requests_per_s=0,
            page_size=self.page_size,
            clock=self.clock,
            calendar_for=self.calendar_for,
            orphan_after_s=self.orphan_after_s,
            delete_grace_s=self.delete_grace_s,
            sleep=self.sleep,
            retry=self.retry,
            republish_after_s=self.republish_after_s,
            retention=self.retention,
        )

    def _failed(self, calendar_id: str, err: PermanentError) -> None:
        self.store.set_calendar_status(calendar_id, CalendarStatus.FAILED, str(err))
        log.error(
            "calendar failed permanently; not synced until `confsync backfill --calendar` succeeds for it",
            error=str(err),
            status=err.status,
        )
