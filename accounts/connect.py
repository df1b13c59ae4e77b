"""The connect flow: a user links their Google calendar and their conferencing account to confsync.

It is the seed's ``getAuthenticationUrl()``: the add-on answers AUTHENTICATION with a link
to confsync's own connect page, and the user walks through it once:

1. ``GET /connect?state=L``: ``L`` is a *connect link* (``ConnectLinks.link_for``), a JWT
   signed with a key derived from the vault's (HS256, joserfc) naming the Google user the
   add-on's verified ID token named, expiring after ``CONFSYNC_CONNECT_TTL_S``. The page says
   who is connecting and what will be asked; its button POSTs the link back.
2. ``POST /connect/start``: the link's id becomes the flow's id, stored once
   (``Store.start_flow``): a link is single-use, so a replayed one is refused. The flow is tied
   to this browser by a random cookie (only its hash is stored), and the browser goes to
   Google's consent (offline access, the calendar scopes, PKCE, ``login_hint`` = the user).
   A user whose Google grant is active, or whose Workspace domain granted domain-wide
   delegation, skips Google.
3. ``GET /connect/google``: the code is exchanged with the flow's PKCE verifier; the ID token
   of that exchange must name the user the link named (verified signature, audience,
   ``email_verified``), and offline access and every calendar scope must have been granted.
   Only then is the Google grant saved, and the browser goes on to the vendor's consent.
4. ``GET /connect/vendor``: the same for the vendor; the vendor grant is saved, the flow ends,
   ``on_connected(user)`` runs (held commands go out, disconnected calendars resync), and the
   page says what is connected and to add the conference again.

Whatever goes wrong ends on a page that says what happened and what to do (``Outcome``),
and stores no grant: a denied consent, an expired or replayed link, another browser, another
Google account (its fresh token is revoked at once), a consent without offline access.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from urllib.parse import urlencode

import structlog
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from accounts.grants import Grants, normalise_email
from accounts.oauth import OAuthClient, Tokens, new_verifier
from confsync.errors import ConfsyncError, TransientError
from confsync.oidc import OidcVerifier, TokenRejected
from confsync.ports import Store
from confsync.store.records import ConnectFlow, FlowStage, GrantStatus, OAuthProvider, User

__all__ = ["COOKIE", "ConnectLinks", "Connector", "LinkRefused", "Outcome", "Step", "digest"]

log = structlog.get_logger(__name__)

COOKIE = "confsync_connect"
_ISSUER = "confsync"
_LINK = "connect-link"  # the audience of a connect link; an OAuth state's is its stage
_ALGORITHM = "HS256"


class Outcome(StrEnum):
    """What the person sees at the end of a step (accounts/pages.py has the words)."""

    CONFIRM = "confirm"  # the connect page: who, what will be asked, Continue
    CONNECTED = "connected"
    DECLINED = "declined"
    VENDOR_DECLINED = "vendor_declined"  # Google is connected, the vendor is not
    EXPIRED = "expired"
    USED = "used"  # the link was used already (a replay, or a second click)
    INVALID = "invalid"  # not a link confsync made
    OTHER_BROWSER = "other_browser"
    WRONG_ACCOUNT = "wrong_account"
    NOT_GRANTED = "not_granted"  # consent without offline access or a needed scope
    UNAVAILABLE = "unavailable"  # Google or the vendor did not answer: try again
    DISCONNECTED = "disconnected"  # the settings page's disconnect is done


@dataclass(frozen=True, slots=True)
class Step:
    """One step's answer: a page (``outcome``, with ``status``) or a redirect (``redirect``)."""

    outcome: Outcome | None = None
    status: int = 200
    user: str | None = None
    signed_in_as: str | None = None  # WRONG_ACCOUNT: the account that consented instead
    link: str | None = None  # CONFIRM: the link the form posts back
    skips_google: bool = False
    redirect: str | None = None
    set_cookie: str | None = None


@dataclass(frozen=True, slots=True)
class LinkClaims:
    user: str
    domain: str | None
    link_id: str
    expires_at: datetime


class LinkRefused(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.value)
        self.outcome = outcome


