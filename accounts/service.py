"""Users' accounts as the other stages use them: ``confsync.ports.UserAccounts``.

Users' accounts are on when confsync has an OAuth client: Google's (``CONFSYNC_OAUTH_CLIENT_ID``:
calendars are read as their owners) and/or the vendor's (``CONFSYNC_VENDOR_CLIENT_ID``:
conferences live in their owners' vendor accounts). Ingest needs both (the connect pages).

``Accounts`` ties the parts of this stage together for one process: the vault and the grants
in the store, the two OAuth clients (Google's and the vendor's, from the settings), the
connect links, the vendor access tokens, and the Calendar credentials of each owner. The
composition root (stack/root.py) builds it once; the add-on API asks it whether a caller is
connected and for the APIs acting as them; the connect routes take its ``connector``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from accounts.connect import ConnectLinks, Connector
from accounts.google import OwnerCredentials
from accounts.grants import Grants
from accounts.oauth import OAuthClient
from accounts.offboard import Offboarding
from accounts.settings_page import SettingsPages
from accounts.vault import Vault
from accounts.vendor import VendorTokens
from confsync.calendar import CALENDAR_SCOPES, CredentialsFactory
from confsync.errors import ConfigError
from confsync.oidc import OidcVerifier
from confsync.ports import CalendarClient, ConferenceProvider, Store
from confsync.settings import Settings
from confsync.store.records import GrantStatus, OAuthProvider

__all__ = ["Accounts", "google_client", "vendor_client"]

VENDOR_SCOPES = ("conferences",)
_LINK_KEY_PURPOSE = "connect-links"


def google_client(settings: Settings) -> OAuthClient:
    """confsync's Google OAuth client: sign-in, offline access, the calendar scopes."""
    if not settings.oauth_client_id or settings.oauth_client_secret is None:
        raise ConfigError("users' accounts need CONFSYNC_OAUTH_CLIENT_ID and CONFSYNC_OAUTH_CLIENT_SECRET")
    return OAuthClient(
        name=OAuthProvider.GOOGLE.value,
        client_id=settings.oauth_client_id,
        client_secret=settings.oauth_client_secret,
        authorize_url=settings.google_auth_url,
        token_url=settings.google_token_url,
        revoke_url=settings.google_revoke_url,
        scopes=("openid", "email", *CALENDAR_SCOPES),
        redirect_uri=_public(settings) + "/connect/google",
        consent_params=(("access_type", "offline"), ("prompt", "consent")),
    )


def vendor_client(settings: Settings) -> OAuthClient:
    """confsync's OAuth client at the conferencing vendor."""
    if not settings.vendor_client_id or settings.vendor_client_secret is None or not settings.provider_url:
        raise ConfigError(
            "users' accounts need CONFSYNC_VENDOR_CLIENT_ID, CONFSYNC_VENDOR_CLIENT_SECRET and CONFSYNC_PROVIDER_URL"
        )
    base = settings.provider_url.rstrip("/")
    return OAuthClient(
        name=OAuthProvider.VENDOR.value,
        client_id=settings.vendor_client_id,
        client_secret=settings.vendor_client_secret,
        authorize_url=base + "/oauth/authorize",
        token_url=base + "/oauth/token",
        revoke_url=base + "/oauth/revoke",
        scopes=VENDOR_SCOPES,
        redirect_uri=_public(settings) + "/connect/vendor",
    )


def _public(settings: Settings) -> str:
    return (settings.public_url or "").rstrip("/")


