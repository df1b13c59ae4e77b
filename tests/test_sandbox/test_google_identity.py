"""The Calendar sandbox as Google's identity provider, through the real google-auth clients:
service accounts with and without domain-wide delegation, user consent with PKCE, refresh
and revocation, and ID tokens that google-auth verifies against the sandbox's certs."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import httplib2
import httpx
import pytest
from google.auth import crypt, exceptions
from google.auth import jwt as google_jwt
from google.oauth2 import credentials as user_credentials
from google.oauth2 import id_token, service_account
from google_auth_httplib2 import AuthorizedHttp
from google_auth_httplib2 import Request as HttpRequest
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from starlette.applications import Starlette
from tests_support.oauth_flow import GOOGLE_PATHS, OAuthFlow, pkce

from confsync.serving import ServedApp
from sandbox.calendar import CalendarSandbox, create_app
from sandbox.calendar.identity import GoogleIdentity
from sandbox.calendar.routes.identity import identity_routes
from sandbox.calendar.server import build_sandbox
from sandbox.clock import Clock
from sandbox.identity import PrincipalKind, TokenRefused

CALENDAR = "https://www.googleapis.com/auth/calendar"
USERS = {"alice@corp.example", "bob@other.example", "carol@gmail.com"}


@dataclass
class Google:
    url: str
    identity: GoogleIdentity
    http: httpx.Client

    @property
    def flow(self) -> OAuthFlow:
        return OAuthFlow(self.url, self.http, GOOGLE_PATHS, CALENDAR)

    def client(self) -> dict[str, str]:
        return self.flow.client()

    def service_account(self, name: str = "syncer") -> dict[str, str]:
        answer = self.http.post(f"{self.url}/_sandbox/service-accounts", json={"name": name})
        assert answer.status_code == 201, answer.text
        return dict(answer.json())


@pytest.fixture
def google() -> Iterator[Google]:
    identity = GoogleIdentity(Clock(), is_user=USERS.__contains__)
    with ServedApp(Starlette(routes=identity_routes(identity))) as served, httpx.Client(timeout=10) as http:
        yield Google(served.url, identity, http)


@pytest.fixture
def http() -> Iterator[HttpRequest]:
    """google-auth's transport over httplib2, its connections closed after the test."""
    connections = httplib2.Http(timeout=10)
    yield HttpRequest(connections)
    connections.close()


def consent(google: Google, client: dict[str, str], challenge: str, **params: str) -> str:
    """The consent page's HTML; Google's apps ask for offline access unless ``params`` say not."""
    return google.flow.consent(client, challenge, **{"access_type": "offline", **params})


def submit(google: Google, page: str, email: str, decision: str = "allow") -> httpx.Response:
    return google.flow.submit(page, email, decision)


def sign_in(google: Google, client: dict[str, str], email: str, *, scope: str = CALENDAR) -> tuple[str, str]:
    """(code, verifier) after a user allowed."""
    return google.flow.sign_in(client, email, scope=scope, access_type="offline")


def exchange(google: Google, client: dict[str, str], code: str, verifier: str) -> httpx.Response:
    return google.flow.exchange(client, code, verifier)


def test_a_delegated_service_account_acts_for_a_user_only_once_delegation_is_granted(
    google: Google, http: HttpRequest
) -> None:
    key = google.service_account()
    assert key["token_uri"] == f"{google.url}/token"
    delegated = service_account.Credentials.from_service_account_info(key, scopes=[CALENDAR]).with_subject(
        "alice@corp.example"
    )
    with pytest.raises(exceptions.RefreshError, match="unauthorized_client"):
        delegated.refresh(http)

    grant = {"client_id": key["client_id"], "domain": "corp.example", "scopes": [CALENDAR]}
    assert google.http.post(f"{google.url}/_sandbox/domain-wide-delegation", json=grant).status_code == 201
    delegated.refresh(http)
    principal = google.identity.oauth.authenticate(delegated.token)
    assert (principal.kind, principal.email, principal.via) == (
        PrincipalKind.SERVICE_ACCOUNT,
        "alice@corp.example",
        key["client_email"],
    )

    elsewhere = delegated.with_subject("bob@other.example")
    with pytest.raises(exceptions.RefreshError, match="unauthorized_client"):
        elsewhere.refresh(http)
    wider = service_account.Credentials.from_service_account_info(key, scopes=[CALENDAR, "openid"])
    with pytest.raises(exceptions.RefreshError, match="unauthorized_client"):
        wider.with_subject("alice@corp.example").refresh(http)

    assert google.http.request("DELETE", f"{google.url}/_sandbox/domain-wide-delegation", json=grant).json() == {
        "withdrawn": True
    }
    with pytest.raises(exceptions.RefreshError, match="unauthorized_client"):
        delegated.with_subject("alice@corp.example").refresh(http)


