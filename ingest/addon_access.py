"""Who may ask the add-on API for what: the rules of "Identity and ownership"
(docs/ARCHITECTURE.md) that need no user credentials, each checked before anything changes.

- **Domains.** With ``CONFSYNC_ALLOWED_DOMAINS`` set, the caller's domain must be listed. The
  domain is the ID token's ``hd`` claim, which Google sets only for accounts of a Google
  Workspace or Cloud organization and which is the claim Google says to check
  (https://developers.google.com/identity/openid-connect/openid-connect#id_token-hd). An
  email's domain proves no membership (anyone who can read mail there can make a consumer
  Google account on it, and keep it after leaving), so an account without ``hd`` has no domain,
  except a Google-issued consumer address (``@gmail.com``, ``@googlemail.com``), which counts
  as ``gmail.com``.
- **Ownership.** A calendar's owner (its ``subject`` in the store) is the first user whose
  create the API accepted for it, and is never replaced by another user. ``WriteAccess`` is the
  seam for who may write a calendar: ``OwnerOrFirstClaim`` allows the owner, or anyone while
  the calendar has none. With users' accounts on, ``CalendarWriters`` asks that first, then
  Calendar itself, as the caller (their grant, or delegation): ``calendarList.get`` must give
  the writer or owner role (403 ``no_write_access`` otherwise).
- **Links.** A live link of the event to a conference is never replaced: only a replay of the
  request that made it (the same ``request_key``) is answered again, with that conference.
- **Idempotency per caller.** ``request_key`` hashes the caller with the calendar, the event
  and the add-on's ``requestId``; it is what the conferencing service is given as its
  ``request_id``, so one caller's ``requestId`` never finds another's conference, nor one
  event's another event's.
- **Rate.** ``RateLimiter`` is a token bucket per caller (``CONFSYNC_ADDON_RATE_PER_MIN``),
  kept in the process: each instance applies the limit on its own.

The dev token (local mode only, where authentication is off anyway) stands for the local
operator, not a user: it may write any calendar, claims none, has no domain to check and no
rate limit. Its link and idempotency rules are everyone's.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from confsync.ports import NewConference, Store, UserAccounts
from confsync.settings import Settings
from confsync.store import CalendarState, LinkState

__all__ = [
    "DEV_CALLER",
    "Access",
    "AddonGuard",
    "CalendarWriters",
    "Caller",
    "OwnerOrFirstClaim",
    "RateLimiter",
    "Refusal",
    "RefusalReason",
    "WriteAccess",
    "caller_from_claims",
    "event_has_conference",
    "ownership",
    "request_key",
]

_GOOGLE_CONSUMER_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
_CONSUMER_DOMAIN = "gmail.com"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who called the add-on API: a Google user (a verified ID token) or the dev token."""

    email: str
    domain: str | None = None  # hd, or gmail.com for a Google-issued consumer address
    dev: bool = False

    @property
    def key(self) -> str:
        """The caller's identity for comparisons: emails ignore case."""
        return "dev" if self.dev else self.email.lower()

    def is_(self, subject: str | None) -> bool:
        return subject is not None and not self.dev and subject.lower() == self.key


DEV_CALLER = Caller("dev", dev=True)


def caller_from_claims(claims: Mapping[str, Any]) -> Caller:
    """The caller a verified ID token names (``email`` is verified by then)."""
    email = str(claims["email"])
    hd = claims.get("hd")
    if isinstance(hd, str) and hd:
        return Caller(email, hd.lower())
    _, _, mail_domain = email.rpartition("@")
    return Caller(email, _CONSUMER_DOMAIN if mail_domain.lower() in _GOOGLE_CONSUMER_DOMAINS else None)


def request_key(caller: Caller, new: NewConference) -> str:
    """The create's idempotency key at the conferencing service: one per caller, calendar,
    event and ``requestId`` (JSON keeps the parts apart whatever they contain)."""
    parts = json.dumps([caller.key, new.calendar_id, new.event_id, new.request_id])
    return "cs1-" + hashlib.sha256(parts.encode()).hexdigest()


