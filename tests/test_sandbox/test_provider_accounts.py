"""The conferencing sandbox as a typical vendor's OAuth 2.0 side, over HTTP with httpx: vendor
accounts, consent by submitting the page's form, PKCE, refresh-token rotation, revocation,
scopes, per-user conferences, token expiry, the journal's principals, and the API key as before."""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from tests_support.oauth_flow import VENDOR_PATHS, OAuthFlow, pkce
from typer.testing import CliRunner

from confsync.serving import ServedApp
from sandbox.provider import ProviderStore, create_app
from sandbox.provider.server import build_sandbox
from stack.cli.sandbox import app as sandbox_cli

API_KEY = "app-key-1"
ALICE, BOB = "alice@corp.example", "bob@other.example"
TTL_S, GRACE_S = 60, 30


@dataclass
class Vendor:
    url: str
    http: httpx.Client
    flow: OAuthFlow

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(f"{self.url}{path}", **kwargs)

    def user(self, email: str) -> None:
        assert self.post("/_sandbox/users", json={"email": email}).status_code in (200, 201)

    def client(self) -> dict[str, str]:
        return self.flow.client("confsync")

    def advance(self, seconds: float) -> None:
        assert self.post("/_sandbox/clock", json={"advance_s": seconds}).status_code == 200

    def api(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        return self.http.request(method, f"{self.url}{path}", headers=headers, **kwargs)

    def create(self, token: str, request_id: str = "r1") -> httpx.Response:
        body = {"calendar_id": "primary", "event_id": f"e-{request_id}", "request_id": request_id}
        return self.api("POST", "/v1/conferences", token, json=body)

    def journal(self) -> list[dict[str, Any]]:
        return list(self.http.get(f"{self.url}/_sandbox/requests").json())


def _serve(sandbox: Any, *, shortcut: bool = True) -> Iterator[Vendor]:
    with ServedApp(create_app(sandbox, shortcut=shortcut)) as served, httpx.Client(timeout=10) as http:
        yield Vendor(served.url, http, OAuthFlow(served.url, http, VENDOR_PATHS, "conferences"))


@pytest.fixture
def vendor() -> Iterator[Vendor]:
    yield from _serve(build_sandbox(api_key=API_KEY, token_ttl_s=TTL_S, refresh_grace_s=GRACE_S))


def connect(vendor: Vendor, client: dict[str, str], email: str, **params: str) -> dict[str, Any]:
    """The tokens an app holds once ``email`` (an existing account) connected it."""
    vendor.user(email)
    return vendor.flow.connect(client, email, **params)


def assert_invalid_token(answer: httpx.Response) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "invalid_token"
    assert answer.json()["error"]["retryable"] is False
    assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


# -- accounts and consent --------------------------------------------------------------------------


def test_vendor_accounts_are_created_once_and_a_bad_address_is_refused(vendor: Vendor) -> None:
    first = vendor.post("/_sandbox/users", json={"email": "Alice@Corp.Example"})
    assert (first.status_code, first.json()) == (201, {"email": ALICE})
    again = vendor.post("/_sandbox/users", json={"email": ALICE})
    assert (again.status_code, again.json()) == (200, {"email": ALICE})
    for bad in ("not-an-address", "", None, 42, "a@b"):
        answer = vendor.post("/_sandbox/users", json={"email": bad})
        assert answer.status_code == 400, bad
        assert answer.json()["error"]["code"] == "invalid_email"
    assert vendor.http.get(f"{vendor.url}/_sandbox/users").json() == {"users": [ALICE]}


def test_consent_by_submitting_the_form_gives_tokens_that_act_for_the_user(vendor: Vendor) -> None:
    vendor.user(ALICE)
    client = vendor.client()
    verifier, challenge = pkce()
    page = vendor.flow.consent(client, challenge, login_hint=ALICE)
    assert f"Sign in to My Web Conferencing as {ALICE}" in page
    assert 'value="allow"' in page
    assert 'value="deny"' in page
    assert "<script" not in page, "a plain form, no JavaScript"

    answer = vendor.flow.submit(page, ALICE)
    assert answer.status_code == 302
    code = parse_qs(urlparse(answer.headers["location"]).query)["code"][0]
    tokens = vendor.flow.exchange(client, code, verifier).json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == TTL_S
    assert tokens["refresh_token"], "a vendor always gives a refresh token (no access_type)"
    assert tokens["scope"] == "conferences"

    created = vendor.create(tokens["access_token"])
    assert created.status_code == 201, created.text
    shown = vendor.api("GET", f"/v1/conferences/{created.json()['id']}", tokens["access_token"]).json()
    assert shown["owner"] == ALICE
    assert vendor.flow.exchange(client, code, verifier).json()["error"] == "invalid_grant", "a code is used once"


def test_a_code_used_again_ends_the_grant_its_first_exchange_made(vendor: Vendor) -> None:
    client = vendor.client()
    vendor.user(ALICE)
    code, verifier = vendor.flow.sign_in(client, ALICE)
    tokens = vendor.flow.exchange(client, code, verifier).json()
    other = connect(vendor, client, ALICE)
    assert vendor.create(tokens["access_token"]).status_code == 201

    again = vendor.flow.exchange(client, code, verifier)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    assert_invalid_token(vendor.create(tokens["access_token"], "r2"))
    refused = vendor.flow.refresh(client, tokens["refresh_token"])
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    assert vendor.create(other["access_token"], "r3").status_code == 201, "another sign-in's grant lives on"


def test_a_denial_a_stranger_and_a_wrong_pkce_verifier_are_refused(vendor: Vendor) -> None:
    vendor.user(ALICE)
    client = vendor.client()
    _, challenge = pkce()
    denied = vendor.flow.submit(vendor.flow.consent(client, challenge), ALICE, decision="deny")
    assert parse_qs(urlparse(denied.headers["location"]).query) == {"error": ["access_denied"], "state": ["st-1"]}

    stranger = vendor.flow.submit(vendor.flow.consent(client, challenge), "mallory@corp.example")
    assert stranger.status_code == 400
    assert "There is no account mallory@corp.example" in stranger.text

    code, _verifier = vendor.flow.sign_in(client, ALICE)
    wrong = vendor.flow.exchange(client, code, secrets.token_urlsafe(48))
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    code, _verifier = vendor.flow.sign_in(client, ALICE)
    missing = vendor.flow.exchange(client, code, "")
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_grant")


# -- refresh, expiry, revocation ---------------------------------------------------------------------


def test_each_refresh_rotates_the_refresh_token_and_the_old_one_works_only_within_the_grace(
    vendor: Vendor,
) -> None:
    client = vendor.client()
    first = connect(vendor, client, ALICE)
    second = vendor.flow.refresh(client, first["refresh_token"]).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert vendor.create(second["access_token"]).status_code == 201

    retried = vendor.flow.refresh(client, first["refresh_token"])
    assert retried.status_code == 200, "the replaced token still works within the grace"

    vendor.advance(GRACE_S + 1)
    late = vendor.flow.refresh(client, first["refresh_token"])
    assert (late.status_code, late.json()["error"]) == (400, "invalid_grant")
    third = vendor.flow.refresh(client, second["refresh_token"])
    assert third.status_code == 200, "the newest token still works"
    assert vendor.api("GET", "/v1/conferences/cnf_missing", third.json()["access_token"]).status_code == 404


def test_an_expired_access_token_is_401_invalid_token_until_refreshed(vendor: Vendor) -> None:
    client = vendor.client()
    tokens = connect(vendor, client, ALICE)
    vendor.advance(TTL_S + 1)
    expired = vendor.create(tokens["access_token"])
    assert_invalid_token(expired)
    assert "expired" in expired.json()["error"]["message"]
    assert expired.json()["error"]["authentication_url"].endswith("/oauth/authorize")

    fresh = vendor.flow.refresh(client, tokens["refresh_token"]).json()
    assert vendor.create(fresh["access_token"]).status_code == 201


@pytest.mark.parametrize("how", ["oauth-revoke-refresh", "oauth-revoke-access", "user-disconnects"])
def test_a_revoked_grant_ends_access_and_refresh(vendor: Vendor, how: str) -> None:
    client = vendor.client()
    tokens = connect(vendor, client, ALICE)
    assert vendor.create(tokens["access_token"]).status_code == 201
    if how == "user-disconnects":
        answer = vendor.post(f"/_sandbox/users/{ALICE}/revoke")
        assert answer.json() == {"revoked_grants": 1}
    else:
        which = "refresh_token" if how == "oauth-revoke-refresh" else "access_token"
        assert vendor.post("/oauth/revoke", data={"token": tokens[which]}).status_code == 200

    assert_invalid_token(vendor.create(tokens["access_token"], "r2"))
    refused = vendor.flow.refresh(client, tokens["refresh_token"])
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")

    again = connect(vendor, client, ALICE)
    assert vendor.create(again["access_token"], "r3").status_code == 201, "consenting again works"


def test_disconnecting_an_unknown_user_is_404_and_ends_only_that_users_grants(vendor: Vendor) -> None:
    assert vendor.post("/_sandbox/users/nobody@corp.example/revoke").status_code == 404
    client = vendor.client()
    alice, bob = connect(vendor, client, ALICE), connect(vendor, client, BOB)
    assert vendor.post(f"/_sandbox/users/{ALICE}/revoke").json() == {"revoked_grants": 1}
    assert_invalid_token(vendor.create(alice["access_token"]))
    assert vendor.create(bob["access_token"]).status_code == 201


# -- scopes -----------------------------------------------------------------------------------------


def assert_insufficient_scope(answer: httpx.Response, scope: str) -> None:
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"]["code"] == "insufficient_scope"
    assert answer.json()["error"]["retryable"] is False
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="insufficient_scope"')
    assert f'scope="{scope}"' in challenge


@pytest.mark.parametrize("shortcut", [True, False], ids=["shortcut", "fastapi"])
def test_a_read_only_token_reads_but_cannot_create_change_or_delete(shortcut: bool) -> None:
    for vendor in _serve(build_sandbox(api_key=API_KEY), shortcut=shortcut):
        client = vendor.client()
        reader = connect(vendor, client, ALICE, scope="conferences:read")
        assert reader["scope"] == "conferences:read"
        writer = connect(vendor, client, ALICE)["access_token"]
        mine = vendor.create(writer).json()["id"]
        path = f"/v1/conferences/{mine}"
        token = reader["access_token"]

        assert vendor.api("GET", path, token).json()["owner"] == ALICE
        assert vendor.api("GET", "/v1/conferences/cnf_missing", token).status_code == 404
        assert_insufficient_scope(vendor.create(token, "r2"), "conferences")
        patch = {"event_updated": "2026-11-24T10:00:00Z", "summary": "changed"}
        for key in ("k1", "not a valid key"):  # a valid key takes the shortcut, an invalid one does not
            headers = {"Idempotency-Key": key}
            assert_insufficient_scope(vendor.api("PATCH", path, token, json=patch, headers=headers), "conferences")
            assert_insufficient_scope(vendor.api("DELETE", path, token, headers=headers), "conferences")
        shown = vendor.api("GET", path, writer).json()
        assert (shown["state"], shown.get("summary")) == ("active", None), "nothing changed"
        refusals = vendor.journal()[3:8]  # after the create and the reader's two GETs
        assert [(entry["principal"], entry["status"]) for entry in refusals] == [(f"user:{ALICE}", 403)] * 5
        assert vendor.api("DELETE", path, API_KEY, headers={"Idempotency-Key": "k9"}).status_code == 204, (
            "the API key is not scoped"
        )


def test_both_scopes_together_allow_everything(vendor: Vendor) -> None:
    tokens = connect(vendor, vendor.client(), ALICE, scope="conferences:read conferences")
    assert tokens["scope"] == "conferences conferences:read"
    assert vendor.create(tokens["access_token"]).status_code == 201


@pytest.mark.parametrize("scope", ["made-up", "conferences made-up", "Conferences", "conferences:write"])
def test_a_scope_the_vendor_does_not_offer_is_sent_back_as_invalid_scope(vendor: Vendor, scope: str) -> None:
    vendor.user(ALICE)
    client = vendor.client()
    _, challenge = pkce()
    params = {
        "client_id": client["client_id"],
        "redirect_uri": vendor.flow.redirect,
        "response_type": "code",
        "scope": scope,
        "state": "st-9",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    asked = vendor.http.get(f"{vendor.url}/oauth/authorize", params=params)
    allowed = vendor.post("/oauth/authorize", data={**params, "email": ALICE, "decision": "allow"})
    for answer in (asked, allowed):  # the consent page, and its form posted back with a changed scope
        assert answer.status_code == 302, answer.text
        location = answer.headers["location"]
        assert location.startswith(vendor.flow.redirect)
        query = parse_qs(urlparse(location).query)
        assert (query["error"], query["state"]) == (["invalid_scope"], ["st-9"])
        assert "code" not in query


# -- the sandbox clock ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"1e20",
        b"1e308",
        b"1e400",
        b"3e11",
        b"315576001",
        b"-1",
        b'"1"',
        b"true",
        b"null",
    ],
)
def test_a_clock_advance_that_is_not_finite_or_out_of_range_is_400(vendor: Vendor, value: bytes) -> None:
    answer = vendor.post(
        "/_sandbox/clock", content=b'{"advance_s": ' + value + b"}", headers={"Content-Type": "application/json"}
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "invalid_request")
    vendor.advance(1)
    vendor.user(ALICE)
    assert vendor.create(connect(vendor, vendor.client(), ALICE)["access_token"]).status_code == 201
    assert vendor.post("/_sandbox/reset").status_code == 200


