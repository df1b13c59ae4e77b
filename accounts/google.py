"""Reading a calendar as its owner: their own Google grant, or domain-wide delegation.

``OwnerCredentials`` is the Calendar clients' credentials factory (``confsync.calendar``): for
a user of a delegated domain, the service account acting as them; for anyone else, their
grant's refresh token (opened from the vault) in google-auth's own user ``Credentials``, which
refreshes access tokens itself. Google does not rotate these refresh tokens, so nothing is
saved back on a refresh.

A refresh that Google answers ``invalid_grant`` means the user revoked confsync (or their
admin did): ``_RevocableCredentials`` marks that grant revoked (versioned: a grant the user
has renewed since is left alone) and raises ``Disconnected``, which the processor turns into
a disconnected calendar, never a delete. Any other refresh failure (no answer, a 5xx) stays a
transient error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.auth import exceptions as google_auth_exceptions
from google.auth.credentials import Credentials
from google.oauth2 import credentials as user_credentials

from accounts.grants import Grants, normalise_email
from confsync.calendar import CALENDAR_SCOPES
from confsync.errors import AuthError, Disconnected
from confsync.settings import Secret
from confsync.store.records import GrantStatus, OAuthProvider

__all__ = ["OwnerCredentials", "is_revoked"]

CredentialsFactory = Callable[[str], Credentials]


def is_revoked(err: google_auth_exceptions.RefreshError) -> bool:
    """Whether Google's refusal says the grant is gone (``invalid_grant``), not a passing failure."""
    details = err.args[1] if len(err.args) > 1 else None
    if isinstance(details, dict):
        return details.get("error") == "invalid_grant"
    return str(err).startswith("invalid_grant")


class _RevocableCredentials(user_credentials.Credentials):
    """google-auth's user credentials that mark their grant revoked when Google says so."""

    def __init__(self, *args: Any, on_revoked: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._on_revoked = on_revoked

    def refresh(self, request: Any) -> None:
        try:
            super().refresh(request)  # type: ignore[no-untyped-call]
        except google_auth_exceptions.RefreshError as err:
            if err.retryable or not is_revoked(err):
                raise
            self._on_revoked()
            raise


class OwnerCredentials:
    """Credentials for a calendar's owner (a ``confsync.calendar.CredentialsFactory``)."""

    def __init__(  # noqa: PLR0913 - the OAuth client and the two ways of reading, named
        self,
        grants: Grants,
        *,
        client_id: str,
        client_secret: Secret,
        token_url: str,
        delegated_domains: tuple[str, ...] = (),
        delegated: CredentialsFactory | None = None,
        scopes: tuple[str, ...] = CALENDAR_SCOPES,
    ) -> None:
        self._grants = grants
        self._client_id = client_id
        self._client_secret = client_secret
        self._token_url = token_url
        self._domains = frozenset(domain.lower() for domain in delegated_domains)
        self._delegated = delegated
        self._scopes = scopes

    def delegates(self, user: str) -> bool:
        """Whether ``user``'s domain granted domain-wide delegation (and a service account is set)."""
        _, _, domain = normalise_email(user).rpartition("@")
        return self._delegated is not None and domain in self._domains

    def has_access(self, user: str) -> bool:
        """Whether confsync can read ``user``'s calendars now: delegation, or an active Google grant."""
        if self.delegates(user):
            return True
        grant = self._grants.get(user, OAuthProvider.GOOGLE)
        return grant is not None and grant.status is GrantStatus.ACTIVE

    def __call__(self, subject: str) -> Credentials:
        if not subject:
            raise AuthError("a calendar with no owner cannot be read: its owner must add a conference first")
        if self.delegates(subject):
            assert self._delegated is not None  # noqa: S101 - delegates() checked it
            return self._delegated(subject)
        user = normalise_email(subject)
        grant = self._grants.get(user, OAuthProvider.GOOGLE)
        if grant is None or grant.status is not GrantStatus.ACTIVE:
            raise Disconnected(f"{user} has not connected Google Calendar", user=user, provider="google")
        version = grant.version

        def revoked() -> None:
            self._grants.mark_revoked(user, OAuthProvider.GOOGLE, version)

        credentials: Credentials = _RevocableCredentials(
            token=None,
            refresh_token=self._grants.unseal(grant).reveal(),
            client_id=self._client_id,
            client_secret=self._client_secret.reveal(),
            token_uri=self._token_url,
            scopes=list(self._scopes),
            on_revoked=revoked,
        )
        return credentials