class ConnectLinks:
    """Signed, expiring tokens: connect links naming a user, and OAuth ``state`` naming a flow."""

    def __init__(self, key: bytes, *, base_url: str, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self._key = OctKey.import_key(key)
        self._base_url = base_url.rstrip("/")
        self._ttl_s = ttl_s
        self._clock = clock

    def link_for(self, user: str, domain: str | None = None) -> str:
        """The connect page's URL for ``user`` (the add-on's ``authenticationUrl``)."""
        claims: dict[str, object] = {"sub": normalise_email(user), "jti": secrets.token_urlsafe(24)}
        if domain:
            claims["hd"] = domain.lower()
        return f"{self._base_url}/connect?" + urlencode({"state": self.sign(_LINK, claims)})

    def read_link(self, token: str) -> LinkClaims:
        claims = self.read(_LINK, token)
        hd = claims.get("hd")
        return LinkClaims(
            user=str(claims["sub"]),
            domain=hd if isinstance(hd, str) else None,
            link_id=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(float(str(claims["exp"])), UTC),
        )

    def state_for(self, flow_id: str, stage: FlowStage) -> str:
        return self.sign(stage.value, {"sub": flow_id})

    def read_state(self, token: str, stage: FlowStage) -> str:
        """The flow id an OAuth ``state`` names (LinkRefused if it is not this stage's)."""
        return str(self.read(stage.value, token)["sub"])

    def sign(self, audience: str, claims: dict[str, object]) -> str:
        """A token for ``audience`` (what it is for) with ``claims``, expiring after the TTL."""
        now = int(self._clock())
        body = {**claims, "iss": _ISSUER, "aud": audience, "iat": now, "exp": now + int(self._ttl_s)}
        return jwt.encode({"alg": _ALGORITHM}, body, self._key, algorithms=[_ALGORITHM])

    def read(self, audience: str, token: str) -> Mapping[str, object]:
        """The claims of a token made by ``sign`` for ``audience``; LinkRefused otherwise."""
        if not token or len(token) > 4096:
            raise LinkRefused(Outcome.INVALID)
        try:
            claims = jwt.decode(token, self._key, algorithms=[_ALGORITHM]).claims
        except (JoseError, ValueError) as err:
            raise LinkRefused(Outcome.INVALID) from err
        registry = jwt.JWTClaimsRegistry(
            now=int(self._clock()),
            iss={"essential": True, "value": _ISSUER},
            aud={"essential": True, "value": audience},
            sub={"essential": True},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as err:
            expired = getattr(err, "error", "") == "expired_token"
            raise LinkRefused(Outcome.EXPIRED if expired else Outcome.INVALID) from err
        if not isinstance(claims.get("sub"), str) or (audience == _LINK and not isinstance(claims.get("jti"), str)):
            raise LinkRefused(Outcome.INVALID)
        return claims


class Connector:
    """The connect flow's steps (the routes in accounts/routes.py call them from a thread)."""

    def __init__(  # noqa: PLR0913 - the flow's collaborators, named
        self,
        store: Store,
        grants: Grants,
        links: ConnectLinks,
        *,
        google: OAuthClient,
        vendor: OAuthClient,
        id_tokens: OidcVerifier,
        delegated_domains: tuple[str, ...] = (),
        on_connected: Callable[[str], None] = lambda _user: None,
        ttl_s: float = 900.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._grants = grants
        self._links = links
        self._google = google
        self._signin = replace(google, scopes=("openid", "email"), consent_params=())
        self._vendor = vendor
        self._id_tokens = id_tokens
        self._delegated = frozenset(domain.lower() for domain in delegated_domains)
        self._on_connected = on_connected
        self._ttl = timedelta(seconds=ttl_s)
        self._clock = clock

    # -- 1. the connect page ----------------------------------------------------------------

    def confirm(self, link: str) -> Step:
        try:
            claims = self._links.read_link(link)
        except LinkRefused as refused:
            return _page(refused.outcome)
        if self._store.get_flow(claims.link_id) is not None:
            return _page(Outcome.USED, user=claims.user)
        return Step(Outcome.CONFIRM, user=claims.user, link=link, skips_google=not self._needs_calendar(claims.user))

    # -- 2. start -----------------------------------------------------------------------------

    def start(self, link: str) -> Step:
        try:
            claims = self._links.read_link(link)
        except LinkRefused as refused:
            return _page(refused.outcome)
        cookie = secrets.token_urlsafe(32)
        flow = ConnectFlow(
            flow_id=claims.link_id,
            user=claims.user,
            stage=FlowStage.GOOGLE,
            expires_at=self._clock() + self._ttl,
            browser=digest(cookie),
            verifier=new_verifier(),
        )
        if not self._store.start_flow(flow):
            return _page(Outcome.USED, user=claims.user)
        self._store.purge_flows(self._clock() - self._ttl)  # old flows: their links expired long ago
        self._store.ensure_user(User(claims.user, domain=claims.domain, created_at=self._clock()))
        log.info("connect flow started", user=claims.user)
        return Step(redirect=self._consent(flow), set_cookie=cookie)

    # -- 3. and 4. the consents' answers -----------------------------------------------------

    def google_answer(self, params: Mapping[str, str], cookie: str | None) -> Step:
        return self._answer(FlowStage.GOOGLE, params, cookie)

    def vendor_answer(self, params: Mapping[str, str], cookie: str | None) -> Step:
        return self._answer(FlowStage.VENDOR, params, cookie)

    def _answer(self, stage: FlowStage, params: Mapping[str, str], cookie: str | None) -> Step:  # noqa: PLR0911 - one page per way it ends
        try:
            flow_id = self._links.read_state(params.get("state", ""), stage)
        except LinkRefused as refused:
            return _page(refused.outcome)
        flow = self._store.get_flow(flow_id)
        if flow is None:
            return _page(Outcome.INVALID)
        if flow.stage is not stage:
            return _page(Outcome.USED, user=flow.user)
        if flow.expires_at <= self._clock():
            return _page(Outcome.EXPIRED, user=flow.user)
        if cookie is None or not secrets.compare_digest(digest(cookie), flow.browser):
            return _page(Outcome.OTHER_BROWSER, user=flow.user)  # the flow stays: its own browser may finish
        if "code" not in params:  # access_denied, or any other error the server sent back
            self._end(flow)
            log.info("connect consent declined", user=flow.user, stage=stage.value, error=params.get("error", ""))
            return _page(Outcome.DECLINED if stage is FlowStage.GOOGLE else Outcome.VENDOR_DECLINED, user=flow.user)
        client = self._google if stage is FlowStage.GOOGLE else self._vendor
        assert flow.verifier is not None  # noqa: S101 - every started flow has one
        try:
            tokens = client.exchange(params["code"], flow.verifier)
        except TransientError as err:
            log.warning("connect code exchange failed, temporarily", user=flow.user, error=str(err))
            return _page(Outcome.UNAVAILABLE, user=flow.user, status=503)
        except ConfsyncError as err:  # a spent or forged code: the flow cannot go on
            log.warning("connect code exchange refused", user=flow.user, error=str(err))
            self._end(flow)
            return _page(Outcome.INVALID, user=flow.user)
        if stage is FlowStage.GOOGLE:
            return self._google_granted(flow, tokens)
        return self._vendor_granted(flow, tokens)

    def _google_granted(self, flow: ConnectFlow, tokens: Tokens) -> Step:
        who = self._consenting_account(tokens)
        if who is None or who != flow.user:
            self._google.revoke(tokens.refresh_token or tokens.access_token)  # nothing of theirs is kept
            self._end(flow)
            log.warning("connect refused: another Google account consented", user=flow.user)
            return _page(Outcome.WRONG_ACCOUNT, user=flow.user, signed_in_as=who)
        if self._needs_calendar(flow.user):
            missing = set(self._google.scopes) - {"openid", "email"} - tokens.scopes
            if tokens.refresh_token is None or missing:
                self._google.revoke(tokens.refresh_token or tokens.access_token)
                self._end(flow)
                log.warning("connect refused: Google consent without offline access or scopes", user=flow.user)
                return _page(Outcome.NOT_GRANTED, user=flow.user)
            self._grants.save(flow.user, OAuthProvider.GOOGLE, tokens.refresh_token, tokens.scopes)
            log.info("connect: Google grant saved", user=flow.user)
        advanced = replace(flow, stage=FlowStage.VENDOR, verifier=new_verifier())
        if not self._store.put_flow(advanced, expected_version=flow.version):
            return _page(Outcome.USED, user=flow.user)  # the same answer came twice: one of them goes on
        return Step(redirect=self._consent(replace(advanced, version=flow.version + 1)))

    def _vendor_granted(self, flow: ConnectFlow, tokens: Tokens) -> Step:
        if not {*self._vendor.scopes} <= tokens.scopes:
            self._vendor.revoke(tokens.refresh_token or tokens.access_token)
            self._end(flow)
            return _page(Outcome.NOT_GRANTED, user=flow.user)
        if tokens.refresh_token is None:
            self._vendor.revoke(tokens.access_token)
            self._end(flow)
            return _page(Outcome.NOT_GRANTED, user=flow.user)
        if not self._end(flow):
            return _page(Outcome.USED, user=flow.user)
        self._grants.save(flow.user, OAuthProvider.VENDOR, tokens.refresh_token, tokens.scopes)
        log.info("connect: vendor grant saved", user=flow.user)
        try:
            self._on_connected(flow.user)
        except Exception:  # the grants are saved: the user is connected; what follows is retried
            log.exception("after connecting: could not resume the user's work yet", user=flow.user)
        return _page(Outcome.CONNECTED, user=flow.user)

    # -- plumbing -----------------------------------------------------------------------------

    def _needs_calendar(self, user: str) -> bool:
        """Whether Google must be asked for the calendar scopes: not for a domain that delegated
        (by the email's domain, as the service account acts as the user), nor with an active grant."""
        if user.rpartition("@")[2] in self._delegated:
            return False
        grant = self._grants.get(user, OAuthProvider.GOOGLE)
        return grant is None or grant.status is not GrantStatus.ACTIVE

    def _consent(self, flow: ConnectFlow) -> str:
        """Where the browser goes next. Google is never skipped: a user whose calendars are
        readable already still signs in (``openid email``), so a link used by someone else, or a
        flow planted in another person's browser, ends at the ID token check, not at the vendor."""
        assert flow.verifier is not None  # noqa: S101 - every started flow has one
        state = self._links.state_for(flow.flow_id, flow.stage)
        if flow.stage is FlowStage.VENDOR:
            return self._vendor.consent_url(state=state, verifier=flow.verifier)
        google = self._google if self._needs_calendar(flow.user) else self._signin
        return google.consent_url(state=state, verifier=flow.verifier, login_hint=flow.user)

    def _consenting_account(self, tokens: Tokens) -> str | None:
        """The verified email of the Google account that consented (its ID token), or None."""
        if tokens.id_token is None:
            return None
        try:
            claims = self._id_tokens.verify("Bearer " + tokens.id_token)
        except TokenRejected as rejected:
            if rejected.status >= 500:  # Google's keys could not be fetched: nobody's fault, try again
                raise TransientError(rejected.reason) from rejected
            return None
        return normalise_email(str(claims["email"]))

    def _end(self, flow: ConnectFlow) -> bool:
        """Mark the flow done (its link and states can never be used again); True if this call did."""
        return self._store.put_flow(replace(flow, stage=FlowStage.DONE, verifier=None), expected_version=flow.version)


def _page(outcome: Outcome, *, user: str | None = None, signed_in_as: str | None = None, status: int = 0) -> Step:
    default = {Outcome.CONNECTED: 200, Outcome.CONFIRM: 200, Outcome.DECLINED: 200, Outcome.VENDOR_DECLINED: 200}.get(
        outcome, 400
    )
    return Step(outcome, status=status or default, user=user, signed_in_as=signed_in_as)


def digest(cookie: str) -> str:
    """What the store keeps of a browser's cookie."""
    return hashlib.sha256(cookie.encode()).hexdigest()
