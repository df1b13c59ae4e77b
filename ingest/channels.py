"""The lifecycle of Calendar watch channels (https://developers.google.com/calendar/api/guides/push).

- ``ensure``: a calendar without a live, unexpired channel gets one: a fresh UUID, a random
  per-channel token (``secrets``), the webhook address and TTL from Settings; the expiration
  stored is the one Google answers, not the TTL asked for. The channel is recorded *before*
  events.watch is called, with no resource id yet: Google sends the ``sync`` message as soon
  as the channel exists, and it can reach the webhook before watch's answer reaches us. The
  webhook admits such a pending channel on its token alone; the answer then fills in the
  resource id and expiration. A watch that fails leaves the pending record live but expired,
  so the next renewal pass tries again.
- Every change to a calendar's channels is leased per calendar in the store (``take_lease``, a
  compare-and-set with an expiry): two ensures or renewals racing on one calendar (two ingest
  instances, the add-on and a scheduler tick, a redelivered work item) open one channel, not
  two. A lease whose holder crashed runs out after ``_LEASE`` and the next pass takes it.
- Reconciling a calendar against a horizon leaves it with exactly one live channel lasting
  past the horizon (a failed watch counts as expired), opened before any old one is stopped,
  so there is never a gap. A calendar whose watch answers 404/403 (counted as gone in the
  report) or whose credentials are refused is marked disconnected with the cause: lost access,
  never a delete; its channels are stopped, as are those of a calendar marked disconnected
  elsewhere, and its owner's reconnect watches it again.
- Passes fan out (``ChannelFanout``), because one request renews only so many channels before
  its deadline. A tick (Cloud Scheduler's ``/tasks/renew-channels``, the repair tick, the local
  lag loop) reads ONE page of due work from the store and publishes, on the channel-work topic,
  one ``ChannelWork`` per calendar (ordering key = the calendar) and, when the page was full, a
  ``ChannelScan`` for the next page, which whichever ingest instance receives it treats the
  same way. Cursors are keyset (where the last page ended), so a page is bounded work, and a
  pass that dies midway leaves what is still due to the next tick, which starts again from the
  beginning. Work items are idempotent: the worker checks under the calendar's lease whether
  anything is still due, so ticks that overlap, and redeliveries, renew each calendar once;
  a busy lease is a nack (tried again shortly). Two passes: ``renew`` (channels expiring before
  the horizon: Calendar's TTL is a week, the scheduler looks a day ahead; the repair tick with
  no window retries failed watches) and ``watch`` (every active calendar; one with live links
  and no live channel is watched: a daily sweep for what no channel record points to).
- ``renew`` and ``watch_unwatched`` run a pass inline, page by page (``confsync channels renew``);
  ``stop`` and ``list`` for operators.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timedelta

import structlog

from confsync.contracts import ChannelScan, ChannelSweep, ChannelWork, read_channel_message
from confsync.errors import AuthError, CalendarGone, ConfsyncError, TransientError
from confsync.ports import CalendarClient, OutgoingMessage, Publisher, Store, SubjectClients, client_for
from confsync.rfc3339 import utc_now
from confsync.settings import Secret
from confsync.store import PENDING_RESOURCE_ID, CalendarStatus, ChannelRecord, ChannelState
from confsync.transport.base import Message

__all__ = ["ChannelBusy", "ChannelFanout", "ChannelManager", "PageReport", "RenewReport"]

log = structlog.get_logger(__name__)


# Watching these would fail (gone) or act for no one (disconnected); a failed calendar keeps its
# channel, so the backfill that reactivates it finds it still watched.
_UNWATCHED = frozenset({CalendarStatus.GONE, CalendarStatus.DISCONNECTED})
_LEASE = timedelta(minutes=2)  # longer than a watch call with its reconnects
PAGE_SIZE = 500  # channels or calendars one page of a pass reads: one Pub/Sub publish batch


@dataclass
class RenewReport:
    renewed: list[str] = field(default_factory=list)  # calendar ids
    gone: list[str] = field(default_factory=list)
    disconnected: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # another instance held the calendar's lease
    stopped: list[str] = field(default_factory=list)  # surplus channel ids

    def to_json(self) -> dict[str, list[str]]:
        report = asdict(self)
        report["surplus_stopped"] = report.pop("stopped")  # channel ids, unlike the calendar ids beside them
        return report

    def extend(self, other: RenewReport) -> None:
        """Add what another pass did to this report."""
        for name in (f.name for f in fields(self)):
            getattr(self, name).extend(getattr(other, name))


class ChannelBusy(TransientError):
    """Another instance is opening this calendar's channel right now."""


