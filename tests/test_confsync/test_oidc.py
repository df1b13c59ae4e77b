"""OidcVerifier: Google's certificates are cached, fetched again for keys Google rotated in
(never hammered by made-up key ids), kept through Google's outages, and clocks may disagree
by a minute. Tokens are signed with keys made here (tests_support/oidc.py)."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from google.auth import crypt, jwt
from tests_support.oidc import GOOGLE_CERT, GOOGLE_KEY

from confsync.oidc import OidcVerifier, TokenRejected
from confsync.settings import PushAuth

AUDIENCE = "https://processor.example.run.app/pubsub/calendar-changes"
PUSHER = "pubsub-push@confsync-prod.iam.gserviceaccount.com"
_KEY = serialization.load_pem_private_key(GOOGLE_KEY.encode(), password=None)  # loaded once: loading is slow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Google:
    """Google's certificates endpoint: counts the fetches, fails while ``down``."""

    def __init__(self, certs: dict[str, str]) -> None:
        self.certs = certs
        self.down = False
        self.fetches = 0

    def __call__(self) -> dict[str, str]:
        self.fetches += 1
        if self.down:
            raise httpx.ConnectError("certificates endpoint unreachable")
        return dict(self.certs)


def token(kid: str = "google-kid", **claims: object) -> str:
    """A push token signed with Google's (test) key under key id ``kid``."""
    now = int(time.time())
    payload: dict[str, object] = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "email": PUSHER,
        "email_verified": True,
        "iat": now,
        "exp": now + 600,
        **claims,
    }
    return jwt.encode(crypt.RSASigner(_KEY, key_id=kid), payload).decode()


def stripped(signed: str) -> str:
    """The token as Cloud Run hands it to an IAM-protected service."""
    header, payload, _ = signed.split(".")
    return f"{header}.{payload}.SIGNATURE_REMOVED_BY_GOOGLE"


def verifier(google: Google, clock: Clock, signature: PushAuth = "verify") -> OidcVerifier:
    return OidcVerifier(
        audience=AUDIENCE,
        email=PUSHER,
        signature=signature,
        fetch_certs=google,
        clock=clock,
        cache_s=3600,
        kid_refetch_s=60,
        retry_initial_s=5,
        retry_max_s=300,
    )


def accepted(check: OidcVerifier, bearer: str) -> bool:
    try:
        check.verify(f"Bearer {bearer}")
    except TokenRejected:
        return False
    return True


@pytest.mark.parametrize("signature", ["verify", "platform"])
@pytest.mark.parametrize(
    ("issued", "expires", "ok"),
    [(5, 600, True), (55, 600, True), (-700, -30, True), (120, 600, False), (-700, -120, False)],
    ids=["issued-5s-ahead", "issued-55s-ahead", "expired-30s-ago", "issued-2min-ahead", "expired-2min-ago"],
)
def test_clocks_may_disagree_by_a_minute(signature: PushAuth, issued: int, expires: int, *, ok: bool) -> None:
    now = int(time.time())
    bearer = token(iat=now + issued, exp=now + expires)
    check = verifier(Google({"google-kid": GOOGLE_CERT}), Clock(), signature)
    assert accepted(check, stripped(bearer) if signature == "platform" else bearer) is ok


def test_a_failed_refresh_keeps_the_cached_certificates_and_backs_off() -> None:
    google, clock = Google({"google-kid": GOOGLE_CERT}), Clock()
    check = verifier(google, clock)
    assert accepted(check, token())
    clock.now += 3601  # the cache is stale, and Google is down
    google.down = True
    assert accepted(check, token())
    assert google.fetches == 2
    for _ in range(10):  # within the backoff: no fetch, the cached certificates serve
        assert accepted(check, token())
    assert google.fetches == 2
    clock.now += 5
    assert accepted(check, token())
    assert google.fetches == 3
    clock.now += 5  # the backoff doubled to 10 s
    assert accepted(check, token())
    assert google.fetches == 3
    clock.now += 5
    google.down = False
    assert accepted(check, token())
    assert google.fetches == 4
    clock.now += 3599  # fresh again: the next fetch is an hour away
    assert accepted(check, token())
    assert google.fetches == 4


def test_without_certificates_google_is_not_asked_again_before_the_backoff() -> None:
    google, clock = Google({"google-kid": GOOGLE_CERT}), Clock()
    google.down = True
    check = verifier(google, clock)
    with pytest.raises(TokenRejected, match="certificates could not be fetched") as caught:
        check.verify(f"Bearer {token()}")
    assert caught.value.status == 503, "an outage at Google: try again, not sign in again"
    assert not accepted(check, token())
    assert google.fetches == 1
    google.down = False
    clock.now += 5
    assert accepted(check, token())
    assert google.fetches == 2


def test_a_token_signed_with_a_newly_published_key_is_accepted() -> None:
    google, clock = Google({"old-kid": GOOGLE_CERT}), Clock()
    check = verifier(google, clock)
    assert accepted(check, token(kid="old-kid"))
    clock.now += 600  # Google rotates its keys well within the cache's hour
    google.certs = {"old-kid": GOOGLE_CERT, "new-kid": GOOGLE_CERT}
    assert accepted(check, token(kid="new-kid"))
    assert google.fetches == 2


def test_a_flood_of_made_up_key_ids_fetches_at_most_once_a_minute() -> None:
    google, clock = Google({"google-kid": GOOGLE_CERT}), Clock()
    check = verifier(google, clock)
    good = token()
    assert accepted(check, good)
    clock.now += 61
    for _ in range(50):
        assert not accepted(check, token(kid=uuid.uuid4().hex))
        assert accepted(check, good)
    assert google.fetches == 2
    clock.now += 30
    assert not accepted(check, token(kid=uuid.uuid4().hex))
    assert google.fetches == 2
    clock.now += 30
    assert not accepted(check, token(kid=uuid.uuid4().hex))
    assert google.fetches == 3


def test_a_slow_refresh_does_not_hold_up_tokens_the_cached_certificates_verify() -> None:
    clock = Clock()
    release, fetching = threading.Event(), threading.Event()
    completed: list[int] = []

    def google() -> dict[str, str]:
        if completed:  # every fetch after the first hangs until released
            fetching.set()
            release.wait(10)
        completed.append(1)
        return {"google-kid": GOOGLE_CERT}

    check = OidcVerifier(audience=AUDIENCE, email=PUSHER, fetch_certs=google, clock=clock, cache_s=3600)
    assert accepted(check, token())
    clock.now += 3601
    refreshing = threading.Thread(target=check.verify, args=(f"Bearer {token()}",))
    refreshing.start()
    try:
        assert fetching.wait(10)
        assert accepted(check, token())
        assert len(completed) == 1, "the second caller waited for a refresh it did not need"
    finally:
        release.set()
        refreshing.join(10)
    assert len(completed) == 2


@pytest.mark.parametrize("signature", ["verify", "platform"])
def test_a_refusal_never_quotes_the_token(signature: PushAuth) -> None:
    """The reason is logged and answered: google-auth's message for a malformed token holds it whole."""
    check = OidcVerifier(audience="aud", signature=signature, fetch_certs=lambda: {"google-kid": GOOGLE_CERT})
    secret_looking = "opaque-access-token-" + uuid.uuid4().hex
    with pytest.raises(TokenRejected) as caught:
        check.verify(f"Bearer {secret_looking}")
    assert caught.value.status == 401
    assert secret_looking not in caught.value.reason