# -- per-user conferences, the API key, the journal ------------------------------------------------


def test_each_user_sees_only_their_own_conferences_and_the_api_key_sees_all(vendor: Vendor) -> None:
    client = vendor.client()
    alice, bob = connect(vendor, client, ALICE)["access_token"], connect(vendor, client, BOB)["access_token"]
    mine = vendor.create(alice, "shared-request").json()["id"]
    path = f"/v1/conferences/{mine}"
    patch = {"event_updated": "2026-11-24T10:00:00Z", "summary": "taken over"}

    assert vendor.api("GET", path, bob).status_code == 404
    assert vendor.api("PATCH", path, bob, json=patch, headers={"Idempotency-Key": "k1"}).status_code == 404
    assert vendor.api("DELETE", path, bob, headers={"Idempotency-Key": "k2"}).status_code == 404
    theirs = vendor.create(bob, "shared-request")
    assert theirs.status_code == 201, "the same request_id in another account is another conference"
    assert theirs.json()["id"] != mine

    shown = vendor.api("GET", path, alice).json()
    assert (shown["owner"], shown["state"], shown.get("summary")) == (ALICE, "active", None)
    patched = vendor.api("PATCH", path, alice, json=patch, headers={"Idempotency-Key": "k1"})
    assert (patched.status_code, patched.json()["owner"]) == (200, ALICE)

    assert vendor.api("GET", path, API_KEY).json()["owner"] == ALICE, "the app key sees every conference"
    apps = vendor.create(API_KEY, "app-request").json()["id"]
    assert vendor.api("GET", f"/v1/conferences/{apps}", API_KEY).json()["owner"] is None
    assert vendor.api("GET", f"/v1/conferences/{apps}", alice).status_code == 404
    assert vendor.api("DELETE", path, API_KEY, headers={"Idempotency-Key": "k3"}).status_code == 204


