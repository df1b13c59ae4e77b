"""The records confsync keeps between messages (see "State" in docs/ARCHITECTURE.md).

Plain frozen dataclasses, shared by every ``Store`` implementation and by the stages that
read them. Times are aware UTC datetimes; versions are integers bumped on every write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from confsync.contracts import Occurrence
from confsync.settings import Secret

__all__ = [
    "PENDING_RESOURCE_ID",
    "AppliedVersion",
    "BackfillClaim",
    "BackfillEntry",
    "BackfillJob",
    "BackfillProgress",
    "BackfillState",
    "CalendarState",
    "CalendarStatus",
    "ChannelRecord",
    "ChannelState",
    "ConnectFlow",
    "FlowStage",
    "Grant",
    "GrantStatus",
    "HeldCommand",
    "Link",
    "LinkState",
    "OAuthProvider",
    "OutboxEntry",
    "Purged",
    "User",
    "UserStatus",
]


class CalendarStatus(StrEnum):
    ACTIVE = "active"
    DISCONNECTED = "disconnected"  # credentials refused; waits for the user to reconnect
    GONE = "gone"  # the calendar can no longer be read; its conferences were reconciled
    FAILED = "failed"  # a permanent error (last_error); waits for an operator's backfill


class ChannelState(StrEnum):
    LIVE = "live"
    STOPPED = "stopped"


class LinkState(StrEnum):
    LIVE = "live"
    # The owning copy left the owner's calendars (cancelled, or moved where they cannot read it):
    # its delete waits out the grace in the outbox, and the link lives again if the event is seen.
    LEAVING = "leaving"
    DELETED = "deleted"


class BackfillState(StrEnum):
    """One calendar's place in a backfill job."""

    REQUESTED = "requested"  # published to the processors, not yet taken
    RUNNING = "running"  # a processor lists it (until ``lease_until``: then another may)
    DONE = "done"
    FAILED = "failed"  # ``cause`` says why; the job's other calendars go on


class BackfillClaim(StrEnum):
    """What a processor's claim on a backfill request found."""

    CLAIMED = "claimed"  # it is this processor's to list now
    FINISHED = "finished"  # done or failed already: a redelivery, acknowledged without listing
    HELD = "held"  # another processor lists it now: try again later
    UNKNOWN = "unknown"  # no such job or calendar in it


@dataclass(frozen=True, slots=True)
class BackfillJob:
    """A full resync fanned out to the processors: what it selects and how far it has paged.

    ``cursor`` is the last calendar id whose request was published; ``requested`` counts the
    requests published (a resumed page's again); ``paged_all`` is set once the job has paged to
    the end of its calendars."""

    job_id: str
    selector: str  # what was asked for, as the command said it: "all", "domain example.com", ...
    created_at: datetime
    window_days: int | None = None
    cursor: str | None = None
    requested: int = 0
    paged_all: bool = False


@dataclass(frozen=True, slots=True)
class BackfillEntry:
    """One calendar of a backfill job; the counts are its listing's (``processors.backfill.Summary``)."""

    job_id: str
    calendar_id: str
    state: BackfillState
    updated_at: datetime
    cause: str | None = None
    lease_until: datetime | None = None
    events_read: int = 0
    commands: int = 0  # updates and deletes sent


@dataclass(frozen=True, slots=True)
class BackfillProgress:
    """How many of a job's calendars are in each state."""

    requested: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0

    @property
    def pending(self) -> int:
        return self.requested + self.running

    @property
    def total(self) -> int:
        return self.requested + self.running + self.done + self.failed


@dataclass(frozen=True, slots=True)
class CalendarState:
    """One watched calendar's sync position. ``token_version`` guards compare-and-set.

    ``last_notified_at`` is when the latest push notification arrived (lag repair watches it);
    ``last_channel_id``/``last_message_number`` the highest number seen, a hint only: anyone
    holding a channel's token can send any number.
    """

    calendar_id: str
    subject: str | None = None
    sync_token: str | None = None
    token_version: int = 0
    last_synced_at: datetime | None = None
    last_channel_id: str | None = None
    last_message_number: int | None = None
    last_notified_at: datetime | None = None
    status: CalendarStatus = CalendarStatus.ACTIVE
    last_error: str | None = None


PENDING_RESOURCE_ID = ""
"""The resource id of a channel recorded before events.watch has answered."""


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """A Calendar watch channel; ``token`` is the per-channel secret Google echoes back.

    ``resource_id`` is PENDING_RESOURCE_ID between recording the channel and Google's answer.
    """

    channel_id: str
    calendar_id: str
    resource_id: str
    token: Secret
    expiration: datetime
    state: ChannelState = ChannelState.LIVE


