"""The lifecycle of Calendar watch channels (https://developers.google.com/calendar/api/guides/push).

- ``ensure``: a calendar without a live, unexpired channel gets one: a fresh UUID, a random
  per-channel token (``secrets``), the webhook address and TTL from Settings; the expiration
  stored is the one Google answers, not the TTL asked for. The channel is recorded *before*
  events.watch is called, with no resource id yet: Google sends the ``sync`` message as soon
  as the channel exists, and it can reach the webhook before watch's answer reaches us. The
  webhook admits such a pending channel on its token alone; the answer then fills in the
  resource id and expiration. A watch that fails leaves the pending record stopped.
- ``renew``: channels expiring within a window get a new channel first, then the old one is
  stopped: two overlap for a moment, there is never a gap. A calendar whose watch answers
  404/403 is marked gone (and a CalendarChanged goes out so its conferences are reconciled);
  one whose credentials are refused is marked disconnected. Either way its renewal stops.
- ``stop`` and ``list`` for operators.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import structlog

from confsync.contracts import CalendarChanged, Source
from confsync.errors import AuthError, CalendarGone, ConfsyncError
from confsync.ports import CalendarClient, Publisher, Store
from confsync.rfc3339 import utc_now
from confsync.settings import Secret
from confsync.store import PENDING_RESOURCE_ID, CalendarStatus, ChannelRecord

__all__ = ["ChannelManager", "RenewReport"]

log = structlog.get_logger(__name__)


@dataclass
class RenewReport:
    renewed: list[str] = field(default_factory=list)  # calendar ids
    gone: list[str] = field(default_factory=list)
    disconnected: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class ChannelManager:
    def __init__(  # noqa: PLR0913 - everything a channel needs, named
        self,
        store: Store,
        calendar: CalendarClient,
        *,
        webhook_url: str,
        ttl_s: int,
        publisher: Publisher | None = None,
        changes_topic: str = "calendar-changes",
        clock: Callable[[], datetime] = utc_now,
        calendar_for: Callable[[str | None], CalendarClient] | None = None,
    ) -> None:
        """``calendar_for`` gives the client acting as a calendar's subject (the user who attached
        the conference); without it, ``calendar`` serves every calendar."""
        self._store = store
        self._calendar = calendar
        self._calendar_for = calendar_for
        self._webhook_url = webhook_url
        self._ttl_s = ttl_s
        self._publisher = publisher
        self._changes_topic = changes_topic
        self._clock = clock

    def ensure(self, calendar_id: str) -> ChannelRecord:
        """The calendar's live channel, opened now if it has none."""
        now = self._clock()
        for channel in self._store.live_channels(calendar_id):
            if channel.expiration > now:
                return channel
        return self._open(calendar_id)

    def _open(self, calendar_id: str) -> ChannelRecord:
        channel_id, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
        pending = ChannelRecord(
            channel_id=channel_id,
            calendar_id=calendar_id,
            resource_id=PENDING_RESOURCE_ID,
            token=Secret(token),
            expiration=self._clock() + timedelta(seconds=self._ttl_s),
        )
        self._store.ensure_calendar(calendar_id)
        self._store.add_channel(pending)  # before watch: the sync message can beat watch's answer
        try:
            answer = self._client(calendar_id).watch(
                calendar_id, channel_id=channel_id, address=self._webhook_url, token=token, ttl_s=self._ttl_s
            )
        except BaseException:
            self._store.stop_channel(channel_id)
            raise
        record = replace(pending, resource_id=answer.resource_id, expiration=answer.expiration)
        self._store.add_channel(record)
        log.info(
            "channel opened", calendar_id=calendar_id, channel_id=record.channel_id, expiration=str(record.expiration)
        )
        return record

    def renew(self, before: timedelta) -> RenewReport:
        """Replace every live channel that expires within ``before``: new one first, then stop."""
        report = RenewReport()
        for old in self._store.channels_expiring_before(self._clock() + before):
            calendar_id = old.calendar_id
            try:
                self._open(calendar_id)
            except CalendarGone as err:
                self._give_up(old, CalendarStatus.GONE, err)
                report.gone.append(calendar_id)
                continue
            except AuthError as err:
                self._give_up(old, CalendarStatus.DISCONNECTED, err)
                report.disconnected.append(calendar_id)
                continue
            except ConfsyncError as err:
                log.warning("channel renewal failed; will retry", calendar_id=calendar_id, error=str(err))
                report.failed.append(calendar_id)
                continue
            self._stop(old)
            report.renewed.append(calendar_id)
        log.info("channels renewed", renewed=len(report.renewed), gone=len(report.gone), failed=len(report.failed))
        return report

    def _give_up(self, old: ChannelRecord, status: CalendarStatus, err: ConfsyncError) -> None:
        self._store.set_calendar_status(old.calendar_id, status, str(err))
        self._store.stop_channel(old.channel_id)
        log.error("calendar can no longer be watched", calendar_id=old.calendar_id, status=status.value, error=str(err))
        if status is CalendarStatus.GONE and self._publisher is not None:
            change = CalendarChanged(calendar_id=old.calendar_id, source=Source.RENEWAL, received_at=self._clock())
            try:
                self._publisher.publish(self._changes_topic, change.to_bytes(), ordering_key=old.calendar_id)
            except ConfsyncError as failure:  # marked gone already; a backfill reconciles it later
                log.error("could not ask for reconciliation", calendar_id=old.calendar_id, error=str(failure))  # noqa: TRY400

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
            self._client(channel.calendar_id).stop_channel(channel.channel_id, channel.resource_id)
        except ConfsyncError as err:  # it expires on its own; our record says stopped either way
            log.warning("channel stop failed at Google", channel_id=channel.channel_id, error=str(err))
        self._store.stop_channel(channel.channel_id)
        log.info("channel stopped", calendar_id=channel.calendar_id, channel_id=channel.channel_id)

    def _client(self, calendar_id: str) -> CalendarClient:
        if self._calendar_for is None:
            return self._calendar
        state = self._store.get_calendar(calendar_id)
        return self._calendar_for(state.subject if state is not None else None)

    def expiring_within(self, window: timedelta) -> list[ChannelRecord]:
        return self._store.channels_expiring_before(self._clock() + window)