class Access(StrEnum):
    """What a caller may do with a calendar."""

    OWNER = "owner"
    FIRST_CLAIM = "first_claim"  # nobody owns it yet: the caller's create makes it theirs
    OPERATOR = "operator"  # the dev token
    OTHER_OWNER = "other_owner"  # it belongs to another user
    NO_WRITE = "no_write"  # Calendar says the caller may not write it
    NOT_OWNER = "not_owner"  # nobody owns it yet, and Calendar says the caller is a writer, not an owner

    @property
    def allowed(self) -> bool:
        return self not in (Access.OTHER_OWNER, Access.NO_WRITE, Access.NOT_OWNER)


class WriteAccess(Protocol):
    def may_write(self, caller: Caller, calendar_id: str) -> Access:
        """Whether ``caller`` may attach conferences to events of ``calendar_id``, and as whom."""
        ...


class OwnerOrFirstClaim:
    """Today's ``WriteAccess``: the calendar's owner, or anyone while it has none."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def may_write(self, caller: Caller, calendar_id: str) -> Access:
        return ownership(caller, self._store.get_calendar(calendar_id))


_WRITER_ROLES = frozenset({"owner", "writer"})


class CalendarWriters:
    """The owner rule, then Calendar's word: ``calendarList.get`` as the caller must say writer or
    owner. Raises what asking Calendar raises: Disconnected (the caller must connect again),
    TransientError."""

    def __init__(self, store: Store, accounts: UserAccounts) -> None:
        self._owners = OwnerOrFirstClaim(store)
        self._accounts = accounts

    def may_write(self, caller: Caller, calendar_id: str) -> Access:
        access = self._owners.may_write(caller, calendar_id)
        if not access.allowed or caller.dev:
            return access
        role = self._accounts.calendars(caller.email).access_role(calendar_id)
        if role not in _WRITER_ROLES:
            return Access.NO_WRITE
        # The first conference makes its caller the calendar's owner in confsync, whose
        # credentials then read it: only an owner in Calendar may become that.
        return Access.NOT_OWNER if access is Access.FIRST_CLAIM and role != "owner" else access


def ownership(caller: Caller, state: CalendarState | None) -> Access:
    """The owner rule alone: whose the calendar is, as the store says."""
    if caller.dev:
        return Access.OPERATOR
    if state is None or state.subject is None:
        return Access.FIRST_CLAIM
    return Access.OWNER if caller.is_(state.subject) else Access.OTHER_OWNER


class RefusalReason(StrEnum):
    DOMAIN_NOT_ALLOWED = "domain_not_allowed"
    CALENDAR_OF_ANOTHER_USER = "calendar_of_another_user"
    NO_WRITE_ACCESS = "no_write_access"
    OWNER_FIRST = "owner_first"
    EVENT_HAS_ANOTHER_CONFERENCE = "event_has_another_conference"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request refused before anything changed: the API answers ``status`` with these."""

    status: int
    reason: RefusalReason
    message: str
    conference_id: str | None = None  # the conference the event keeps (409)
    retry_after_s: int | None = None  # 429


class RateLimiter:
    """A token bucket per caller: ``per_min`` requests a minute, a minute's worth at once.

    Buckets live in this process. A bucket that has filled up again is as good as none, so
    when more than ``max_tracked`` callers are tracked the full ones are forgotten."""

    def __init__(
        self, per_min: float, *, clock: Callable[[], float] = time.monotonic, max_tracked: int = 10_000
    ) -> None:
        self._capacity = per_min
        self._per_s = per_min / 60.0
        self._clock = clock
        self._max_tracked = max_tracked
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, caller: str) -> float | None:
        """Spend one token of ``caller``'s: None if there was one, else the seconds until there is."""
        with self._lock:
            now = self._clock()
            tokens = self._tokens(caller, now)
            if tokens < 1.0:
                return (1.0 - tokens) / self._per_s
            self._buckets[caller] = (tokens - 1.0, now)
            if len(self._buckets) > self._max_tracked:
                self._forget_full(now)
            return None

    def _tokens(self, caller: str, now: float) -> float:
        tokens, at = self._buckets.get(caller, (self._capacity, now))
        return min(self._capacity, tokens + (now - at) * self._per_s)

    def _forget_full(self, now: float) -> None:
        full = [caller for caller in self._buckets if self._tokens(caller, now) >= self._capacity]
        for caller in full:
            del self._buckets[caller]


