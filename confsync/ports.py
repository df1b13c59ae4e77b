"""The small interfaces the stages share, and the typed values that cross them.

Each port has a production implementation and a real second one (a sandbox server or an
in-process twin), so every stage is tested against something that behaves, not a mock:

- ``Publisher``: google-cloud-pubsub, or the in-process transport.
- ``CalendarClient``: google-api-python-client against Google or the Calendar sandbox.
- ``ConferenceProvider``: httpx against the conferencing API or its sandbox.
- ``Store``: SQLite (embedded default) or Firestore.

Every method raises only confsync's errors (``confsync.errors``): wrappers translate their
library's exceptions once, at the edge. Google's and the provider's JSON never crosses a
port: wrappers parse it into the dataclasses below.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from confsync.contracts import ConferencePayload, EventTime
from confsync.settings import Secret
from confsync.store.records import (
    AppliedVersion,
    BackfillClaim,
    BackfillEntry,
    BackfillJob,
    BackfillProgress,
    BackfillState,
    CalendarState,
    CalendarStatus,
    ChannelRecord,
    ConnectFlow,
    Grant,
    GrantStatus,
    HeldCommand,
    Link,
    LinkState,
    OAuthProvider,
    OutboxEntry,
    Purged,
    User,
)

__all__ = [
    "AccessTokens",
    "AsyncPublisher",
    "CalendarClient",
    "CalendarEvent",
    "Conference",
    "ConferenceProvider",
    "EventConference",
    "EventPage",
    "NewConference",
    "OutgoingMessage",
    "Publisher",
    "Store",
    "SubjectClients",
    "UserAccounts",
    "WatchChannel",
    "client_for",
]


# -- Calendar ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventConference:
    """The part of an event's conferenceData that tells whose conference it is."""

    conference_id: str | None
    solution_type: str | None  # conferenceSolution.key.type: "addOn", "hangoutsMeet", ...
    solution_name: str | None


@dataclass(frozen=True, slots=True)
class CalendarEvent:
    """One Calendar event as a listing returns it; cancelled tombstones carry little else."""

    id: str
    status: str  # confirmed | tentative | cancelled
    updated: datetime | None = None
    summary: str | None = None
    start: EventTime | None = None
    end: EventTime | None = None
    attendees: tuple[str, ...] = ()
    organizer: str | None = None
    recurrence: tuple[str, ...] = ()
    recurring_event_id: str | None = None
    original_start_time: EventTime | None = None
    html_link: str | None = None
    conference: EventConference | None = None


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of events.list: ``next_sync_token`` only on the last page."""

    events: tuple[CalendarEvent, ...]
    next_page_token: str | None = None
    next_sync_token: str | None = None


@dataclass(frozen=True, slots=True)
class WatchChannel:
    """What events.watch answered: Google's resource id and the expiration it granted."""

    channel_id: str
    resource_id: str
    resource_uri: str
    expiration: datetime


class CalendarClient(Protocol):
    def list_events(
        self,
        calendar_id: str,
        *,
        sync_token: str | None = None,
        page_token: str | None = None,
        time_min: datetime | None = None,
        max_results: int = 2500,
    ) -> EventPage:
        """One page; raises SyncTokenExpired on 410, CalendarGone, AuthError, TransientError."""
        ...

    def watch(self, calendar_id: str, *, channel_id: str, address: str, token: str, ttl_s: int) -> WatchChannel:
        """Open a web_hook channel on the calendar's events."""
        ...

    def stop_channel(self, channel_id: str, resource_id: str) -> None:
        """Stop a channel; stopping one that is already gone is not an error."""
        ...

    def access_role(self, calendar_id: str) -> str | None:
        """This client's user's role on the calendar (owner, writer, reader, freeBusyReader), or
        None when it is not in their calendar list; raises AuthError (Disconnected), TransientError."""
        ...

    def get_event(self, calendar_id: str, event_id: str) -> CalendarEvent:
        """One event as this client's user sees it now (a deleted one comes back cancelled);
        raises CalendarGone (404/403: no such event, or no access), AuthError, TransientError."""
        ...

    def writable_calendars(self) -> tuple[str, ...]:
        """The calendars in this client's user's calendar list that they may write (owner or
        writer); raises AuthError (Disconnected), TransientError."""
        ...


