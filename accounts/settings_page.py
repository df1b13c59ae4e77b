"""The settings page: what a user has connected, and reconnect or disconnect.

The add-on's ``createSettingsUrlFunction`` opens ``GET /settings``. The page knows nobody
until they sign in with Google (OpenID Connect: ``openid email``, PKCE, the ID token of the
code exchange verified), with nothing stored: the PKCE verifier lives in the browser's cookie
and the signed OAuth state carries its hash. A signed-in browser holds a session cookie: a JWT (the connect
links' key, its own audience) naming the user, expiring after ``CONFSYNC_CONNECT_TTL_S``,
``HttpOnly``, ``SameSite=Lax``, path ``/settings``. Its id is also the form's ``csrf`` field:
reconnect and disconnect are POSTs that must carry both.

- Reconnect: to a fresh connect link for the signed-in user (accounts/connect.py).
- Disconnect: accounts/offboard.py, then a page that says what was done.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from accounts.connect import ConnectLinks, LinkRefused, Outcome, digest
from accounts.grants import Grants, normalise_email
from accounts.oauth import OAuthClient, new_verifier
from confsync.errors import ConfsyncError, TransientError
from confsync.oidc import OidcVerifier, TokenRejected
from confsync.ports import Store
from confsync.settings import Secret
from confsync.store.records import FlowStage, GrantStatus, OAuthProvider

__all__ = ["SESSION_COOKIE", "SettingsPages", "SettingsView"]

log = structlog.get_logger(__name__)

SESSION_COOKIE = "confsync_settings"
SIGNIN_COOKIE = "confsync_signin"
_SESSION = "settings-session"


@dataclass(frozen=True, slots=True)
class SettingsView:
    """What the settings page shows, or where it sends the browser."""

    outcome: Outcome | None = None  # a page of accounts/pages.py (sign-in problems, disconnected)
    status: int = 200
    user: str | None = None
    google: str = "none"  # active | revoked | delegated | none
    vendor: str = "none"  # active | revoked | none
    calendars: tuple[tuple[str, str], ...] = ()  # (calendar id, status)
    csrf: str | None = None
    signed_out: bool = False  # the sign-in page
    report: Mapping[str, object] | None = None  # after a disconnect
    redirect: str | None = None
    set_cookie: tuple[str, str] | None = None  # (name, value)


class SettingsPages:
    def __init__(  # noqa: PLR0913 - the page's collaborators, named
        self,
        store: Store,
        grants: Grants,
        links: ConnectLinks,
        *,
        signin: OAuthClient,
        id_tokens: OidcVerifier,
        delegates: Callable[[str], bool],
        disconnect: Callable[[str], dict[str, object]],
    ) -> None:
        self._store = store
        self._grants = grants
        self._links = links
        self._signin = signin
        self._id_tokens = id_tokens
        self._delegates = delegates
        self._disconnect = disconnect

    # -- signing in ---------------------------------------------------------------------------

    def start_signin(self) -> SettingsView:
        """To Google's sign-in. Nothing is stored: the PKCE verifier is the browser's cookie, and the
        signed state names its hash, so the answer is tied to this browser and a code to its verifier."""
        verifier = new_verifier()
        state = self._links.state_for(digest(verifier.reveal()), FlowStage.SIGNIN)
        url = self._signin.consent_url(state=state, verifier=verifier)
        return SettingsView(redirect=url, set_cookie=(SIGNIN_COOKIE, verifier.reveal()))

    def google_answer(self, params: Mapping[str, str], cookie: str | None) -> SettingsView:  # noqa: PLR0911 - one page per way it ends
        try:
            browser = self._links.read_state(params.get("state", ""), FlowStage.SIGNIN)
        except LinkRefused as refused:
            return SettingsView(refused.outcome, status=400)
        if cookie is None or not secrets.compare_digest(digest(cookie), browser):
            return SettingsView(Outcome.OTHER_BROWSER, status=400)
        if "code" not in params:
            return SettingsView(Outcome.DECLINED)
        try:
            tokens = self._signin.exchange(params["code"], Secret(cookie))
        except TransientError:
            return SettingsView(Outcome.UNAVAILABLE, status=503)
        except ConfsyncError:  # a spent or forged code
            return SettingsView(Outcome.INVALID, status=400)
        try:
            claims = self._id_tokens.verify(f"Bearer {tokens.id_token or ''}")
        except TokenRejected as rejected:
            if rejected.status >= 500:
                return SettingsView(Outcome.UNAVAILABLE, status=503)
            return SettingsView(Outcome.INVALID, status=400)
        user = normalise_email(str(claims["email"]))
        session = self._links.sign(_SESSION, {"sub": user, "jti": secrets.token_urlsafe(24)})
        log.info("settings: signed in", user=user)
        return SettingsView(redirect="/settings", set_cookie=(SESSION_COOKIE, session))

    # -- the page -----------------------------------------------------------------------------

    def show(self, session: str | None) -> SettingsView:
        signed_in = self._session(session)
        if signed_in is None:
            return SettingsView(signed_out=True)
        user, csrf = signed_in
        google = self._grant(user, OAuthProvider.GOOGLE)
        if google != "active" and self._delegates(user):
            google = "delegated"
        calendars = tuple((state.calendar_id, state.status.value) for state in self._store.calendars_of(user))
        vendor = self._grant(user, OAuthProvider.VENDOR)
        return SettingsView(user=user, google=google, vendor=vendor, calendars=calendars, csrf=csrf)

    def reconnect(self, session: str | None, form: Mapping[str, str]) -> SettingsView:
        signed_in = self._checked(session, form)
        if signed_in is None:
            return SettingsView(signed_out=True, status=403)
        user = self._store.get_user(signed_in)
        return SettingsView(redirect=self._links.link_for(signed_in, user.domain if user else None))

    def disconnect(self, session: str | None, form: Mapping[str, str]) -> SettingsView:
        signed_in = self._checked(session, form)
        if signed_in is None:
            return SettingsView(signed_out=True, status=403)
        report = self._disconnect(signed_in)
        return SettingsView(Outcome.DISCONNECTED, user=signed_in, report=report)

    def _grant(self, user: str, provider: OAuthProvider) -> str:
        grant = self._grants.get(user, provider)
        if grant is None:
            return "none"
        return "active" if grant.status is GrantStatus.ACTIVE else "revoked"

    def _session(self, token: str | None) -> tuple[str, str] | None:
        if not token:
            return None
        try:
            claims = self._links.read(_SESSION, token)
        except LinkRefused:
            return None
        jti = claims.get("jti")
        return (str(claims["sub"]), jti) if isinstance(jti, str) else None

    def _checked(self, session: str | None, form: Mapping[str, str]) -> str | None:
        """The signed-in user, if the form carries this session's csrf token."""
        signed_in = self._session(session)
        if signed_in is None or not secrets.compare_digest(form.get("csrf", ""), signed_in[1]):
            return None
        return signed_in[0]
