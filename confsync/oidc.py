"""Google-signed OIDC ID tokens: the push subscriptions' and the add-on's callers prove who
they are with one (https://developers.google.com/identity/openid-connect/openid-connect).

``OidcVerifier`` checks the signature against Google's certificates, the expiry (with
``CLOCK_SKEW_S`` of tolerance either way), the issuer (``accounts.google.com``), the audience,
that the email is verified, and, when configured, that it is one expected email (Pub/Sub's
push service account). A missing or invalid token raises ``TokenRejected(401)``; a valid
token for another audience or another account ``TokenRejected(403)``.

The certificates are cached. They are fetched again when the cache is stale, and when a token
names a key id the cache lacks (Google rotated its keys), at most once per
``kid_refetch_s`` so a flood of made-up key ids cannot turn into a flood of fetches. A failed
fetch keeps the cached certificates and waits a growing backoff before the next attempt.
``verify`` may fetch, so async callers run it in a worker thread.

With ``signature="platform"`` the signature is not checked here: Cloud Run checked it before
the request reached the container (an IAM-protected service) and replaced it with
``SIGNATURE_REMOVED_BY_GOOGLE``
(https://cloud.google.com/run/docs/authenticating/service-to-service). Every claim is still
checked. Only for services that Cloud Run IAM protects: anywhere else a forged token passes.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeGuard

import httpx
import structlog
from google.auth import jwt

from confsync.settings import PushAuth
from confsync.tls import tls_context

__all__ = ["CLOCK_SKEW_S", "GOOGLE_CERTS_URL", "CertsFetcher", "OidcVerifier", "TokenRejected"]

log = structlog.get_logger(__name__)

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
CLOCK_SKEW_S = 60
_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
_MAX_DOUBLINGS = 16

CertsFetcher = Callable[[], Mapping[str, str]]


class TokenRejected(Exception):
    """A request refused for its credentials: ``status`` (401/403) and ``reason`` say why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class OidcVerifier:
    def __init__(  # noqa: PLR0913 - the checks and the cache's timings, named
        self,
        *,
        audience: str,
        email: str | None = None,
        signature: PushAuth = "verify",
        fetch_certs: CertsFetcher | None = None,
        certs_url: str = GOOGLE_CERTS_URL,
        clock: Callable[[], float] = time.monotonic,
        cache_s: float = 3600.0,
        kid_refetch_s: float = 60.0,
        retry_initial_s: float = 5.0,
        retry_max_s: float = 300.0,
    ) -> None:
        self._audience = audience
        self._email = email
        self._signature = signature
        self._certs = _CertCache(
            fetch_certs or partial(_fetch_google_certs, certs_url),
            clock=clock,
            cache_s=cache_s,
            kid_refetch_s=kid_refetch_s,
            retry_initial_s=retry_initial_s,
            retry_max_s=retry_max_s,
        )

    @property
    def trusts_platform(self) -> bool:
        """True when Cloud Run IAM, not this verifier, checks the signature."""
        return self._signature == "platform"

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims, or TokenRejected(401/403). May fetch certificates: blocking."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise TokenRejected(401, "missing bearer token")
        try:
            claims = self._decode(token)
        except ValueError as err:  # bad signature, expired, malformed (google-auth's errors are ValueErrors)
            reason = str(err).replace(token, "<token>")  # google-auth quotes a malformed token whole
            raise TokenRejected(401, f"invalid token: {reason}") from err
        if claims.get("iss") not in _ISSUERS:
            raise TokenRejected(401, "token not issued by Google")
        if claims.get("aud") != self._audience:
            raise TokenRejected(403, "token for another audience")
        if claims.get("email_verified") is not True or not claims.get("email"):
            raise TokenRejected(403, "token without a verified email")
        if self._email is not None and claims.get("email") != self._email:
            raise TokenRejected(403, "token for another account")
        return claims

    def _decode(self, token: str) -> dict[str, Any]:
        if self._signature == "platform":
            claims: dict[str, Any] = jwt.decode(token, verify=False)  # type: ignore[no-untyped-call]
            _check_times(claims, now=time.time())
            return claims
        header = jwt.decode_header(token)  # type: ignore[no-untyped-call]
        kid = header.get("kid")
        certs = self._certs.for_kid(kid if isinstance(kid, str) else None)
        if not certs:
            raise TokenRejected(503, "Google's certificates could not be fetched; try again")  # not the caller's fault
        verified: dict[str, Any] = jwt.decode(token, certs=certs, audience=None, clock_skew_in_seconds=CLOCK_SKEW_S)  # type: ignore[no-untyped-call]
        return verified


