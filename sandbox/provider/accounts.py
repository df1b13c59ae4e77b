"""The conferencing vendor's accounts: its users, the OAuth 2.0 grants they give apps, and who
a call to ``/v1`` acts for.

A typical vendor's offer, over the shared authorization server (sandbox/oauth/): a person
with an account allows an app on the consent page, the app exchanges the code (PKCE S256)
for an access token that expires after ``token_ttl_s`` and a refresh token that every
refresh replaces (rotation: the old one keeps working ``refresh_grace_s`` longer, so a
client that lost the answer to a refresh can retry it). There is no ``access_type``: every
grant comes with a refresh token. Revoking a token (``/oauth/revoke``) or the user
disconnecting the app in their settings ends the grant and all its tokens.

A bearer token on ``/v1`` is either the app's API key (the app-level credential: the app
itself, which sees every conference and creates conferences in no user's account) or a
user's access token (the call acts for that user: their conferences only).

Scopes: ``conferences`` (create, change, delete and read the user's conferences) and
``conferences:read`` (read them only). A client asking for any other scope is sent back with
``invalid_scope``. A user's token needs ``conferences`` for ``POST``, ``PATCH`` and ``DELETE``
on ``/v1`` and either scope for ``GET``; ``missing_scope`` says which a call lacks. The API
key is not scoped.

Users are kept by the ``ProviderStore`` (in its SQLite file with ``--db``, so they survive a
restart); clients, grants and tokens are kept in memory only, so after a restart apps
register again and users sign in again.
"""

from __future__ import annotations

import hmac
import re

from sandbox.clock import Clock
from sandbox.identity import Principal, PrincipalKind, TokenRefused
from sandbox.oauth import AuthorizationServer
from sandbox.provider.store import ProviderStore

__all__ = ["APP", "READ_SCOPE", "SCOPE_NAMES", "WRITE_SCOPE", "VendorAccounts", "missing_scope", "normal_email"]

APP = Principal(PrincipalKind.APP, "api-key")
WRITE_SCOPE, READ_SCOPE = "conferences", "conferences:read"
SCOPE_NAMES = {
    WRITE_SCOPE: "Create, change and delete meetings in your My Web Conferencing account",
    READ_SCOPE: "See the meetings in your My Web Conferencing account",
}
_READS = frozenset({"GET", "HEAD"})
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
_MAX_EMAIL = 320


def normal_email(value: object) -> str | None:
    """The address lowercased (as the consent page sends it), or None if it is not one."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email if len(email) <= _MAX_EMAIL and _EMAIL.fullmatch(email) else None


class VendorAccounts:
    """Users (in the store), the OAuth server, and the bearer check of ``/v1``."""

    def __init__(
        self,
        store: ProviderStore,
        api_key: str,
        clock: Clock,
        *,
        token_ttl_s: int = 3600,
        refresh_grace_s: float = 30.0,
    ) -> None:
        self._store = store
        self._api_key = api_key.encode()
        self.clock = clock
        self.oauth = AuthorizationServer(
            clock,
            token_ttl_s=token_ttl_s,
            rotate_refresh_grace_s=refresh_grace_s,
            token_prefix="mwc_",  # noqa: S106 - the shape of the vendor's access tokens, not a secret
            always_offline=True,
            scopes=frozenset(SCOPE_NAMES),
        )

    # -- users -------------------------------------------------------------------------------

    def add_user(self, email: str) -> bool:
        """True if the account is new; ``email`` as normal_email gives it."""
        return self._store.add_user(email, self.clock.now())

    def principal_for(self, email: str) -> Principal | None:
        return Principal(PrincipalKind.USER, email) if self._store.has_user(email) else None

    def users(self) -> list[str]:
        return self._store.users()

    def disconnect(self, email: str) -> int | None:
        """The user removed the app's access in their settings: the number of grants ended,
        or None if there is no such user."""
        if not self._store.has_user(email):
            return None
        return self.oauth.revoke_user(email)

    def reset(self) -> None:
        """Every user's grants end, then the store forgets users and conferences (clients stay
        registered, as the app's API key stays valid)."""
        for email in self._store.users():
            self.oauth.revoke_user(email)
        self._store.reset()

    # -- the bearer check ----------------------------------------------------------------------

    def authenticate(self, bearer: bytes) -> Principal:
        """APP for the API key, the user for one of their live access tokens; TokenRefused
        otherwise (``reason`` says unknown, expired or revoked)."""
        if hmac.compare_digest(bearer, self._api_key):
            return APP
        try:
            token = bearer.decode("ascii")
        except UnicodeDecodeError as err:
            raise TokenRefused("unknown token") from err
        return self.oauth.authenticate(token)


def missing_scope(principal: Principal, method: str) -> str | None:
    """The least scope a ``/v1`` call by ``principal`` needs and its token lacks, or None if it
    may go ahead: a read takes either scope, anything else ``conferences``; the API key is not
    scoped."""
    if principal.kind is PrincipalKind.APP or WRITE_SCOPE in principal.scopes:
        return None
    if method not in _READS:
        return WRITE_SCOPE
    return None if READ_SCOPE in principal.scopes else READ_SCOPE


def journal_name(principal: Principal | None) -> str | None:
    """Who a call acted for, as the journal shows it: ``app``, ``user:EMAIL`` or None."""
    if principal is None:
        return None
    return "app" if principal.kind is PrincipalKind.APP else principal.describe()