def test_a_service_account_without_a_subject_acts_as_itself_and_a_forged_key_is_refused(
    google: Google, http: HttpRequest
) -> None:
    key = google.service_account()
    own = service_account.Credentials.from_service_account_info(key, scopes=[CALENDAR])
    own.refresh(http)
    assert google.identity.oauth.authenticate(own.token).email == key["client_email"]

    forged = {**google.service_account("impostor"), "client_email": key["client_email"]}
    with pytest.raises(exceptions.RefreshError, match="invalid_grant"):
        service_account.Credentials.from_service_account_info(forged, scopes=[CALENDAR]).refresh(http)


def test_user_consent_with_pkce_gives_tokens_that_refresh_until_the_user_revokes(
    google: Google, http: HttpRequest
) -> None:
    client = google.client()
    code, verifier = sign_in(google, client, "alice@corp.example")
    tokens = exchange(google, client, code, verifier).json()
    assert tokens["token_type"] == "Bearer"
    assert google.identity.oauth.authenticate(tokens["access_token"]).email == "alice@corp.example"

    creds = user_credentials.Credentials(
        token=None,
        refresh_token=tokens["refresh_token"],
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        token_uri=f"{google.url}/token",
    )
    creds.refresh(http)
    assert google.identity.oauth.authenticate(creds.token).email == "alice@corp.example"

    revoked = google.http.post(f"{google.url}/_sandbox/users/alice@corp.example/revoke-grants")
    assert revoked.json() == {"revoked_grants": 1}
    with pytest.raises(TokenRefused):
        google.identity.oauth.authenticate(creds.token)
    with pytest.raises(exceptions.RefreshError, match="invalid_grant"):
        creds.refresh(http)


def test_a_code_used_twice_is_refused_and_ends_what_its_first_use_gave(google: Google) -> None:
    client = google.client()
    code, verifier = sign_in(google, client, "alice@corp.example")
    first = exchange(google, client, code, verifier).json()
    assert exchange(google, client, code, verifier).json()["error"] == "invalid_grant", "a code is used once"
    with pytest.raises(TokenRefused):
        google.identity.oauth.authenticate(first["access_token"])


def test_a_wrong_pkce_verifier_a_denial_and_an_unregistered_redirect_are_refused(
    google: Google, http: HttpRequest
) -> None:
    client = google.client()
    code, _verifier = sign_in(google, client, "alice@corp.example")
    wrong = exchange(google, client, code, secrets.token_urlsafe(48))
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")

    _, challenge = pkce()
    denied = submit(google, consent(google, client, challenge), "alice@corp.example", decision="deny")
    assert parse_qs(urlparse(denied.headers["location"]).query) == {"error": ["access_denied"], "state": ["st-1"]}

    stranger = submit(google, consent(google, client, challenge), "mallory@corp.example")
    assert stranger.status_code == 400
    assert "There is no account mallory@corp.example" in stranger.text

    params = {"client_id": client["client_id"], "redirect_uri": "http://127.0.0.1:9/elsewhere", "response_type": "code"}
    mismatch = google.http.get(f"{google.url}/o/oauth2/v2/auth", params={**params, "scope": CALENDAR})
    assert mismatch.status_code == 400
    assert "redirect_uri_mismatch" in mismatch.text
    assert "location" not in mismatch.headers, "never redirect to an address the client did not register"


def test_no_refresh_token_without_offline_access(google: Google) -> None:
    client = google.client()
    verifier, challenge = pkce()
    answer = submit(google, consent(google, client, challenge, access_type="online"), "alice@corp.example")
    code = parse_qs(urlparse(answer.headers["location"]).query)["code"][0]
    assert "refresh_token" not in exchange(google, client, code, verifier).json()


