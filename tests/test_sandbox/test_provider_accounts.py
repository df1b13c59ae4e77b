"""The conferencing sandbox as a typical vendor's OAuth 2.0 side, over HTTP with httpx: vendor
accounts, consent by submitting the page's form, PKCE, refresh-token rotation, revocation,
per-user conferences, token expiry, the journal's principals, and the API key as before."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from typer.testing import CliRunner

from confsync.serving import ServedApp
from sandbox.provider import ProviderStore, create_app
from sandbox.provider.server import build_sandbox
from stack.cli.sandbox import app as sandbox_cli

API_KEY = "app-key-1"
REDIRECT = "http://127.0.0.1:9/oauth/callback"
ALICE, BOB = "alice@corp.example", "bob@other.example"
TTL_S, GRACE_S = 60, 30


@dataclass
class Vendor:
    url: str
    http: httpx.Client

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(f"{self.url}{path}", **kwargs)

    def user(self, email: str) -> None:
        assert self.post("/_sandbox/users", json={"email": email}).status_code in (200, 201)

    def client(self) -> dict[str, str]:
        answer = self.post("/_sandbox/oauth-clients", json={"redirect_uris": [REDIRECT], "name": "confsync"})
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

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


def _serve(sandbox: Any) -> Iterator[Vendor]:
    with ServedApp(create_app(sandbox)) as served, httpx.Client(timeout=10) as http:
        yield Vendor(served.url, http)


@pytest.fixture
def vendor() -> Iterator[Vendor]:
    yield from _serve(build_sandbox(api_key=API_KEY, token_ttl_s=TTL_S, refresh_grace_s=GRACE_S))


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def consent_page(vendor: Vendor, client: dict[str, str], challenge: str, **extra: str) -> str:
    params = {
        "client_id": client["client_id"],
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "conferences",
        "state": "st-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    page = vendor.http.get(f"{vendor.url}/oauth/authorize", params=params)
    assert page.status_code == 200, page.text
    return page.text


def submit(vendor: Vendor, page: str, email: str, decision: str = "allow") -> httpx.Response:
    """The page's form posted back as a browser without JavaScript would: hidden fields, email, button."""
    action = re.search(r'<form method="post" action="([^"]+)"', page)
    assert action is not None
    fields = {
        unescape(name): unescape(value)
        for name, value in re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page)
    }
    return vendor.post(unescape(action[1]), data={**fields, "email": email, "decision": decision})


def sign_in(vendor: Vendor, client: dict[str, str], email: str) -> tuple[str, str]:
    """(code, verifier) once ``email`` allowed the app."""
    verifier, challenge = pkce()
    answer = submit(vendor, consent_page(vendor, client, challenge), email)
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlparse(answer.headers["location"]).query)
    assert query["state"] == ["st-1"]
    return query["code"][0], verifier


def token_call(vendor: Vendor, client: dict[str, str], **form: str) -> httpx.Response:
    return vendor.post(
        "/oauth/token", data={**form, "client_id": client["client_id"], "client_secret": client["client_secret"]}
    )


def exchange(vendor: Vendor, client: dict[str, str], code: str, verifier: str) -> httpx.Response:
    return token_call(
        vendor, client, grant_type="authorization_code", code=code, code_verifier=verifier, redirect_uri=REDIRECT
    )


def refresh(vendor: Vendor, client: dict[str, str], refresh_token: str) -> httpx.Response:
    return token_call(vendor, client, grant_type="refresh_token", refresh_token=refresh_token)


def connect(vendor: Vendor, client: dict[str, str], email: str) -> dict[str, Any]:
    """The tokens an app holds once ``email`` (an existing account) connected it."""
    vendor.user(email)
    answer = exchange(vendor, client, *sign_in(vendor, client, email))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


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
    page = consent_page(vendor, client, challenge, login_hint=ALICE)
    assert f"Sign in to My Web Conferencing as {ALICE}" in page
    assert 'value="allow"' in page
    assert 'value="deny"' in page
    assert "<script" not in page, "a plain form, no JavaScript"

    answer = submit(vendor, page, ALICE)
    assert answer.status_code == 302
    code = parse_qs(urlparse(answer.headers["location"]).query)["code"][0]
    tokens = exchange(vendor, client, code, verifier).json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == TTL_S
    assert tokens["refresh_token"], "a vendor always gives a refresh token (no access_type)"
    assert exchange(vendor, client, code, verifier).json()["error"] == "invalid_grant", "a code is used once"

    created = vendor.create(tokens["access_token"])
    assert created.status_code == 201, created.text
    shown = vendor.api("GET", f"/v1/conferences/{created.json()['id']}", tokens["access_token"]).json()
    assert shown["owner"] == ALICE


def test_a_denial_a_stranger_and_a_wrong_pkce_verifier_are_refused(vendor: Vendor) -> None:
    vendor.user(ALICE)
    client = vendor.client()
    _, challenge = pkce()
    denied = submit(vendor, consent_page(vendor, client, challenge), ALICE, decision="deny")
    assert parse_qs(urlparse(denied.headers["location"]).query) == {"error": ["access_denied"], "state": ["st-1"]}

    stranger = submit(vendor, consent_page(vendor, client, challenge), "mallory@corp.example")
    assert stranger.status_code == 400
    assert "There is no account mallory@corp.example" in stranger.text

    code, _verifier = sign_in(vendor, client, ALICE)
    wrong = exchange(vendor, client, code, secrets.token_urlsafe(48))
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    code, _verifier = sign_in(vendor, client, ALICE)
    missing = exchange(vendor, client, code, "")
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_grant")


# -- refresh, expiry, revocation ---------------------------------------------------------------------


def test_each_refresh_rotates_the_refresh_token_and_the_old_one_works_only_within_the_grace(
    vendor: Vendor,
) -> None:
    client = vendor.client()
    first = connect(vendor, client, ALICE)
    second = refresh(vendor, client, first["refresh_token"]).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert vendor.create(second["access_token"]).status_code == 201

    retried = refresh(vendor, client, first["refresh_token"])
    assert retried.status_code == 200, "the replaced token still works within the grace"

    vendor.advance(GRACE_S + 1)
    late = refresh(vendor, client, first["refresh_token"])
    assert (late.status_code, late.json()["error"]) == (400, "invalid_grant")
    third = refresh(vendor, client, second["refresh_token"])
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

    fresh = refresh(vendor, client, tokens["refresh_token"]).json()
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
    refused = refresh(vendor, client, tokens["refresh_token"])
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
