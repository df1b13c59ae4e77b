"""An OAuth 2.0 authorization server for the sandboxes: clients, consent, codes, tokens.

One ``AuthorizationServer`` serves a sandbox's authorization-code flow (RFC 6749 section 4.1
with PKCE, RFC 7636, S256 only), its refresh tokens (rotated or not, as the sandbox's
provider does) and revocation (RFC 7009), and it is the sandbox's ``Authenticator``: an
access token it issued names the principal a call acts for, until it expires or its grant is
revoked. Tokens are random strings with no meaning of their own; the server keeps only their
SHA-256, so a saved state holds nothing a caller could use.

``scopes`` names the scopes a sandbox offers (None: any, as the Calendar sandbox has it); an
authorization request for another is ``invalid_scope``. PKCE's inputs must have RFC 7636's
shape: the challenge 43 base64url characters (S256's output), the verifier 43 to 128 unreserved
characters. A code works once; presented again before it would have expired, it is refused
and the grant its first exchange produced ends, tokens and all (RFC 6749 section 4.1.2).

Errors carry RFC 6749's codes (``invalid_grant``, ``invalid_client``, ...) for the routes to
answer with (sandbox/oauth/routes.py).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from urllib.parse import urlencode

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from sandbox.clock import Clock
from sandbox.identity import Principal, PrincipalKind, TokenRefused

__all__ = [
    "AuthorizationServer",
    "AuthorizeRequest",
    "Client",
    "Grant",
    "OAuthError",
    "TokenResponse",
    "with_query",
]

_CODE_TTL = timedelta(minutes=10)
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of SHA-256, unpadded (RFC 7636 4.2)
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 4.1


class OAuthError(Exception):
    """An RFC 6749 error: ``code`` is its ``error`` value, ``status`` the HTTP status to answer."""

    def __init__(self, code: str, description: str, *, status: int = 400) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.status = status


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    name: str = ""


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """A checked authorization request: what the consent page shows and carries."""

    client: Client
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    code_challenge: str
    offline: bool  # Google's access_type=offline: a refresh token comes with the code's tokens
    login_hint: str | None = None
    prompt: str | None = None
    nonce: str | None = None

    def hidden_fields(self) -> dict[str, str]:
        """The request again, for the consent form to post back."""
        fields = {
            "client_id": self.client.client_id,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "scope": " ".join(self.scopes),
            "code_challenge": self.code_challenge,
            "code_challenge_method": "S256",
            "access_type": "offline" if self.offline else "online",
        }
        optional = {"state": self.state, "prompt": self.prompt, "nonce": self.nonce}
        return fields | {key: value for key, value in optional.items() if value is not None}


@dataclass(frozen=True, slots=True)
class Grant:
    """One user's consent to one client for some scopes; its tokens live and die with it."""

    grant_id: str
    subject: Principal
    client_id: str
    scopes: frozenset[str]
    nonce: str | None = None
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class TokenResponse:
    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    id_token: str | None = None

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "access_token": self.access_token,
            "expires_in": self.expires_in,
            "token_type": "Bearer",
            "scope": self.scope,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        if self.id_token is not None:
            body["id_token"] = self.id_token
        return body


@dataclass(slots=True)
class _Code:
    grant: Grant
    redirect_uri: str
    code_challenge: str
    offline: bool
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class _Spent:
    """A code already exchanged (or tried), kept until it would have expired."""

    grant_id: str
    expires_at: datetime


@dataclass(slots=True)
class _Refresh:
    grant_id: str
    replaced_at: datetime | None = None  # rotated: still accepted until the grace runs out


@dataclass(slots=True)
class _Access:
    grant_id: str
    expires_at: datetime


IdTokenMaker = Callable[[Grant, str], str | None]  # (grant, client id) -> an ID token or None