def test_id_tokens_pass_google_auth_verification_with_the_sandbox_certs(google: Google, http: HttpRequest) -> None:
    minted = google.http.post(
        f"{google.url}/_sandbox/id-token", json={"email": "alice@corp.example", "audience": "addon-client"}
    ).json()["id_token"]
    certs_url = f"{google.url}/oauth2/v1/certs"
    claims = id_token.verify_token(minted, http, audience="addon-client", certs_url=certs_url)
    assert (claims["iss"], claims["email"], claims["hd"]) == (
        "https://accounts.google.com",
        "alice@corp.example",
        "corp.example",
    )
    with pytest.raises(ValueError, match="audience"):
        id_token.verify_token(minted, http, audience="someone-else", certs_url=certs_url)
    jwks = KeySet.import_key_set(google.http.get(f"{google.url}/oauth2/v3/certs").json())
    assert jose_jwt.decode(minted, jwks).claims["email"] == "alice@corp.example", "the JWKS holds the same key"

    consumer = google.http.post(
        f"{google.url}/_sandbox/id-token", json={"email": "carol@gmail.com", "audience": "addon-client"}
    ).json()["id_token"]
    claims = id_token.verify_token(consumer, http, audience="addon-client", certs_url=f"{google.url}/oauth2/v1/certs")
    assert "hd" not in claims, "consumer accounts carry no hosted domain"
    unknown = google.http.post(
        f"{google.url}/_sandbox/id-token", json={"email": "nobody@corp.example", "audience": "a"}
    )
    assert unknown.status_code == 404


def test_openid_consent_returns_an_id_token_for_the_client(google: Google, http: HttpRequest) -> None:
    client = google.client()
    code, verifier = sign_in(google, client, "bob@other.example", scope=f"openid email {CALENDAR}")
    tokens = exchange(google, client, code, verifier).json()
    claims = id_token.verify_token(
        tokens["id_token"], http, audience=client["client_id"], certs_url=f"{google.url}/oauth2/v1/certs"
    )
    assert claims["email"] == "bob@other.example"


@pytest.fixture
def calendar_with_auth() -> Iterator[tuple[str, CalendarSandbox]]:
    """The whole Calendar sandbox with --require-auth and two users of one domain."""
    sandbox = build_sandbox(require_auth=True)
    for email in ("alice@corp.example", "dave@corp.example"):
        sandbox.model.add_user(email)
    with ServedApp(create_app(sandbox)) as served:
        yield served.url, sandbox


def calendar_service(url: str, credentials: object, connections: httplib2.Http) -> Any:
    http = AuthorizedHttp(credentials, http=connections)
    return build(
        "calendar", "v3", http=http, static_discovery=True, client_options={"api_endpoint": f"{url}/calendar/v3/"}
    )


def test_a_delegated_service_account_reads_a_users_calendar_through_the_calendar_api(
    calendar_with_auth: tuple[str, CalendarSandbox],
) -> None:
    url, _sandbox = calendar_with_auth
    with httpx.Client(timeout=10) as admin:
        key = admin.post(f"{url}/_sandbox/service-accounts", json={"name": "syncer"}).json()
        grant = {"client_id": key["client_id"], "domain": "corp.example", "scopes": [CALENDAR]}
        alice_event = {
            "summary": "Planning",
            "start": {"dateTime": "2026-12-10T10:00:00Z"},
            "end": {"dateTime": "2026-12-10T11:00:00Z"},
        }
        connections = httplib2.Http(timeout=10)
        try:
            delegated = service_account.Credentials.from_service_account_info(key, scopes=[CALENDAR]).with_subject(
                "alice@corp.example"
            )
            service = calendar_service(url, delegated, connections)
            with pytest.raises(exceptions.RefreshError, match="unauthorized_client"):
                service.events().list(calendarId="primary").execute()

            assert admin.post(f"{url}/_sandbox/domain-wide-delegation", json=grant).status_code == 201
            created = service.events().insert(calendarId="primary", body=alice_event).execute()
            listed = service.events().list(calendarId="alice@corp.example").execute()
            assert [item["id"] for item in listed["items"]] == [created["id"]]
            with pytest.raises(HttpError) as refused:
                service.events().list(calendarId="dave@corp.example").execute()
            assert refused.value.resp.status == 404, "alice's token does not open dave's calendar"
        finally:
            connections.close()
        journal = admin.get(f"{url}/_sandbox/requests").json()
        assert {entry["principal"] for entry in journal} >= {
            f"service_account:alice@corp.example via {key['client_email']}"
        }
        assert not any("ya29." in str(entry) for entry in journal), "the journal names principals, never tokens"


