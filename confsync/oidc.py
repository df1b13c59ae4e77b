"""Google-signed OIDC ID tokens: the push subscriptions' and the add-on's callers prove who
they are with one (https://developers.google.com/identity/openid-connect/openid-connect).

``OidcVerifier`` checks the signature against Google's certificates (fetched once, cached),
the expiry, the issuer (``accounts.google.com``), the audience, that the email is verified,
and, when configured, that it is one expected email (Pub/Sub's push service account). A
missing or invalid token raises ``TokenRejected(401)``; a valid token for another audience
or another account ``TokenRejected(403)``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from google.auth import jwt

__all__ = ["GOOGLE_CERTS_URL", "CertsFetcher", "OidcVerifier", "TokenRejected"]

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})

CertsFetcher = Callable[[], Mapping[str, str]]


class TokenRejected(Exception):
    """A request refused for its credentials: ``status`` (401/403) and ``reason`` say why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class OidcVerifier:
    def __init__(
        self,
        *,
        audience: str,
        email: str | None = None,
        fetch_certs: CertsFetcher | None = None,
        cache_s: float = 3600.0,
    ) -> None:
        self._audience = audience
        self._email = email
        self._fetch = fetch_certs or _fetch_google_certs
        self._cache_s = cache_s
        self._certs: Mapping[str, str] | None = None
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def _current_certs(self) -> Mapping[str, str]:
        with self._lock:
            if self._certs is None or time.monotonic() - self._fetched_at > self._cache_s:
                self._certs = self._fetch()
                self._fetched_at = time.monotonic()
            return self._certs

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims, or TokenRejected(401/403)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise TokenRejected(401, "missing bearer token")
        try:
            claims: dict[str, Any] = jwt.decode(token, certs=self._current_certs(), audience=None)  # type: ignore[no-untyped-call]
        except (ValueError, httpx.HTTPError) as err:  # bad signature, expired, malformed, no certs
            raise TokenRejected(401, f"invalid token: {err}") from err
        if claims.get("iss") not in _ISSUERS:
            raise TokenRejected(401, "token not issued by Google")
        if claims.get("aud") != self._audience:
            raise TokenRejected(403, "token for another audience")
        if claims.get("email_verified") is not True or not claims.get("email"):
            raise TokenRejected(403, "token without a verified email")
        if self._email is not None and claims.get("email") != self._email:
            raise TokenRejected(403, "token for another account")
        return claims


def _fetch_google_certs() -> Mapping[str, str]:
    answer = httpx.get(GOOGLE_CERTS_URL, timeout=10)
    answer.raise_for_status()
    certs: Mapping[str, str] = answer.json()
    return certs
