"""Users' OAuth grants: refresh tokens sealed by the vault, kept in the store with compare-and-set.

``Grants`` is the one way in: it seals on the way to the store and opens on the way out, so a
refresh token exists in clear only as a ``Secret`` in the caller's hands. Each grant's token is
sealed for ``grant_context(user, provider)``, so a sealed token copied to another user's row
does not open there.

Emails are compared as Google compares them (case-insensitively): they are stored lower-cased.
A refresh token the provider rotates is saved with ``rotate`` against the version that was read,
so of two workers refreshing at once exactly one stores its successor, and the other learns it
lost (``None``) and reads the winner's. ``mark_revoked`` (for a provider's ``invalid_grant``) is
versioned the same way: a token that failed must not revoke a newer one the user has since
granted. Known gap: versions restart at 1 after ``forget``, so a rotation that read version 1
before a forget and a reconnect could still win against the new grant's version 1 (a window
of one token refresh); closing it needs versions that never repeat for a (user, provider).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime

import structlog

from accounts.vault import Sealed, Vault
from confsync.errors import TransientError
from confsync.ports import Store
from confsync.settings import Secret
from confsync.store.records import Grant, GrantStatus, OAuthProvider

__all__ = ["Grants", "grant_context", "normalise_email"]

log = structlog.get_logger(__name__)

_SAVE_ATTEMPTS = 5  # a (re)connect retries this often when a rotation or revocation races it


def normalise_email(email: str) -> str:
    return email.strip().lower()


def grant_context(user: str, provider: OAuthProvider) -> str:
    """What a grant's token is sealed for: its owner and provider."""
    return f"grant:{normalise_email(user)}:{provider.value}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Grants:
    """Save, read, rotate and revoke users' refresh tokens over a ``Store`` and a ``Vault``."""

    def __init__(self, store: Store, vault: Vault, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self._store = store
        self._vault = vault
        self._clock = clock

    def get(self, user: str, provider: OAuthProvider) -> Grant | None:
        return self._store.get_grant(normalise_email(user), provider)

    def save(  # noqa: PLR0913 - what the provider answered, each named
        self,
        user: str,
        provider: OAuthProvider,
        refresh_token: Secret,
        scopes: Iterable[str],
        *,
        account_id: str | None = None,
        account_email: str | None = None,
    ) -> Grant:
        """(Re)connect: an active grant with this token, replacing whatever was stored.

        The user has just authorized, so this wins over a rotation or revocation racing it
        (it reads again and retries); TransientError if the grant keeps changing."""
        email = normalise_email(user)
        grant = Grant(
            user=email,
            provider=provider,
            sealed_token=self._seal(email, provider, refresh_token),
            scopes=tuple(sorted(set(scopes))),
            updated_at=self._clock(),
            account_id=account_id,
            account_email=account_email,
        )
        for _ in range(_SAVE_ATTEMPTS):
            current = self._store.get_grant(email, provider)
            expected = 0 if current is None else current.version
            if self._store.put_grant(grant, expected_version=expected):
                log.info("grant saved", user=email, provider=provider.value, version=expected + 1)
                return replace(grant, version=expected + 1)
        raise TransientError(f"the {provider.value} grant of {email} kept changing while it was saved")

    def unseal(self, grant: Grant) -> Secret:
        """The refresh token of a grant read from the store (VaultError if it does not open)."""
        sealed = Sealed.decode(grant.sealed_token.reveal())
        return self._vault.open(sealed, grant_context(grant.user, grant.provider))

    def refresh_token(self, user: str, provider: OAuthProvider) -> Secret | None:
        """The active grant's refresh token; None when there is no grant or it is not active."""
        grant = self.get(user, provider)
        if grant is None or grant.status is not GrantStatus.ACTIVE:
            return None
        return self.unseal(grant)

    def rotate(self, user: str, provider: OAuthProvider, old_version: int, new_token: Secret) -> Grant | None:
        """Store the provider's successor token if the grant is still at ``old_version``.

        The stored grant (one version on) if this call won; None if it lost: another worker
        rotated first, or the grant was revoked, reconnected or forgotten since it was read."""
        current = self.get(user, provider)
        if current is None or current.version != old_version:
            return None
        rotated = replace(
            current,
            sealed_token=self._seal(current.user, provider, new_token),
            updated_at=self._clock(),
        )
        if not self._store.put_grant(rotated, expected_version=old_version):
            log.info("grant rotation lost a race", user=current.user, provider=provider.value, version=old_version)
            return None
        return replace(rotated, version=old_version + 1)

    def mark_revoked(self, user: str, provider: OAuthProvider, version: int) -> bool:
        """The provider refused the token of the grant at ``version`` (``invalid_grant``): mark
        it revoked, unless it has changed since (a newer token is not revoked by an older one's
        failure). True if this call marked it."""
        current = self.get(user, provider)
        if current is None or current.version != version or current.status is GrantStatus.REVOKED:
            return False
        revoked = replace(current, status=GrantStatus.REVOKED, updated_at=self._clock())
        marked = self._store.put_grant(revoked, expected_version=version)
        if marked:
            log.info("grant revoked", user=current.user, provider=provider.value, version=version + 1)
        return marked

    def forget(self, user: str) -> None:
        """Delete the user and all their grants."""
        email = normalise_email(user)
        self._store.forget_user(email)
        log.info("user forgotten", user=email)

    def _seal(self, email: str, provider: OAuthProvider, token: Secret) -> Secret:
        return Secret(self._vault.seal(token, grant_context(email, provider)).encode())