# The Calendar client acting as a calendar's subject (the user who attached the conference).
SubjectClients = Callable[[str | None], CalendarClient]


def client_for(
    state: CalendarState | None, default: CalendarClient, per_subject: SubjectClients | None
) -> CalendarClient:
    """The client for a calendar: its subject's where there is a client per subject, else ``default``."""
    if per_subject is None:
        return default
    return per_subject(state.subject if state is not None else None)


# -- the conferencing service -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewConference:
    """A create request; ``request_id`` makes it idempotent."""

    calendar_id: str
    event_id: str
    request_id: str
    summary: str | None = None
    start: EventTime | None = None
    end: EventTime | None = None
    attendees: tuple[str, ...] = ()
    organizer: str | None = None


@dataclass(frozen=True, slots=True)
class Conference:
    """A conference as the conferencing service describes it (GET gives every field)."""

    id: str
    video_uri: str
    passcode: str | None = None
    phone_number: str | None = None
    phone_pin: str | None = None
    admin_email: str | None = None
    legal_notice: str | None = None
    version: int = 1
    state: str = "active"  # active | deleted
    last_event_updated: datetime | None = None
    calendar_id: str | None = None
    event_id: str | None = None
    summary: str | None = None
    start: EventTime | None = None
    end: EventTime | None = None
    attendees: tuple[str, ...] = ()
    organizer: str | None = None


class AccessTokens(Protocol):
    """Users' access tokens at the conferencing service (accounts/vendor.py)."""

    def access_token(self, user: str) -> Secret:
        """A current access token of ``user``'s; Disconnected if their grant is revoked or missing."""
        ...

    def refreshed(self, user: str, rejected: Secret) -> Secret:
        """A token other than ``rejected`` (which the service refused): refreshed unless another
        caller already did."""
        ...


class ConferenceProvider(Protocol):
    def create(self, request: NewConference) -> Conference: ...

    def get(self, conference_id: str) -> Conference:
        """Raises NotFound for an unknown id."""
        ...

    def update(
        self, conference_id: str, payload: ConferencePayload, *, event_updated: datetime, idempotency_key: str
    ) -> Conference:
        """Apply an event's new state; raises Stale when the service holds a newer version."""
        ...

    def delete(self, conference_id: str, *, idempotency_key: str) -> None:
        """Delete; raises NotFound for an id the service never knew."""
        ...


class UserAccounts(Protocol):
    """Users' connected accounts, as the add-on API needs them (accounts/service.py)."""

    def connect_url(self, email: str, domain: str | None) -> str:
        """The connect page for ``email`` (the add-on's ``authenticationUrl``)."""
        ...

    def ready(self, email: str) -> bool:
        """Whether ``email`` has a connected vendor account and confsync can read their calendars."""
        ...

    def conferences(self, email: str) -> ConferenceProvider:
        """The conferencing API acting as ``email``'s vendor account."""
        ...

    def calendars(self, email: str) -> CalendarClient:
        """Google Calendar as ``email`` (their grant, or delegation for their domain)."""
        ...

    def disconnect(self, email: str) -> dict[str, object]:
        """Offboard ``email``: channels stopped, calendars and links forgotten, grants revoked and
        deleted (accounts/offboard.py); what was done."""
        ...


# -- Pub/Sub ----------------------------------------------------------------------------------


OutgoingMessage = tuple[bytes, str, Mapping[str, str]]  # (data, ordering key, attributes)


class Publisher(Protocol):
    def publish(
        self, topic: str, data: bytes, *, ordering_key: str = "", attributes: Mapping[str, str] | None = None
    ) -> str:
        """Publish and return the message id once the broker holds the message durably."""
        ...

    def publish_many(self, topic: str, messages: list[OutgoingMessage]) -> list[str]:
        """Publish a batch (each key's messages in list order); return once all are durable."""
        ...