def test_the_api_key_works_as_before_and_an_unknown_token_is_unauthenticated(vendor: Vendor) -> None:
    assert vendor.create(API_KEY).status_code == 201
    assert vendor.create(API_KEY).status_code == 200, "the same request_id replays"
    for token in ("wrong-key", "mwc_made_up"):
        answer = vendor.create(token)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthenticated"
    missing = vendor.http.post(f"{vendor.url}/v1/conferences", json={})
    assert missing.status_code == 401
    wrong_method = vendor.http.get(f"{vendor.url}/oauth/token")
    assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "POST")


def test_the_journal_names_the_principal_of_each_call_and_never_a_token(vendor: Vendor) -> None:
    client = vendor.client()
    alice = connect(vendor, client, ALICE)
    bob = connect(vendor, client, BOB)
    vendor.create(alice["access_token"], "a")
    vendor.create(bob["access_token"], "b")
    vendor.create(API_KEY, "c")
    vendor.create("not-a-token", "d")
    vendor.post(f"/_sandbox/users/{ALICE}/revoke")
    vendor.create(alice["access_token"], "e")

    journal = vendor.journal()
    assert [(entry["principal"], entry["status"]) for entry in journal] == [
        (f"user:{ALICE}", 201),
        (f"user:{BOB}", 201),
        ("app", 201),
        (None, 401),
        (None, 401),
    ]
    text = json.dumps(journal)
    for secret in (API_KEY, alice["access_token"], bob["access_token"], alice["refresh_token"]):
        assert secret not in text


