"""Users' access tokens at the conferencing vendor (``confsync.ports.AccessTokens``).

An access token is kept in memory per user until shortly before it expires; a refresh uses the
grant's refresh token from the vault. The vendor rotates refresh tokens on every refresh, so
the successor is saved with compare-and-set against the grant version that was read
(``Grants.rotate``): of two processes refreshing at once, one stores its successor and the
other keeps the access token it got (the vendor's grace period covers the refresh token it
spent). ``invalid_grant`` marks that grant version revoked and raises ``Disconnected``; the
vendor not answering is a ``TransientError`` and changes nothing stored.

One process refreshes a user's token once at a time (a lock per user), so a burst of
commands for one owner costs one refresh, not one each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from accounts.grants import Grants, normalise_email
from accounts.oauth import OAuthClient, Tokens
from confsync.errors import Disconnected
from confsync.settings import Secret
from confsync.store.records import GrantStatus, OAuthProvider

__all__ = ["VendorTokens"]

log = structlog.get_logger(__name__)

_EARLY_S = 60.0  # refresh this long before expiry: a token must outlive the call it goes out with
_DEFAULT_LIFETIME_S = 300.0  # when the vendor does not say
_MAX_KEPT = 10_000


@dataclass(frozen=True, slots=True)
class _Access:
    token: Secret
    good_until: float


class VendorTokens:
    """Access tokens for users' vendor accounts, refreshed from their grants."""

    def __init__(self, grants: Grants, client: OAuthClient, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._grants = grants
        self._client = client
        self._clock = clock
        self._kept: dict[str, _Access] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def access_token(self, user: str) -> Secret:
        email = normalise_email(user)
        kept = self._kept.get(email)
        if kept is not None and kept.good_until > self._clock():
            return kept.token
        return self._refresh(email, stale=kept.token if kept else None)

    def refreshed(self, user: str, rejected: Secret) -> Secret:
        return self._refresh(normalise_email(user), stale=rejected)

    def forget(self, user: str) -> None:
        """Drop the kept token (the user disconnected)."""
        self._kept.pop(normalise_email(user), None)

    def _refresh(self, email: str, *, stale: Secret | None) -> Secret:
        with self._lock_for(email):
            kept = self._kept.get(email)
            if kept is not None and kept.token != stale and kept.good_until > self._clock():
                return kept.token  # another thread refreshed while this one waited
            tokens = self._tokens(email)
            lifetime = tokens.expires_in or _DEFAULT_LIFETIME_S
            early = min(_EARLY_S, lifetime / 2)
            self._keep(email, _Access(tokens.access_token, self._clock() + lifetime - early))
            return tokens.access_token

    def _tokens(self, email: str) -> Tokens:
        """Fresh tokens from the stored grant. A refusal of a grant that was replaced meanwhile (the
        user reconnected) is tried once more with its successor; only a refused grant that is
        still the stored one is marked revoked."""
        for _ in range(2):
            grant = self._grants.get(email, OAuthProvider.VENDOR)
            if grant is None or grant.status is not GrantStatus.ACTIVE:
                self._kept.pop(email, None)
                raise Disconnected(f"{email} has no connected vendor account", user=email, provider="vendor")
            spent = self._grants.unseal(grant)
            try:
                tokens = self._client.refresh(spent, user=email)
            except Disconnected:
                self._kept.pop(email, None)
                if self._grants.mark_revoked(email, OAuthProvider.VENDOR, grant.version):
                    log.warning("vendor grant revoked", user=email)
                    raise
                continue  # the grant changed since it was read: try the one stored now
            if tokens.refresh_token is not None and tokens.refresh_token != spent:
                self._grants.rotate(email, OAuthProvider.VENDOR, grant.version, tokens.refresh_token)
            return tokens
        raise Disconnected(f"the vendor grant of {email} keeps being refused", user=email, provider="vendor")

    def _keep(self, email: str, access: _Access) -> None:
        if len(self._kept) >= _MAX_KEPT:
            now = self._clock()
            for user in [user for user, kept in self._kept.items() if kept.good_until <= now]:
                del self._kept[user]
        self._kept[email] = access

    def _lock_for(self, email: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(email)
            if lock is None:
                if len(self._locks) >= _MAX_KEPT:
                    self._locks.clear()  # only costs a duplicate refresh for a thread waiting right now
                lock = self._locks[email] = threading.Lock()
            return lock