@dataclass
class AuthorizationServer:
    """``rotate_refresh_grace_s``: None keeps a refresh token for the grant's life (Google);
    a number makes each refresh return a new one, the old one working that much longer.
    ``always_offline``: every code's tokens include a refresh token (vendors), not only
    ``access_type=offline`` ones (Google). ``scopes``: the scopes a client may ask for (None:
    any)."""

    clock: Clock
    token_ttl_s: int = 3600
    rotate_refresh_grace_s: float | None = None
    token_prefix: str = ""
    id_token_for: IdTokenMaker | None = None
    always_offline: bool = False
    scopes: frozenset[str] | None = None
    _clients: dict[str, Client] = field(default_factory=dict)
    _grants: dict[str, Grant] = field(default_factory=dict)
    _codes: dict[str, _Code] = field(default_factory=dict)
    _spent: dict[str, _Spent] = field(default_factory=dict)
    _refresh: dict[str, _Refresh] = field(default_factory=dict)
    _access: dict[str, _Access] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- clients ---------------------------------------------------------------------------

    def register_client(self, redirect_uris: Iterable[str], name: str = "") -> Client:
        uris = tuple(redirect_uris)
        if not uris or any(not uri.startswith(("http://", "https://")) for uri in uris):
            raise OAuthError("invalid_request", "redirect_uris must be a list of http(s) URLs")
        client = Client(f"{secrets.token_hex(12)}.apps.sandbox", secrets.token_urlsafe(24), uris, name)
        with self._lock:
            self._clients[client.client_id] = client
        return client

    def client(self, client_id: str, client_secret: str | None = None) -> Client:
        """The client, checking its secret when one is given; invalid_client (401) if not."""
        found = self._clients.get(client_id)
        if found is None or (client_secret is not None and not _same(found.client_secret, client_secret)):
            raise OAuthError("invalid_client", "The OAuth client was not found.", status=401)
        return found

    # -- authorization -----------------------------------------------------------------------

    def authorize_request(self, params: dict[str, str]) -> AuthorizeRequest:
        """Check an authorization request; ``redirect_uri_mismatch`` and ``invalid_client``
        are for the user's eyes (never redirect to an unchecked address), the rest for the app."""
        client = self.client(params.get("client_id", ""))
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            raise OAuthError("redirect_uri_mismatch", f"{redirect_uri!r} is not registered for this client")
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "response_type must be code")
        scopes = tuple(params.get("scope", "").split())
        if not scopes:
            raise OAuthError("invalid_scope", "scope is required")
        unknown = sorted(set(scopes) - self.scopes) if self.scopes is not None else []
        if unknown:
            raise OAuthError("invalid_scope", f"unknown scope {' '.join(unknown)!r}")
        challenge = params.get("code_challenge", "")
        if not challenge or params.get("code_challenge_method", "plain") != "S256":
            raise OAuthError("invalid_request", "PKCE with code_challenge_method=S256 is required")
        if _CHALLENGE.fullmatch(challenge) is None:
            raise OAuthError("invalid_request", "code_challenge must be 43 base64url characters (S256)")
        return AuthorizeRequest(
            client=client,
            redirect_uri=redirect_uri,
            scopes=scopes,
            state=params.get("state"),
            code_challenge=challenge,
            offline=params.get("access_type") == "offline",
            login_hint=params.get("login_hint"),
            prompt=params.get("prompt"),
            nonce=params.get("nonce"),
        )

    def approve(self, request: AuthorizeRequest, subject: Principal) -> str:
        """The user allowed: the redirect back to the app with a code (and its state)."""
        grant = Grant(
            secrets.token_hex(16), subject, request.client.client_id, frozenset(request.scopes), request.nonce
        )
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._grants[grant.grant_id] = grant
            self._codes[_hash(code)] = _Code(
                grant, request.redirect_uri, request.code_challenge, request.offline, self.clock.now() + _CODE_TTL
            )
        return with_query(
            request.redirect_uri, {"code": code, "state": request.state, "scope": " ".join(request.scopes)}
        )

    @staticmethod
    def deny(request: AuthorizeRequest) -> str:
        return with_query(request.redirect_uri, {"error": "access_denied", "state": request.state})

    # -- tokens ------------------------------------------------------------------------------

    def exchange_code(self, client: Client, code: str, redirect_uri: str, code_verifier: str) -> TokenResponse:
        """The authorization_code grant: one use per code, PKCE checked. A code presented
        again ends the grant its first exchange produced (RFC 6749 section 4.1.2)."""
        key, now = _hash(code), self.clock.now()
        with self._lock:
            self._forget_expired(now)
            found = self._codes.pop(key, None)
            if found is not None:
                self._spent[key] = _Spent(found.grant.grant_id, found.expires_at)
            elif (spent := self._spent.get(key)) is not None:
                self._end(spent.grant_id)
                raise OAuthError("invalid_grant", "The authorization code was already used; its grant is revoked.")
        if found is None or found.expires_at <= now or found.grant.client_id != client.client_id:
            raise OAuthError("invalid_grant", "Malformed auth code.")
        if redirect_uri != found.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request.")
        if _VERIFIER.fullmatch(code_verifier) is None or not _same(
            create_s256_code_challenge(code_verifier), found.code_challenge
        ):
            raise OAuthError("invalid_grant", "Invalid code verifier.")
        grant = self._live_grant(found.grant.grant_id)
        id_token = self.id_token_for(grant, client.client_id) if self.id_token_for else None
        return self._tokens(grant, with_refresh=found.offline or self.always_offline, id_token=id_token)

    def _forget_expired(self, now: datetime) -> None:
        """Drop codes, used or not, past their expiry (the lock held)."""
        for key in [key for key, code in self._codes.items() if code.expires_at <= now]:
            del self._codes[key]
        for key in [key for key, spent in self._spent.items() if spent.expires_at <= now]:
            del self._spent[key]

    def refresh(self, client: Client, refresh_token: str) -> TokenResponse:
        """The refresh_token grant; a revoked grant's token is invalid_grant."""
        now = self.clock.now()
        with self._lock:
            found = self._refresh.get(_hash(refresh_token))
            grace = self.rotate_refresh_grace_s
            replaced = found.replaced_at if found is not None else None
            if replaced is not None and grace is not None and now > replaced + timedelta(seconds=grace):
                found = None
        if found is None:
            raise OAuthError("invalid_grant", "Token has been expired or revoked.")
        grant = self._live_grant(found.grant_id)
        if grant.client_id != client.client_id:
            raise OAuthError("invalid_grant", "Token was issued to another client.")
        if self.rotate_refresh_grace_s is None:
            return self._tokens(grant, with_refresh=False)
        with self._lock:
            if found.replaced_at is None:
                found.replaced_at = now
        return self._tokens(grant, with_refresh=True)

    def issue(self, subject: Principal, client_id: str, scopes: Iterable[str]) -> TokenResponse:
        """Tokens for a grant made another way (a service account's signed assertion)."""
        grant = Grant(secrets.token_hex(16), subject, client_id, frozenset(scopes))
        with self._lock:
            self._grants[grant.grant_id] = grant
        return self._tokens(grant, with_refresh=False)

    def _tokens(self, grant: Grant, *, with_refresh: bool, id_token: str | None = None) -> TokenResponse:
        access = f"{self.token_prefix}{secrets.token_urlsafe(32)}"
        refresh = secrets.token_urlsafe(40) if with_refresh else None
        with self._lock:
            self._access[_hash(access)] = _Access(
                grant.grant_id, self.clock.now() + timedelta(seconds=self.token_ttl_s)
            )
            if refresh is not None:
                self._refresh[_hash(refresh)] = _Refresh(grant.grant_id)
        return TokenResponse(access, self.token_ttl_s, " ".join(sorted(grant.scopes)), refresh, id_token)

    def _live_grant(self, grant_id: str) -> Grant:
        grant = self._grants.get(grant_id)
        if grant is None or grant.revoked:
            raise OAuthError("invalid_grant", "Token has been expired or revoked.")
        return grant

    # -- revocation ---------------------------------------------------------------------------

    def revoke(self, token: str) -> bool:
        """An access or refresh token; revoking either ends the whole grant (as Google does).
        False if the token is unknown."""
        key = _hash(token)
        with self._lock:
            held = self._refresh.get(key) or self._access.get(key)
            if held is not None:
                self._end(held.grant_id)
        return held is not None

    def revoke_user(self, email: str, client_id: str | None = None) -> int:
        """The user removed the app's access (every client's, or one): their grants end."""
        with self._lock:
            ended = [
                grant.grant_id
                for grant in self._grants.values()
                if grant.subject.email == email and not grant.revoked and client_id in (None, grant.client_id)
            ]
            for grant_id in ended:
                self._end(grant_id)
        return len(ended)

    def _end(self, grant_id: str) -> None:
        grant = self._grants.get(grant_id)
        if grant is not None:
            self._grants[grant_id] = replace(grant, revoked=True)

    # -- Authenticator -------------------------------------------------------------------------

    def authenticate(self, bearer: str) -> Principal:
        found = self._access.get(_hash(bearer))
        if found is None:
            raise TokenRefused("unknown token")
        if found.expires_at <= self.clock.now():
            raise TokenRefused("expired token")
        grant = self._grants.get(found.grant_id)
        if grant is None or grant.revoked:
            raise TokenRefused("revoked token")
        return replace(grant.subject, client_id=grant.client_id, scopes=grant.scopes)


def user(email: str) -> Principal:
    return Principal(PrincipalKind.USER, email)


def _same(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def with_query(uri: str, params: dict[str, str | None]) -> str:
    """``uri`` with ``params`` (those not None) added to its query: a redirect back to the app."""
    query = urlencode({key: value for key, value in params.items() if value is not None})
    return f"{uri}{'&' if '?' in uri else '?'}{query}"