def test_reset_forgets_users_and_ends_their_tokens(vendor: Vendor) -> None:
    client = vendor.client()
    tokens = connect(vendor, client, ALICE)
    assert vendor.post("/_sandbox/reset").status_code == 200
    assert vendor.http.get(f"{vendor.url}/_sandbox/users").json() == {"users": []}
    assert_invalid_token(vendor.create(tokens["access_token"]))
    assert vendor.create(API_KEY).status_code == 201


# -- persistence and the command ---------------------------------------------------------------------


def test_users_and_owners_survive_a_restart_but_tokens_do_not(tmp_path: Path) -> None:
    db = tmp_path / "provider.db"
    for vendor in _serve(build_sandbox(api_key=API_KEY, db=db)):
        tokens = connect(vendor, vendor.client(), ALICE)
        conference = vendor.create(tokens["access_token"]).json()["id"]
    for vendor in _serve(build_sandbox(api_key=API_KEY, db=db)):
        assert vendor.http.get(f"{vendor.url}/_sandbox/users").json() == {"users": [ALICE]}
        assert vendor.api("GET", f"/v1/conferences/{conference}", API_KEY).json()["owner"] == ALICE
        assert vendor.create(tokens["access_token"]).json()["error"]["code"] == "unauthenticated"
        again = connect(vendor, vendor.client(), ALICE)
        assert vendor.api("GET", f"/v1/conferences/{conference}", again["access_token"]).status_code == 200


def test_a_file_from_before_vendor_accounts_gains_owners(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as old:
        old.execute(
            "CREATE TABLE conferences (id TEXT PRIMARY KEY, request_id TEXT NOT NULL UNIQUE, data TEXT NOT NULL,"
            " state TEXT NOT NULL, version INTEGER NOT NULL, updated_at TEXT NOT NULL, last_event_updated TEXT)"
        )
        old.execute("INSERT INTO conferences VALUES ('cnf_old', 'r0', '{\"id\": \"cnf_old\"}', 'active', 1, 't', NULL)")
    old.close()
    store = ProviderStore(str(db))
    try:
        shown = store.get("cnf_old")
        assert (shown.status, shown.body and shown.body["owner"]) == (200, None)
        assert store.get("cnf_old", as_user=ALICE).status == 404
    finally:
        store.close()


def test_the_provider_command_offers_the_token_options() -> None:
    shown = CliRunner().invoke(sandbox_cli, ["provider", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert shown.exit_code == 0, shown.output
    assert "--token-ttl" in shown.output
    assert "--refresh-grace" in shown.output