def _check_times(claims: Mapping[str, Any], *, now: float) -> None:
    """What google-auth checks of ``iat`` and ``exp`` when it verifies a signature."""
    iat, exp = claims.get("iat"), claims.get("exp")
    if not _is_time(iat) or not _is_time(exp):
        raise ValueError("token without numeric iat and exp")
    if now < iat - CLOCK_SKEW_S:
        raise ValueError("token used too early")
    if now > exp + CLOCK_SKEW_S:
        raise ValueError("token expired")


def _is_time(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _CertCache:
    """Google's certificates: fetched when stale or for an unknown key id (rate-limited),
    kept when a fetch fails, with a doubling backoff before the next attempt.

    Fields are written only under ``_fetch_lock``; readers see each whole value."""

    def __init__(  # noqa: PLR0913 - the cache's timings, named
        self,
        fetch: CertsFetcher,
        *,
        clock: Callable[[], float],
        cache_s: float,
        kid_refetch_s: float,
        retry_initial_s: float,
        retry_max_s: float,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._cache_s = cache_s
        self._kid_refetch_s = kid_refetch_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._certs: Mapping[str, str] = {}
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._retry_at = -math.inf
        self._failures = 0
        self._fetch_lock = threading.Lock()

    def for_kid(self, kid: str | None) -> Mapping[str, str]:
        """The certificates to check a token signed with ``kid`` against (empty: none yet)."""
        if not self._due(kid):
            return self._certs
        # One fetch at a time; a caller the cached certificates can serve does not wait for it.
        if not self._fetch_lock.acquire(blocking=not self._serves(kid)):
            return self._certs
        try:
            if self._due(kid):  # unless the caller it waited for has just fetched
                self._refresh()
        finally:
            self._fetch_lock.release()
        return self._certs

    def _serves(self, kid: str | None) -> bool:
        return bool(self._certs) and (kid is None or kid in self._certs)

    def _due(self, kid: str | None) -> bool:
        now = self._clock()
        if now < self._retry_at:
            return False
        if not self._certs or now - self._fetched_at >= self._cache_s:
            return True
        return not self._serves(kid) and now - self._attempted_at >= self._kid_refetch_s

    def _refresh(self) -> None:
        now = self._attempted_at = self._clock()
        try:
            certs = _checked(self._fetch())
        except (httpx.HTTPError, OSError, ValueError, TypeError) as err:
            self._failures += 1
            delay = min(self._retry_max_s, self._retry_initial_s * 2 ** min(self._failures - 1, _MAX_DOUBLINGS))
            self._retry_at = now + delay
            log.warning(
                "could not fetch Google's certificates; the cached ones stay in use",
                error=str(err),
                cached=len(self._certs),
                retry_in_s=delay,
            )
            return
        self._certs, self._fetched_at, self._failures, self._retry_at = certs, now, 0, -math.inf


def _checked(certs: object) -> Mapping[str, str]:
    if not isinstance(certs, Mapping) or not certs:
        raise ValueError("the certificates are not a non-empty JSON object")
    if not all(isinstance(kid, str) and isinstance(pem, str) for kid, pem in certs.items()):
        raise ValueError("the certificates must map key ids to PEM strings")
    return dict(certs)


def _fetch_google_certs(url: str) -> Mapping[str, str]:
    answer = httpx.get(url, timeout=10, verify=tls_context())
    answer.raise_for_status()
    certs: Mapping[str, str] = answer.json()
    return certs