class ChannelManager:
    def __init__(  # noqa: PLR0913 - everything a channel needs, named
        self,
        store: Store,
        calendar: CalendarClient,
        *,
        webhook_url: str,
        ttl_s: int,
        clock: Callable[[], datetime] = utc_now,
        calendar_for: SubjectClients | None = None,
    ) -> None:
        """``calendar_for`` gives the client acting as a calendar's subject (the user who attached
        the conference); without it, ``calendar`` serves every calendar."""
        self._store = store
        self._calendar = calendar
        self._calendar_for = calendar_for
        self._webhook_url = webhook_url
        self._ttl_s = ttl_s
        self._clock = clock

    def ensure(self, calendar_id: str) -> ChannelRecord:
        """The calendar's live channel, opened now if it has none."""
        channel = _lasting(self._store.live_channels(calendar_id), self._clock())
        if channel is not None:
            return channel
        with self._leased(calendar_id) as held:
            if not held:
                raise ChannelBusy(f"another instance is opening a channel for {calendar_id}")
            channel = _lasting(self._store.live_channels(calendar_id), self._clock())
            return channel if channel is not None else self._open(calendar_id)

    @contextmanager
    def _leased(self, calendar_id: str) -> Iterator[bool]:
        # Hashed: an id near the document-id limit would overflow it with a prefix.
        name = "watch:" + hashlib.sha256(calendar_id.encode()).hexdigest()
        holder, now = str(uuid.uuid4()), self._clock()
        held = self._store.take_lease(name, holder, now=now, until=now + _LEASE)
        try:
            yield held
        finally:
            if held:
                self._store.release_lease(name, holder)

    def _open(self, calendar_id: str) -> ChannelRecord:
        """Open a channel (the caller holds the calendar's lease)."""
        channel_id, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
        pending = ChannelRecord(
            channel_id=channel_id,
            calendar_id=calendar_id,
            resource_id=PENDING_RESOURCE_ID,
            token=Secret(token),
            expiration=self._clock() + _LEASE,
        )
        self._store.ensure_calendar(calendar_id)
        self._store.add_channel(pending)  # before watch: the sync message can beat watch's answer
        try:
            answer = self._client(calendar_id).watch(
                calendar_id, channel_id=channel_id, address=self._webhook_url, token=token, ttl_s=self._ttl_s
            )
        except BaseException:
            self._store.add_channel(replace(pending, expiration=self._clock()))  # due: the next pass retries
            raise
        record = replace(pending, resource_id=answer.resource_id, expiration=answer.expiration)
        current = self._store.get_channel(channel_id)
        if current is None or current.state is not ChannelState.LIVE:
            # Our lease ran out mid-watch and another pass replaced this channel: do not revive it.
            self._stop(record)
            raise ChannelBusy(f"the channel for {calendar_id} was replaced while its watch was under way")
        self._store.add_channel(record)
        log.info(
            "channel opened", calendar_id=calendar_id, channel_id=record.channel_id, expiration=str(record.expiration)
        )
        return record

    def renew(self, before: timedelta) -> RenewReport:
        """Reconcile, here and now, every calendar with a live channel expiring within ``before``."""
        started = self._clock()
        horizon = started + before
        report = RenewReport()
        after: tuple[datetime, str] | None = None
        while True:
            calendar_ids, after = self.due_page(horizon, started, after, PAGE_SIZE)
            self._reconcile_all(calendar_ids, horizon, report)
            if after is None:
                return _logged(report)

    def due_page(
        self, horizon: datetime, started: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> tuple[list[str], tuple[datetime, str] | None]:
        """One page of a renewal pass begun at ``started``: its calendars with a channel expiring
        before ``horizon``, and where the next page starts (None: this was the last)."""
        channels = self._store.channels_due(horizon, after=after, limit=limit)
        # A watch that failed during this pass is due again at once: left to the next pass, or a
        # pass in an outage would find it again page after page.
        due = [c for c in channels if c.resource_id != PENDING_RESOURCE_ID or c.expiration < started]
        following = (channels[-1].expiration, channels[-1].channel_id) if len(channels) == limit else None
        return list(dict.fromkeys(c.calendar_id for c in due)), following

    def watch_unwatched(self) -> RenewReport:
        """Open a channel, here and now, for every active calendar with live links that has no
        live channel: a pass over every calendar, for what no channel record points to (a
        calendar whose failed watch was recorded stopped before failed watches stayed due)."""
        report = RenewReport()
        after: str | None = None
        while page := self._store.calendars_page(CalendarStatus.ACTIVE, after=after, limit=PAGE_SIZE):
            now = self._clock()
            unwatched = [state.calendar_id for state in page if self._unwatched(state.calendar_id, now)]
            self._reconcile_all(unwatched, now, report)
            after = page[-1].calendar_id
        return _logged(report)

    def work(self, item: ChannelWork) -> RenewReport:
        """One calendar of a fanned-out pass, if anything is still due for it (a duplicate item
        finds nothing); ChannelBusy if another instance holds the calendar's lease."""
        report = RenewReport()
        now = self._clock()
        if item.sweep is ChannelSweep.WATCH:
            due, horizon = self._unwatched(item.calendar_id, now), now
        else:
            # A horizon past a whole channel lifetime would renew channels just opened, again and
            # again: an item that asks for one (a bug, or a forged push) renews only what is due.
            horizon = min(item.due_before, now + timedelta(seconds=self._ttl_s))
            due = self._expiring(item.calendar_id, horizon)
        if due:
            self._reconcile_all([item.calendar_id], horizon, report)
        if report.busy:
            raise ChannelBusy(f"another instance holds the channel lease of {item.calendar_id}")
        return _logged(report)

    def _expiring(self, calendar_id: str, horizon: datetime) -> bool:
        return any(channel.expiration < horizon for channel in self._store.live_channels(calendar_id))

    def _unwatched(self, calendar_id: str, now: datetime) -> bool:
        """Active, with live links, and no live channel lasting past ``now``."""
        state = self._store.get_calendar(calendar_id)
        return (
            state is not None
            and state.status is CalendarStatus.ACTIVE
            and _lasting(self._store.live_channels(calendar_id), now) is None
            and bool(self._store.live_links(calendar_id))
        )

    def _reconcile_all(self, calendar_ids: Iterable[str], horizon: datetime, report: RenewReport) -> None:
        for calendar_id in calendar_ids:
            with self._leased(calendar_id) as held:
                if held:
                    self._reconcile(calendar_id, horizon, report)
                else:
                    report.busy.append(calendar_id)

    def _reconcile(self, calendar_id: str, horizon: datetime, report: RenewReport) -> None:
        """One live channel lasting past ``horizon`` for a watched calendar, none for another."""
        live = self._store.live_channels(calendar_id)
        state = self._store.get_calendar(calendar_id)
        keep = None
        if state is None or state.status not in _UNWATCHED:
            # Only a channel Google confirmed counts: one still pending past its lease lost its opener.
            keep = _lasting([c for c in live if c.resource_id != PENDING_RESOURCE_ID], horizon)
            if keep is None:
                try:
                    keep = self._open(calendar_id)
                except (CalendarGone, AuthError) as err:  # lost access: disconnected, nothing deleted
                    self._give_up(calendar_id, err)
                    (report.gone if isinstance(err, CalendarGone) else report.disconnected).append(calendar_id)
                    return
                except ConfsyncError as err:
                    log.warning("channel renewal failed; will retry", calendar_id=calendar_id, error=str(err))
                    report.failed.append(calendar_id)
                    return
                report.renewed.append(calendar_id)
        for channel in live:
            if keep is None or channel.channel_id != keep.channel_id:
                self._stop(channel)
                report.stopped.append(channel.channel_id)

    def _give_up(self, calendar_id: str, err: ConfsyncError) -> None:
        """Lost access (404/403 or refused credentials): disconnected with its cause, its channels
        stopped; nothing is deleted, and the owner's reconnect watches and resyncs it again."""
        self._store.set_calendar_status(calendar_id, CalendarStatus.DISCONNECTED, str(err))
        for channel in self._store.live_channels(calendar_id):
            self._stop(channel)
        log.error("calendar can no longer be watched", calendar_id=calendar_id, status="disconnected", error=str(err))

    def stop(self, *, calendar_id: str | None = None, channel_id: str | None = None) -> list[str]:
        """Stop one channel, or every live channel of a calendar; the ids stopped."""
        if channel_id is not None:
            channel = self._store.get_channel(channel_id)
            channels = [channel] if channel is not None else []
        else:
            channels = self._store.live_channels(calendar_id or "")
        for channel in channels:
            self._stop(channel)
        return [channel.channel_id for channel in channels]

    def _stop(self, channel: ChannelRecord) -> None:
        try:
            if channel.resource_id != PENDING_RESOURCE_ID:  # Google never confirmed it: nothing to stop there
                self._client(channel.calendar_id).stop_channel(channel.channel_id, channel.resource_id)
        except ConfsyncError as err:  # it expires on its own; our record says stopped either way
            log.warning("channel stop failed at Google", channel_id=channel.channel_id, error=str(err))
        self._store.stop_channel(channel.channel_id)
        log.info("channel stopped", calendar_id=channel.calendar_id, channel_id=channel.channel_id)

    def _client(self, calendar_id: str) -> CalendarClient:
        state = self._store.get_calendar(calendar_id) if self._calendar_for is not None else None
        return client_for(state, self._calendar, self._calendar_for)

    def expiring_within(self, window: timedelta) -> list[ChannelRecord]:
        return self._store.channels_expiring_before(self._clock() + window)


@dataclass(frozen=True, slots=True)
class PageReport:
    """What one page of a fanned-out pass published."""

    calendars: int  # work items, one per calendar
    more: bool  # the next page was published too

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class ChannelFanout:
    """Channel passes as paged fan-out over the channel-work topic, and that topic's handler."""

    def __init__(  # noqa: PLR0913 - the parts and the page size, named
        self,
        channels: ChannelManager,
        store: Store,
        publisher: Publisher,
        topic: str,
        *,
        page_size: int = PAGE_SIZE,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._channels = channels
        self._store = store
        self._publisher = publisher
        self._topic = topic
        self._page_size = page_size
        self._clock = clock

    def start(self, sweep: ChannelSweep, before: timedelta = timedelta(0)) -> PageReport:
        """A tick: the first page of a pass whose horizon is ``before`` from now (renew only)."""
        now = self._clock()
        return self.scan(ChannelScan(sweep, now + before, now))

    def scan(self, scan: ChannelScan) -> PageReport:
        """Publish one work item per due calendar of the page ``scan`` names, then the next page."""
        following: ChannelScan | None = None
        if scan.sweep is ChannelSweep.RENEW:
            cursor = (
                None
                if scan.after_id is None or scan.after_expiration is None
                else (scan.after_expiration, scan.after_id)
            )
            calendar_ids, cursor = self._channels.due_page(scan.due_before, scan.started_at, cursor, self._page_size)
            if cursor is not None:
                following = replace(scan, after_expiration=cursor[0], after_id=cursor[1])
        else:
            states = self._store.calendars_page(CalendarStatus.ACTIVE, after=scan.after_id, limit=self._page_size)
            calendar_ids = [state.calendar_id for state in states]
            following = replace(scan, after_id=calendar_ids[-1]) if len(states) == self._page_size else None
        messages: list[OutgoingMessage] = [
            (ChannelWork(calendar_id, scan.sweep, scan.due_before).to_bytes(), calendar_id, {})
            for calendar_id in calendar_ids
        ]
        if following is not None:  # last: a page that fails midway is redelivered whole, never skipped
            messages.append((following.to_bytes(), "", {}))
        if messages:
            self._publisher.publish_many(self._topic, messages)
        report = PageReport(len(calendar_ids), following is not None)
        if messages:  # the repair tick comes every minute, and mostly finds nothing due
            log.info("channel page fanned out", sweep=scan.sweep.value, calendars=report.calendars, more=report.more)
        return report

    def __call__(self, message: Message) -> None:
        """The channel-work topic's handler: a page to fan out, or one calendar to reconcile."""
        item = read_channel_message(message.data)
        if isinstance(item, ChannelScan):
            self.scan(item)
        else:
            with structlog.contextvars.bound_contextvars(calendar_id=item.calendar_id):
                self._channels.work(item)


def _logged(report: RenewReport) -> RenewReport:
    if report != RenewReport():
        log.info(
            "channels reconciled",
            renewed=len(report.renewed),
            gone=len(report.gone),
            disconnected=len(report.disconnected),
            failed=len(report.failed),
            busy=len(report.busy),
            surplus_stopped=len(report.stopped),
        )
    return report


def _lasting(channels: Iterable[ChannelRecord], past: datetime) -> ChannelRecord | None:
    """Of ``channels``, the one that lasts longest, if it lasts beyond ``past``."""
    longest = max(channels, key=lambda c: c.expiration, default=None)
    return longest if longest is not None and longest.expiration > past else None