class Accounts:
    """This process's view of users' accounts (``confsync.ports.UserAccounts``)."""

    def __init__(  # noqa: PLR0913 - the stage's parts, named
        self,
        settings: Settings,
        store: Store,
        vault: Vault,
        *,
        conferences_as: Callable[[str], ConferenceProvider],
        calendars_as: Callable[[str], CalendarClient],
        stop_channels: Callable[[str], list[str]] = lambda _calendar: [],
        delegated: CredentialsFactory | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.grants = Grants(store, vault)
        # Each service holds only the client secrets it uses: the publisher the vendor's, the
        # processor Google's, ingest both (infra/README.md); a part is built from what is set.
        self.google = google_client(settings) if settings.oauth_client_id else None
        self.vendor = vendor_client(settings) if settings.vendor_client_id else None
        self.links = ConnectLinks(
            vault.derive(_LINK_KEY_PURPOSE), base_url=_public(settings), ttl_s=settings.connect_ttl_s
        )
        self.vendor_tokens = VendorTokens(self.grants, self.vendor) if self.vendor is not None else None
        self.credentials = (
            OwnerCredentials(
                self.grants,
                client_id=self.google.client_id,
                client_secret=self.google.client_secret,
                token_url=settings.google_token_url,
                delegated_domains=settings.delegated_domains,
                delegated=delegated,
            )
            if self.google is not None
            else None
        )
        self._conferences_as = conferences_as
        self._calendars_as = calendars_as
        self._stop_channels = stop_channels

    def connector(self, on_connected: Callable[[str], None]) -> Connector:
        """The connect flow (ingest): it needs both OAuth clients."""
        settings = self.settings
        if self.google is None or self.vendor is None:
            raise ConfigError(
                "the connect pages need both OAuth clients: CONFSYNC_OAUTH_CLIENT_ID and CONFSYNC_VENDOR_CLIENT_ID"
            )
        return Connector(
            self.store,
            self.grants,
            self.links,
            google=self.google,
            vendor=self.vendor,
            id_tokens=OidcVerifier(audience=self.google.client_id, certs_url=settings.google_certs_url),
            delegated_domains=settings.delegated_domains,
            on_connected=on_connected,
            ttl_s=settings.connect_ttl_s,
        )

    def settings_pages(self) -> SettingsPages:
        """The settings page (ingest): sign in with Google, then reconnect or disconnect."""
        settings = self.settings
        if self.google is None:
            raise ConfigError("the settings page signs users in with Google: CONFSYNC_OAUTH_CLIENT_ID")
        signin = replace(
            self.google,
            scopes=("openid", "email"),
            redirect_uri=_public(settings) + "/settings/google",
            consent_params=(),
        )
        credentials = self.credentials
        return SettingsPages(
            self.store,
            self.grants,
            self.links,
            signin=signin,
            id_tokens=OidcVerifier(audience=signin.client_id, certs_url=settings.google_certs_url),
            delegates=credentials.delegates if credentials is not None else lambda _user: False,
            disconnect=self.disconnect,
        )

    # -- confsync.ports.UserAccounts --------------------------------------------------------

    def connect_url(self, email: str, domain: str | None) -> str:
        return self.links.link_for(email, domain)

    def ready(self, email: str) -> bool:
        vendor = self.grants.get(email, OAuthProvider.VENDOR)
        connected = vendor is not None and vendor.status is GrantStatus.ACTIVE
        return connected and self.credentials is not None and self.credentials.has_access(email)

    def conferences(self, email: str) -> ConferenceProvider:
        return self._conferences_as(email)

    def calendars(self, email: str) -> CalendarClient:
        return self._calendars_as(email)

    def disconnect(self, email: str) -> dict[str, object]:
        return self.offboarding().__call__(email).to_json()

    def offboarding(self) -> Offboarding:
        """A user's disconnect (``confsync users disconnect``, ``DELETE /v1/me``)."""
        stop_channels = self._stop_channels
        clients = {client.name: client for client in (self.google, self.vendor) if client is not None}
        tokens = self.vendor_tokens
        return Offboarding(
            self.store,
            self.grants,
            {OAuthProvider(name): client for name, client in clients.items()},
            stop_channels,
            forget_tokens=tokens.forget if tokens is not None else lambda _user: None,
        )
