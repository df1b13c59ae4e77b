"""The composition root: every component of confsync, built from Settings on first use.

Every entry point takes one ``Stack``: ``confsync serve ROLE`` (``stack.services``), each CLI
command (``stack.cli``), ``confsync local`` and ``demo`` (through ``serve``) and the
benchmarks. A component is built the first time it is asked for, from the settings (or from a
part handed in: a test's store, a benchmark's broker), and ``close()`` closes what was built in
the reverse order, so publishers and clients finish before the store their last writes go to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from google.api_core import exceptions as google_exceptions

from accounts.resume import Resume
from accounts.service import Accounts
from accounts.vault import open_vault
from confsync.calendar import CalendarClients, delegated
from confsync.errors import TransientError
from confsync.oidc import OidcVerifier
from confsync.ports import ConferenceProvider, Publisher, Store
from confsync.provider import HttpConferenceProvider
from confsync.retention import Retention
from confsync.settings import Settings
from confsync.store import open_store
from ingest.channels import ChannelFanout, ChannelManager
from ingest.lag import LagRepair
from ingest.retention import RetentionSweep
from ingest.status import StatusReader
from ingest.webhook import WebhookStats
from processors.backfill import Backfill, FanOut
from processors.pacing import ListingPace
from processors.worker import CalendarWorker
from publishers.app import build_applier
from publishers.apply import CommandApplier
from publishers.deadletter import DeadLetters
from publishers.retry import retry_policy
from stack.transports import MemoryTransport, Transport, open_transport

__all__ = ["Stack"]

_Part = TypeVar("_Part")


class Stack:
    """confsync's parts for one process; use ``with Stack(settings) as stack:``."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        transport: Transport | None = None,
        provider: ConferenceProvider | None = None,
    ) -> None:
        """Parts handed in are used as they are, and closed by whoever made them."""
        self.settings = settings
        self._closers: list[Callable[[], None]] = []
        if store is not None:
            self.store = store
        if transport is not None:
            self.transport = transport
        if provider is not None:
            self.provider = provider

    def _built(self, part: _Part, close: Callable[[], None]) -> _Part:
        self._closers.append(close)
        return part

    @cached_property
    def store(self) -> Store:
        store = open_store(self.settings.store_url)
        return self._built(store, store.close)

    @cached_property
    def transport(self) -> Transport:
        transport = open_transport(self.settings)
        return self._built(transport, transport.close)

    @property
    def publisher(self) -> Publisher:
        return self.transport.publisher

    @cached_property
    def accounts(self) -> Accounts | None:
        """Users' accounts (grants, the connect flow), when confsync has an OAuth client of its own
        (a Google client with a static user tokens file is the older way, kept for now); None
        means one app-wide vendor key and static calendar credentials."""
        settings = self.settings
        google = settings.oauth_client_id and not settings.calendar_user_tokens_file
        if not settings.vendor_client_id and not google:
            return None
        dwd = settings.calendar_service_account_file
        return Accounts(
            settings,
            self.store,
            open_vault(settings),
            conferences_as=lambda user: self.http_provider.as_user(user),  # noqa: PLW0108 - built on first use
            calendars_as=lambda user: self.calendars.for_subject(user),  # noqa: PLW0108 - built on first use
            stop_channels=lambda calendar_id: self.channels.stop(calendar_id=calendar_id),
            delegated=delegated(Path(dwd)) if dwd and settings.delegated_domains else None,
        )

    @cached_property
    def http_provider(self) -> HttpConferenceProvider:
        """The conferencing API over HTTP, with users' vendor tokens when accounts are on."""
        accounts = self.accounts
        tokens = accounts.vendor_tokens if accounts is not None else None
        provider = HttpConferenceProvider.from_settings(self.settings, tokens=tokens)
        return self._built(provider, provider.close)

    @cached_property
    def provider(self) -> ConferenceProvider:
        return self.http_provider

    @cached_property
    def calendars(self) -> CalendarClients:
        """A Calendar client per calendar subject: as its owner with users' accounts on, else with
        the configured credentials."""
        accounts = self.accounts
        if accounts is None or accounts.credentials is None or self.settings.calendar_user_tokens_file:
            clients = CalendarClients.from_settings(self.settings)
        else:
            clients = CalendarClients(endpoint=self.settings.calendar_api_endpoint, credentials=accounts.credentials)
        return self._built(clients, clients.close)

    @cached_property
    def resume(self) -> Resume:
        """What a user's (re)connect sets going: held commands out, disconnected calendars resynced."""
        settings = self.settings
        return Resume(
            self.store,
            self.publisher,
            settings.topic_conference_commands,
            settings.topic_calendar_changes,
            self.channels.ensure,
        )

    @cached_property
    def channels(self) -> ChannelManager:
        settings = self.settings
        return ChannelManager(
            self.store,
            self.calendars.for_subject(None),
            webhook_url=settings.webhook_url or "",
            ttl_s=settings.channel_ttl_s,
            calendar_for=self.calendars.for_subject,
        )

    @cached_property
    def channel_fanout(self) -> ChannelFanout:
        """Channel passes fanned out over the channel-work topic, and that topic's handler."""
        return ChannelFanout(self.channels, self.store, self.publisher, self.settings.topic_channel_work)

    @cached_property
    def webhook_stats(self) -> WebhookStats:
        """What the webhook counted (kept per channel: a gap in message numbers is logged)."""
        return WebhookStats()

    @cached_property
    def addon_verifier(self) -> OidcVerifier | None:
        """Checks the add-on's ID tokens (its OAuth client id as audience), if one is configured."""
        settings = self.settings
        if settings.addon_audience is None:
            return None
        return OidcVerifier(audience=settings.addon_audience, certs_url=settings.google_certs_url)

    @cached_property
    def scheduler_verifier(self) -> OidcVerifier | None:
        """Checks Cloud Scheduler's ID tokens on the channel routes, if its account is configured."""
        settings = self.settings
        if not settings.scheduler_service_account:
            return None
        audience = settings.push_audience or settings.webhook_url or ""
        return OidcVerifier(
            audience=audience, email=settings.scheduler_service_account, certs_url=settings.google_certs_url
        )

    @cached_property
    def retention(self) -> Retention:
        """How long an event's records are kept after it ends (CONFSYNC_RETAIN_DAYS)."""
        return Retention(timedelta(days=self.settings.retain_days))

    def retention_sweep(self) -> RetentionSweep:
        """Deletes the expired links and applied versions (SQLite; Firestore's TTL does its own)."""
        return RetentionSweep(self.store)

    def lag_repair(self, older_than: timedelta | None = None) -> LagRepair:
        """Lag repair counting lag from ``older_than`` (default CONFSYNC_LAG_REPAIR_AFTER_S)."""
        settings = self.settings
        return LagRepair(
            self.store,
            self.publisher,
            settings.topic_calendar_changes,
            settings.topic_conference_commands,
            settings.topic_conference_commands_dead,
            older_than=older_than or timedelta(seconds=settings.lag_repair_after_s),
            max_republishes=settings.outbox_max_republishes,
            poll_after=timedelta(seconds=settings.poll_after_s) if settings.poll_after_s > 0 else None,
        )

    @cached_property
    def worker(self) -> CalendarWorker:
        """The processor: CalendarChanged -> sync -> classify -> ConferenceCommand."""
        settings = self.settings
        # A push request cannot outlive its ack deadline: a backfill's rate-limited page is asked
        # again within half of it, and its claim lasts a little past it, so Pub/Sub's redelivery
        # of a listing cut short finds the claim free soon after.
        push = settings.delivery == "push" and settings.transport == "pubsub"
        push_budget_s = settings.pubsub_ack_deadline_s / 2 if push else None
        lease_s = 2.0 * settings.pubsub_ack_deadline_s if push else 900.0
        return CalendarWorker(
            self.store,
            self.calendars.for_subject(None),
            self.publisher,
            settings.topic_conference_commands,
            frozenset(settings.conference_solution_names),
            pace=ListingPace(
                min_interval_s=settings.sync_min_interval_s,
                max_interval_s=settings.sync_max_interval_s,
                storm_rate=settings.sync_storm_rate,
                interval_per_rate_s=settings.sync_interval_per_rate_s,
            ),
            republish_after_s=settings.lag_repair_after_s,
            orphan_after_s=settings.orphan_after_s,
            delete_grace_s=settings.delete_grace_s,
            calendar_for=self.calendars.for_subject,
            retry=retry_policy(settings, budget_s=push_budget_s),
            backfill_lease_s=lease_s,
            retention=self.retention,
        )

    def backfill(self, *, page_size: int = 2500, dry_run: bool = False) -> Backfill:
        """One calendar after another, in this process (dry runs)."""
        settings = self.settings
        return Backfill(
            self.store,
            self.calendars.for_subject(None),
            self.publisher,
            settings.topic_conference_commands,
            frozenset(settings.conference_solution_names),
            requests_per_s=settings.backfill_requests_per_s,
            page_size=page_size,
            dry_run=dry_run,
            calendar_for=self.calendars.for_subject,
            orphan_after_s=settings.orphan_after_s,
            delete_grace_s=settings.delete_grace_s,
            retry=retry_policy(settings),
            republish_after_s=settings.lag_repair_after_s,
            retention=self.retention,
        )

    def fan_out(self, *, per_s: float | None = None) -> FanOut:
        """The backfill job: one request per calendar to the processors, ``per_s`` a second."""
        settings = self.settings
        rate = settings.backfill_requests_per_s if per_s is None else per_s
        return FanOut(self.store, self.publisher, settings.topic_calendar_changes, per_s=rate)

    @cached_property
    def applier(self) -> CommandApplier:
        """The publisher stage: ConferenceCommand -> the conferencing API."""
        accounts = self.accounts
        as_owner = self.http_provider.as_user if accounts is not None and accounts.vendor_tokens is not None else None
        applier = build_applier(self.settings, self.store, self.provider, as_owner=as_owner)
        return self._built(applier, applier.close)  # closes before the store: its last settlements

    @cached_property
    def dead_letters(self) -> DeadLetters:
        """The dead-lettered conference commands, held for inspection and replay (Pub/Sub)."""
        letters = DeadLetters(self.settings)
        return self._built(letters, letters.close)

    def status(self, *, serving: bool = False) -> StatusReader:
        """What ``confsync status`` and ``GET /v1/status`` read. ``serving``: this process runs the
        services, so the in-process transport's dead letters are here to be counted (Pub/Sub's are
        counted by the CLI and alerted on by Cloud Monitoring)."""
        return StatusReader(self.store, dead_letters=self._dead_letter_counter(serving=serving))

    def _dead_letter_counter(self, *, serving: bool) -> Callable[[int], int] | None:
        if self.settings.transport != "memory":
            # A service does not pull its dead letters to count them: that leases them away from a
            # replay, waits out an empty pull, and ingest's account may not read them. The CLI does.
            return None if serving else self._peeked_dead_letters
        transport = self.transport
        if not serving or not isinstance(transport, MemoryTransport):
            return None  # another process's queues: nothing to count here
        hold = f"{self.settings.topic_conference_commands_dead}-hold"
        return lambda _limit: transport.held(hold)

    def _peeked_dead_letters(self, limit: int) -> int:
        try:
            return len(self.dead_letters.peek(limit))
        except google_exceptions.GoogleAPIError as err:
            raise TransientError(f"dead letters unreadable: {err}") from err

    def close(self) -> None:
        """Close what was built, newest first; one failing close does not stop the others."""
        while self._closers:
            with contextlib.suppress(Exception):
                self._closers.pop()()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