class AddonGuard:
    """Every refusal the add-on API makes for who is asking, in the order it makes them.

    ``admit`` is checked as soon as the caller is known (before the body is read); ``check``
    once the request is parsed (it reads the store, so async callers run it in a thread).
    Neither changes anything: the caller's claim on a calendar is ``claim``, made after both."""

    def __init__(
        self,
        store: Store,
        *,
        allowed_domains: tuple[str, ...] = (),
        limiter: RateLimiter | None = None,
        access: WriteAccess | None = None,
    ) -> None:
        self._store = store
        self._domains = frozenset(domain.lower() for domain in allowed_domains)
        self._limiter = limiter
        self._access = access or OwnerOrFirstClaim(store)

    @classmethod
    def from_settings(cls, store: Store, settings: Settings, accounts: UserAccounts | None = None) -> AddonGuard:
        """The guard ``CONFSYNC_ALLOWED_DOMAINS`` and ``CONFSYNC_ADDON_RATE_PER_MIN`` describe, asking
        Calendar who may write a calendar when users' accounts are on."""
        rate = settings.addon_rate_per_min
        return cls(
            store,
            allowed_domains=settings.allowed_domains,
            limiter=RateLimiter(rate) if rate > 0 else None,
            access=CalendarWriters(store, accounts) if accounts is not None else None,
        )

    def admit(self, caller: Caller) -> Refusal | None:
        if caller.dev:
            return None
        if self._domains and caller.domain not in self._domains:
            shown = caller.domain or "no Google Workspace domain"
            return Refusal(403, RefusalReason.DOMAIN_NOT_ALLOWED, f"Accounts of {shown} may not use this add-on.")
        wait = self._limiter.take(caller.key) if self._limiter is not None else None
        if wait is not None:
            retry = max(1, math.ceil(wait))
            return Refusal(
                429, RefusalReason.RATE_LIMITED, f"Too many requests; try again in {retry} s.", retry_after_s=retry
            )
        return None

    def check(self, caller: Caller, new: NewConference, key: str) -> Refusal | None:
        access = self._access.may_write(caller, new.calendar_id)
        if access is Access.NO_WRITE:
            return Refusal(
                403,
                RefusalReason.NO_WRITE_ACCESS,
                "You cannot edit this calendar's events, so you cannot add a conference.",
            )
        if access is Access.NOT_OWNER:
            return Refusal(
                403, RefusalReason.OWNER_FIRST, "The calendar's owner must add the first conference to this calendar."
            )
        if not access.allowed:
            return _another_users_calendar()
        link = self._store.get_link(new.calendar_id, new.event_id)
        if link is not None and link.state is LinkState.LIVE and link.request_key != key:
            return event_has_conference(link.conference_id)
        return None

    def claim(self, caller: Caller, calendar_id: str) -> Refusal | None:
        """Make the calendar the caller's if nobody owns it; refused if another user won it meanwhile.
        The dev token claims nothing: the calendar is recorded with the owner it has."""
        if caller.dev:
            self._store.ensure_calendar(calendar_id)
            return None
        owner = self._store.claim_calendar(calendar_id, caller.key).subject
        return None if caller.is_(owner) else _another_users_calendar()


def _another_users_calendar() -> Refusal:
    return Refusal(403, RefusalReason.CALENDAR_OF_ANOTHER_USER, "This calendar belongs to another user.")


def event_has_conference(conference_id: str) -> Refusal:
    return Refusal(
        409,
        RefusalReason.EVENT_HAS_ANOTHER_CONFERENCE,
        f"This event already has conference {conference_id}; remove it before adding another.",
        conference_id=conference_id,
    )