@runtime_checkable
class AsyncPublisher(Protocol):
    """A publisher an event loop can await without holding a thread (Pub/Sub's)."""

    async def apublish(
        self, topic: str, data: bytes, *, ordering_key: str = "", attributes: Mapping[str, str] | None = None
    ) -> str: ...


# -- state ------------------------------------------------------------------------------------


class Store(Protocol):
    """confsync's state (docs/ARCHITECTURE.md, "State"): SQLite embedded, Firestore in production.

    Every compare-and-set returns whether it won and never blocks forever; every write is
    durable when the call returns. Times are aware UTC datetimes. ``local`` says the calls are
    in-process and take microseconds (SQLite), so an event loop may make them directly;
    network stores (Firestore) say False and are called from a thread.
    """

    local: bool

    # calendars
    def get_calendar(self, calendar_id: str) -> CalendarState | None: ...

    def ensure_calendar(self, calendar_id: str, subject: str | None = None) -> CalendarState:
        """The calendar's state, created (active, no token) if it did not exist."""
        ...

    def claim_calendar(self, calendar_id: str, subject: str) -> CalendarState:
        """The calendar's state after ``subject`` claimed it: created with ``subject`` as its owner,
        or given ``subject`` if it had none; an owner already stored is never replaced (compare
        the returned subject to tell whether the claim held). Atomic: of racing claims one wins."""
        ...

    def list_calendars(self, status: CalendarStatus | None = None) -> list[CalendarState]: ...

    def calendars_after(self, cursor: str | None, limit: int) -> list[CalendarState]:
        """Up to ``limit`` calendars whose ids sort after ``cursor`` (None: from the first), in id order."""
        ...

    def calendars_page(
        self, status: CalendarStatus, *, after: str | None = None, limit: int = 500
    ) -> list[CalendarState]:
        """Up to ``limit`` calendars in ``status`` that come after the calendar id ``after``, in the
        store's key order (not necessarily by id): the pages of a pass over every calendar."""
        ...

    def save_sync_token(self, calendar_id: str, token: str | None, *, expected_version: int, at: datetime) -> bool:
        """Store ``token`` if ``token_version`` still equals ``expected_version`` (then +1).

        True if this call won; a missing calendar counts as version 0."""
        ...

    def record_notification(self, calendar_id: str, channel_id: str, message_number: int, at: datetime) -> bool:
        """Remember when the latest notification arrived (whatever its number: numbers are not
        trusted) and the channel's highest number; False if that number (or a higher) was seen."""
        ...

    def lagging_calendars(self, notified_before: datetime, limit: int = 500) -> list[CalendarState]:
        """Active calendars with a notification received before ``notified_before`` that no
        completed sync has covered (the last listing began before it), oldest first: their
        CalendarChanged was lost or is stuck (ingest/lag.py re-announces them)."""
        ...

    def quiet_calendars(self, listed_before: datetime, limit: int = 500) -> list[CalendarState]:
        """Active calendars never listed, then those whose last listing began before
        ``listed_before``, longest quiet first (a channel that stopped delivering looks like
        this; ingest/lag.py polls them)."""
        ...

    def set_calendar_status(self, calendar_id: str, status: CalendarStatus, error: str | None = None) -> None: ...

    def count_calendars(self, status: CalendarStatus) -> int:
        """How many calendars are in ``status``, counted by the store (nothing is listed)."""
        ...

    def calendars_of(self, subject: str) -> list[CalendarState]:
        """The calendars whose subject is exactly ``subject``, by calendar_id."""
        ...

    def forget_calendar(self, calendar_id: str) -> None:
        """Delete the calendar's state with all its links and channel records (a missing one is
        fine): one transaction in SQLite, batched writes in Firestore (its state goes last)."""
        ...

    # channels
    def add_channel(self, channel: ChannelRecord) -> None: ...

    def get_channel(self, channel_id: str) -> ChannelRecord | None: ...

    def live_channels(self, calendar_id: str) -> list[ChannelRecord]: ...

    def channels_expiring_before(self, when: datetime) -> list[ChannelRecord]:
        """Live channels whose expiration is before ``when``, soonest first."""
        ...

    def count_channels_expiring_before(self, when: datetime) -> int:
        """How many live channels expire before ``when``, counted by the store (nothing is listed)."""
        ...

    def channels_due(
        self, before: datetime, *, after: tuple[datetime, str] | None = None, limit: int = 500
    ) -> list[ChannelRecord]:
        """Up to ``limit`` live channels expiring before ``before``, soonest first (ties by channel
        id), that come after ``after`` (a page's last channel: its expiration and id)."""
        ...

    def stop_channel(self, channel_id: str) -> None: ...

    # leases
    def take_lease(self, name: str, holder: str, *, now: datetime, until: datetime) -> bool:
        """Hold ``name`` until ``until`` unless another holder's lease runs past ``now``; True if held."""
        ...

    def release_lease(self, name: str, holder: str) -> None:
        """Give ``name`` up, if ``holder`` still holds it."""
        ...

    # backfill jobs (processors/backfill.py)
    def put_backfill_job(self, job: BackfillJob) -> None: ...

    def get_backfill_job(self, job_id: str) -> BackfillJob | None: ...

    def backfill_jobs(self, limit: int = 20) -> list[BackfillJob]:
        """The newest jobs first."""
        ...

    def request_backfill(self, job_id: str, calendar_ids: list[str], at: datetime) -> list[str]:
        """Record each calendar as requested unless it already has an entry; return those the job
        must publish: new ones and ones still ``requested`` (a publish a killed job may have lost)."""
        ...

    def claim_backfill(self, job_id: str, calendar_id: str, *, now: datetime, until: datetime) -> BackfillClaim:
        """Take a requested calendar (or one whose running lease ended before ``now``) until ``until``."""
        ...

    def finish_backfill(self, entry: BackfillEntry, *, held_until: datetime) -> bool:
        """Record a calendar's outcome: ``done``, ``failed`` with its cause, or ``requested`` again
        (a transient failure: the lease is given back for the redelivery), if the claim made
        until ``held_until`` still holds it; False if its lease ran out and another took it."""
        ...

    def backfill_progress(self, job_id: str) -> BackfillProgress: ...

    def backfill_entries(
        self, job_id: str, state: BackfillState, limit: int = 100, *, after: str | None = None
    ) -> list[BackfillEntry]:
        """Up to ``limit`` of a job's calendars in ``state`` whose ids sort after ``after``, in id order."""
        ...

    # links
    def upsert_link(self, link: Link) -> None: ...

    def upsert_links(self, links: Sequence[Link]) -> None:
        """``upsert_link`` of each, in as few writes as the store allows (a listing's confirmations)."""
        ...

    def add_link(self, link: Link) -> Link:
        """Record ``link`` unless (calendar, event) already has a live link, atomically; return the
        link that stands (a live one found is left as it is: compare conference ids to tell)."""
        ...

    def get_link(self, calendar_id: str, event_id: str) -> Link | None: ...

    def get_links(self, calendar_id: str, event_ids: list[str]) -> dict[str, Link]:
        """The links of those of ``event_ids`` that have one, by event id: one read for a page."""
        ...

    def link_for_conference(self, conference_id: str) -> Link | None: ...

    def live_links(self, calendar_id: str, *, excluding: Collection[str] = ()) -> list[Link]:
        """The calendar's live links by event id, but those of ``excluding`` (a full listing's
        events, which it decided for already: only the rest is read into links)."""
        ...

    def mark_link_deleted(self, calendar_id: str, event_id: str, *, expires_at: datetime | None = None) -> None:
        """The link's conference is (being) deleted; the link is kept until ``expires_at``
        (None: kept)."""
        ...

    def count_links(self, calendar_id: str, state: LinkState) -> int:
        """How many of the calendar's links are in ``state``."""
        ...

    # applied versions
    def get_applied(self, conference_id: str) -> AppliedVersion | None: ...

    def apply_if_newer(self, applied: AppliedVersion) -> bool:
        """Record ``applied`` (its ``expires_at`` with it) unless an equal or newer version is
        stored; True if recorded."""
        ...

    # retention (confsync/retention.py)
    def purge_expired(self, now: datetime, *, batch: int = 500, dry_run: bool = False) -> Purged:
        """Delete the links and applied versions whose ``expires_at`` is at or before ``now``, in
        batches of ``batch`` (each its own short write); a dry run only counts them. A store
        whose database deletes them itself (Firestore's TTL policy) answers ``by_ttl``."""
        ...

    # outbox: commands published and not yet settled (ingest/lag.py republishes the overdue)
    def outbox_add(self, entries: list[OutboxEntry]) -> None:
        """Record commands about to be published (an entry with the same command_id is replaced)."""
        ...

    def outbox_done(self, command_ids: list[str]) -> None:
        """These commands are settled; forget them (missing entries are fine)."""
        ...

    def outbox_due(self, now: datetime, limit: int = 500) -> list[OutboxEntry]:
        """Entries whose ``due_at`` is before ``now``, most overdue first."""
        ...

    def outbox_reschedule(self, command_id: str, due_at: datetime, attempts: int) -> None:
        """After publishing it again (or a deferred one the first time): next due time and the
        attempt count; no longer deferred (a settled entry stays gone)."""
        ...

    def count_outbox(self, calendar_id: str | None = None) -> int:
        """How many commands are unsettled: all of them, or those for ``calendar_id``."""
        ...

    # users and their grants (accounts/); emails are stored as given: accounts/ normalises them
    def get_user(self, email: str) -> User | None: ...

    def ensure_user(self, user: User) -> User:
        """The stored user, created from ``user`` if there was none (an existing one is kept)."""
        ...

    def get_grant(self, user: str, provider: OAuthProvider) -> Grant | None: ...

    def put_grant(self, grant: Grant, *, expected_version: int) -> bool:
        """Store ``grant`` if the stored grant's version still equals ``expected_version`` (0: none
        is stored); the stored copy then has version ``expected_version + 1`` (``grant.version``
        is ignored). True if this call won; the loser changes nothing and must read again."""
        ...

    def list_grants(self, *, user: str | None = None, status: GrantStatus | None = None) -> list[Grant]:
        """Grants of ``user`` and/or in ``status`` (all when neither is given), by user then provider."""
        ...

    def delete_grant(self, user: str, provider: OAuthProvider) -> bool:
        """Forget one grant; True if there was one."""
        ...

    def forget_user(self, email: str) -> None:
        """Delete the user and every grant of theirs, in one write (a missing user is fine)."""
        ...

    def list_users(self) -> list[User]:
        """Every user, by email."""
        ...

    # connect flows (accounts/connect.py)
    def start_flow(self, flow: ConnectFlow) -> bool:
        """Store ``flow`` at version 1 unless a flow with its id exists, whatever its stage; True
        if stored. Atomic: of racing starts with one id exactly one wins."""
        ...

    def get_flow(self, flow_id: str) -> ConnectFlow | None:
        """The stored flow, its stored version in ``version``."""
        ...

    def put_flow(self, flow: ConnectFlow, *, expected_version: int) -> bool:
        """Replace the stored flow if its version still equals ``expected_version`` (the stored copy
        then has ``expected_version + 1``; ``flow.version`` is ignored). False, and nothing
        changed, if the version differs or no such flow is stored (``start_flow`` creates one)."""
        ...

    def purge_flows(self, before: datetime) -> int:
        """Delete the flows that expired before ``before``; how many were deleted."""
        ...

    # commands held for an owner's reconnect (publishers/)
    def hold_command(self, held: HeldCommand) -> bool:
        """Keep ``held`` unless its owner (an email as given) already holds its command_id: the
        first is kept. True if kept."""
        ...

    def held_commands(self, owner: str, limit: int = 500) -> list[HeldCommand]:
        """The commands ``owner`` holds, oldest first (``held_at``, then ``command_id``)."""
        ...

    def release_held(self, owner: str, command_ids: list[str]) -> None:
        """Forget these commands of ``owner`` (missing ones are fine)."""
        ...

    def count_held(self, owner: str | None = None) -> int:
        """How many commands ``owner`` holds, or everyone when ``owner`` is None."""
        ...

    def close(self) -> None: ...
