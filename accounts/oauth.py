"""confsync as an OAuth 2.0 client of Google and of the conferencing vendor (authlib does the work).

``OAuthClient`` is one registered client at one authorization server: the consent URL (with
PKCE S256: RFC 7636), the code exchange, a refresh, a revocation. Every call is authlib's
``OAuth2Session`` over requests; nothing here builds a token request by hand. Its answers
become confsync's errors in one place, ``_failed``:

- ``invalid_grant`` on a refresh -> ``Disconnected``: the user revoked the grant (or it was
  rotated away); only a reconnect helps.
- no answer, a timeout, 5xx, 429 (whatever the body says) -> ``TransientError``: never taken
  for a revocation.
- any other OAuth error -> ``PermanentError`` naming the server's error code.

Tokens come back as ``Tokens`` with their secrets as ``Secret`` values, so a logged ``Tokens``
shows none of them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from confsync.errors import Disconnected, PermanentError, TransientError
from confsync.provider import parse_retry_after
from confsync.settings import Secret

__all__ = ["OAuthClient", "Tokens", "new_verifier"]

_TIMEOUT_S = 10.0
_VERIFIER_BYTES = 48  # 64 URL-safe characters: RFC 7636 asks for 43 to 128


def new_verifier() -> Secret:
    """A fresh PKCE code verifier."""
    return Secret(secrets.token_urlsafe(_VERIFIER_BYTES))


@dataclass(frozen=True, slots=True)
class Tokens:
    """What a token endpoint answered; ``scopes`` are the ones granted (not merely asked)."""

    access_token: Secret
    expires_in: float | None
    refresh_token: Secret | None = None
    id_token: str | None = field(default=None, repr=False)
    scopes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """confsync's client at one authorization server (``name`` labels it in errors and pages)."""

    name: str  # "google" or "vendor": the grant's provider
    client_id: str
    client_secret: Secret = field(repr=False)
    authorize_url: str
    token_url: str
    revoke_url: str | None = None
    scopes: tuple[str, ...] = ()
    redirect_uri: str | None = None
    consent_params: tuple[tuple[str, str], ...] = ()  # e.g. access_type=offline, prompt=consent

    def consent_url(self, *, state: str, verifier: Secret, login_hint: str | None = None) -> str:
        """Where to send the user's browser to consent: code flow, PKCE S256, this client's scopes."""
        extra = dict(self.consent_params)
        if login_hint:
            extra["login_hint"] = login_hint
        url, _ = self._session().create_authorization_url(
            self.authorize_url, state=state, code_verifier=verifier.reveal(), **extra
        )
        return str(url)

    def exchange(self, code: str, verifier: Secret) -> Tokens:
        """The code the consent returned, for tokens (with the verifier that made its challenge)."""
        return self._tokens(
            lambda session: session.fetch_token(
                self.token_url, code=code, code_verifier=verifier.reveal(), timeout=_TIMEOUT_S
            ),
            refreshing=None,
        )

    def refresh(self, refresh_token: Secret, *, user: str) -> Tokens:
        """New tokens for a stored grant; ``Disconnected`` if the server says the grant is gone."""
        return self._tokens(
            lambda session: session.refresh_token(
                self.token_url, refresh_token=refresh_token.reveal(), timeout=_TIMEOUT_S
            ),
            refreshing=user,
        )

    def revoke(self, token: Secret) -> bool:
        """Ask the server to end the grant ``token`` belongs to; False if it could not be asked or
        refused (revocation is best effort: the grant is forgotten here either way)."""
        if self.revoke_url is None:
            return False
        try:
            answer = self._session().revoke_token(self.revoke_url, token=token.reveal(), timeout=_TIMEOUT_S)
        except (requests.RequestException, TransientError):
            return False
        return bool(answer.ok)

    def _session(self) -> OAuth2Session:
        session = OAuth2Session(
            client_id=self.client_id,
            client_secret=self.client_secret.reveal(),
            scope=" ".join(self.scopes) or None,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_post",  # noqa: S106 - a method's name, not a secret
        )
        session.hooks["response"].append(self._busy)
        return session

    def _busy(self, answer: requests.Response, *_args: object, **_kwargs: object) -> None:
        """A 429 or 5xx is the server's trouble, whatever its body says (authlib reads only the body)."""
        if answer.status_code == 429 or answer.status_code >= 500:
            retry_after = parse_retry_after(answer.headers.get("Retry-After"))
            raise TransientError(f"{self.name} token endpoint answered {answer.status_code}", retry_after=retry_after)

    def _tokens(self, call: Any, *, refreshing: str | None) -> Tokens:
        session = self._session()
        try:
            answer = call(session)
        except OAuthError as err:
            raise _failed(self.name, err, refreshing) from err
        except requests.Timeout as err:
            raise TransientError(f"{self.name} token endpoint timed out") from err
        except requests.RequestException as err:
            raise TransientError(f"{self.name} token endpoint unreachable: {type(err).__name__}") from err
        except ValueError as err:  # not JSON: a proxy's error page, a server in trouble
            raise TransientError(f"{self.name} token endpoint answered something unreadable") from err
        access = answer.get("access_token")
        if not isinstance(access, str) or not access:
            raise TransientError(f"{self.name} token endpoint answered without an access token")
        refresh = answer.get("refresh_token")
        granted = answer.get("scope")
        expires = answer.get("expires_in")
        return Tokens(
            access_token=Secret(access),
            expires_in=float(expires) if isinstance(expires, int | float | str) and str(expires).isdigit() else None,
            refresh_token=Secret(refresh) if isinstance(refresh, str) and refresh else None,
            id_token=answer.get("id_token") if isinstance(answer.get("id_token"), str) else None,
            scopes=frozenset(granted.split()) if isinstance(granted, str) else frozenset(self.scopes),
        )


def _failed(name: str, err: OAuthError, refreshing: str | None) -> Exception:
    """The one place a token endpoint's refusal becomes a confsync error."""
    code = str(err.error or "")
    if code == "invalid_grant" and refreshing is not None:
        return Disconnected(f"the {name} grant of {refreshing} was revoked", user=refreshing, provider=name)
    if code in {"temporarily_unavailable", "server_error", "slow_down"}:
        return TransientError(f"{name} token endpoint: {code}")
    return PermanentError(f"{name} token endpoint refused: {code}: {err.description or ''}".rstrip(": "))


def challenge_of(verifier: Secret) -> str:
    """The S256 challenge of a verifier (for tests and the sandboxes' checks)."""
    return str(create_s256_code_challenge(verifier.reveal()))