def test_a_consented_users_token_opens_their_calendar_until_they_revoke_the_grant(
    calendar_with_auth: tuple[str, CalendarSandbox],
) -> None:
    url, sandbox = calendar_with_auth
    with httpx.Client(timeout=10) as http:
        google = Google(url, sandbox.identity, http)
        client = google.client()
        tokens = google.flow.connect(client, "alice@corp.example", access_type="offline")
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        events = f"{url}/calendar/v3/calendars/primary/events"
        assert http.get(events, headers=bearer).status_code == 200
        assert http.get(f"{url}/calendar/v3/calendars/dave@corp.example/events", headers=bearer).status_code == 404
        assert http.post(f"{url}/_sandbox/users/alice@corp.example/revoke-grants").json() == {"revoked_grants": 1}
        refused = http.get(events, headers=bearer)
        assert refused.status_code == 401
        assert refused.json()["error"]["errors"][0]["reason"] == "authError"


def test_an_expired_access_token_is_refused_and_google_auth_refreshes_it(
    calendar_with_auth: tuple[str, CalendarSandbox],
) -> None:
    url, sandbox = calendar_with_auth
    with httpx.Client(timeout=10) as http:
        google = Google(url, sandbox.identity, http)
        client = google.client()
        tokens = google.flow.connect(client, "alice@corp.example", access_type="offline")
        assert tokens["expires_in"] == 3600
        http.post(f"{url}/_sandbox/clock", json={"advance_s": 3601})
        expired = http.get(
            f"{url}/calendar/v3/calendars/primary/events", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert expired.status_code == 401

    creds = user_credentials.Credentials(
        token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        token_uri=f"{url}/token",
    )
    connections = httplib2.Http(timeout=10)
    try:
        listed = calendar_service(url, creds, connections).events().list(calendarId="primary").execute()
    finally:
        connections.close()
    assert listed["kind"] == "calendar#events", "the client refreshed on the 401 and retried"
    assert creds.token != tokens["access_token"]


def assertion(key: dict[str, str], **claims: object) -> str:
    """A service-account assertion signed with the key file's key, with ``claims`` over the defaults."""
    now = int(time.time())
    signer = crypt.RSASigner.from_service_account_info(key)
    body = {"iss": key["client_email"], "aud": key["token_uri"], "iat": now, "exp": now + 600, "scope": CALENDAR}
    return google_jwt.encode(signer, {**body, **claims}).decode()


@pytest.mark.parametrize(
    ("claims", "error"),
    [
        ({"scope": ""}, "invalid_scope"),  # Google refuses a token for no scope
        ({"scope": ["a"]}, "invalid_scope"),
        ({"aud": "https://elsewhere.example/token"}, "invalid_grant"),
        ({"exp": int(time.time()) + 7200}, "invalid_grant"),  # assertions last at most an hour
        ({"iat": "yesterday"}, "invalid_grant"),
        ({"aud": {"not": "a string"}}, "invalid_grant"),
        ({"target_audience": {"not": "a string"}}, "invalid_grant"),
    ],
)
def test_a_service_account_assertion_google_would_refuse_is_refused_with_a_reason(
    google: Google, claims: dict[str, object], error: str
) -> None:
    key = google.service_account()
    answer = google.http.post(
        f"{google.url}/token",
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion(key, **claims)},
    )
    assert answer.status_code in {400, 401}, answer.text
    assert answer.json()["error"] == error


def test_revoking_a_users_grants_ignores_the_case_of_the_email(google: Google) -> None:
    client = google.client()
    code, verifier = sign_in(google, client, "alice@corp.example")
    tokens = exchange(google, client, code, verifier).json()
    assert google.http.post(f"{google.url}/_sandbox/users/ALICE@Corp.Example/revoke-grants").json() == {
        "revoked_grants": 1
    }
    with pytest.raises(TokenRefused):
        google.identity.oauth.authenticate(tokens["access_token"])