@dataclass(frozen=True, slots=True)
class Link:
    """(calendar, event) -> conference: the only memory of what to delete after a cancel."""

    calendar_id: str
    event_id: str
    conference_id: str
    last_fingerprint: str | None = None
    last_event_updated: datetime | None = None
    state: LinkState = LinkState.LIVE
    # When the add-on created it (None for links a listing made). Kept by later upserts that
    # carry None: an event Calendar never shows is told apart from one about to be saved.
    created_at: datetime | None = None
    # The add-on request that made it (ingest/addon_access.py's request_key; None for a listing's):
    # a replay of that request is answered with this conference. Kept, like created_at.
    request_key: str | None = None
    # A series' occurrences that were cancelled or moved, as last told to the provider (by
    # original start): a change of one occurrence is folded into these (processors/commands.py).
    exceptions: tuple[Occurrence, ...] = ()
    # When the link may be forgotten (confsync/retention.py): its event ended, or its conference
    # was deleted, CONFSYNC_RETAIN_DAYS before. None: kept (an unbounded series, an unconfirmed link).
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AppliedVersion:
    """The newest event version the conferencing service has been given for a conference;
    ``expires_at`` as a link's (None: kept)."""

    conference_id: str
    event_updated: datetime
    fingerprint: str
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Purged:
    """What one retention sweep removed (or, in a dry run, found) past its ``expires_at``.
    ``by_ttl``: the store deletes expired records itself (Firestore's TTL policy), so the sweep
    has nothing to do."""

    links: int = 0
    applied: int = 0
    by_ttl: bool = False


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A published ConferenceCommand not yet settled by a publisher (applied, dropped as stale
    or duplicate, or dead-lettered). ``due_at``: when to publish it again if it is still here
    (it was lost or is stuck in the broker); ``attempts``: how often that has happened.
    ``deferred``: not published yet; it goes out first at ``due_at`` (a delete waiting out the
    grace), and that first publication is no repair."""

    command_id: str
    conference_id: str
    data: bytes
    due_at: datetime
    attempts: int = 0
    deferred: bool = False
    calendar_id: str | None = None  # the calendar whose listing made it (None: written before it was kept)


# -- people and their grants (accounts/) ---------------------------------------------------------


class OAuthProvider(StrEnum):
    """Whose OAuth grant: the user's Google account, or their account at the conferencing vendor."""

    GOOGLE = "google"
    VENDOR = "vendor"


class GrantStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"  # the provider refused the refresh token (invalid_grant): waits for a reconnect
    DISCONNECTED = "disconnected"  # the user disconnected it in confsync


class UserStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class User:
    """A person, identified by the email a Google ID token verified; ``domain`` is its ``hd``."""

    email: str
    domain: str | None = None
    created_at: datetime | None = None
    status: UserStatus = UserStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class Grant:
    """One user's OAuth grant at one provider: the refresh token, sealed by accounts/vault.py.

    ``sealed_token`` is the vault's sealed record (its text form), opaque to the store and a
    ``Secret`` so that neither it nor a logged ``Grant`` shows it. ``version`` guards
    compare-and-set (``Store.put_grant``): 0 means never stored. ``account_id`` and
    ``account_email`` name the vendor account the grant acts for, when the provider says.
    """

    user: str
    provider: OAuthProvider
    sealed_token: Secret
    scopes: tuple[str, ...] = ()
    status: GrantStatus = GrantStatus.ACTIVE
    version: int = 0
    updated_at: datetime | None = None
    account_id: str | None = None
    account_email: str | None = None


# -- the connect flow and the commands held for a reconnect (accounts/) ----------------------------


class FlowStage(StrEnum):
    GOOGLE = "google"  # waiting for Google's consent
    VENDOR = "vendor"  # waiting for the vendor's consent
    SIGNIN = "signin"  # the settings page: waiting for Google's sign-in
    DONE = "done"  # finished or refused: its state can never be used again


@dataclass(frozen=True, slots=True)
class ConnectFlow:
    """One run of the connect flow (accounts/connect.py), keyed by the id its signed state carries.

    ``browser`` is the SHA-256 (hex) of the cookie that ties the flow to the browser that
    started it; ``verifier`` is the PKCE code verifier of the consent under way. ``version``
    guards compare-and-set (``Store.put_flow``): 0 means never stored."""

    flow_id: str
    user: str
    stage: FlowStage
    expires_at: datetime
    browser: str
    verifier: Secret | None = None
    version: int = 0


@dataclass(frozen=True, slots=True)
class HeldCommand:
    """A conference command waiting for its owner to reconnect their vendor account.

    ``data`` is the ConferenceCommand message as published; held commands go out again oldest
    first (``held_at``, then ``command_id``)."""

    owner: str
    command_id: str
    conference_id: str
    data: bytes
    held_at: datetime
    cause: str
