"""Users, authentication and access control on the Calendar sandbox, through
google-api-python-client as an app sees Google: 401 for a bad token, ACLs managed by the
calendar's owner, 404 to a stranger's reads and 403 to a reader's writes, the caller's calendar
list with its access roles, and all of it kept across a restart with ``--db``."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from googleapiclient.errors import HttpError
from tests_support import RunningCalendar, event_body
from tests_support.cli import start_confsync
from tests_support.fixtures import serve_calendar

from confsync.serving import free_port
from sandbox.calendar.access import Role
from sandbox.calendar.server import build_sandbox
from sandbox.identity import Principal, PrincipalKind, TokenRefused

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
READONLY = "https://www.googleapis.com/auth/calendar.readonly"

served = contextmanager(serve_calendar)


class UserTokens:
    """A test Authenticator: ``tok-<name>`` for each user, which a test may revoke or scope."""

    def __init__(self, *emails: str) -> None:
        self.tokens = {f"tok-{email.partition('@')[0]}": Principal(PrincipalKind.USER, email) for email in emails}
        self.revoked: set[str] = set()

    def scope(self, token: str, *scopes: str) -> None:
        principal = self.tokens[token]
        self.tokens[token] = Principal(principal.kind, principal.email, scopes=frozenset(scopes))

    def authenticate(self, bearer: str) -> Principal:
        if bearer in self.revoked:
            raise TokenRefused("revoked")
        if bearer not in self.tokens:
            raise TokenRefused("unknown token")
        return self.tokens[bearer]


def error_of(call: Any) -> HttpError:
    with pytest.raises(HttpError) as caught:
        call.execute()
    return caught.value


def detail(err: HttpError) -> dict[str, Any]:
    details: list[dict[str, Any]] = err.error_details  # type: ignore[assignment]
    return details[0]


def share(service: Any, calendar_id: str, email: str, role: str) -> dict[str, Any]:
    body = {"role": role, "scope": {"type": "user", "value": email}}
    rule: dict[str, Any] = service.acl().insert(calendarId=calendar_id, body=body).execute()
    return rule


@pytest.fixture
def tokens() -> UserTokens:
    return UserTokens(ALICE, BOB, CAROL)


@pytest.fixture
def running(tokens: UserTokens) -> Iterator[RunningCalendar]:
    """A sandbox that requires auth, with alice, bob and carol as users."""
    with served(build_sandbox(require_auth=True, authenticator=tokens)) as running:
        for email in (ALICE, BOB, CAROL):
            running.admin("POST", "/_sandbox/users", {"email": email, "name": email.partition("@")[0].title()})
        yield running


# -- users ------------------------------------------------------------------------------------------


def test_a_user_is_created_once_with_a_primary_calendar(running: RunningCalendar) -> None:
    created = httpx.post(f"{running.url}/_sandbox/users", json={"email": "Dave@Example.com", "name": "Dave"})
    assert created.status_code == 201
    assert created.json() == {"email": "dave@example.com", "name": "Dave", "calendarId": "dave@example.com"}
    again = httpx.post(f"{running.url}/_sandbox/users", json={"email": "dave@example.com", "name": "Dave"})
    assert (again.status_code, again.json()) == (200, created.json()), "the same user again changes nothing"
    renamed = httpx.post(f"{running.url}/_sandbox/users", json={"email": "dave@example.com", "name": "David"})
    assert renamed.status_code == 409
    for bad in ("not an email", "", None, "a@b"):
        assert httpx.post(f"{running.url}/_sandbox/users", json={"email": bad}).status_code == 400
    assert {user["email"] for user in running.admin("GET", "/_sandbox/users")} == {
        ALICE,
        BOB,
        CAROL,
        "dave@example.com",
    }
    assert running.sandbox.model.role("dave@example.com", "dave@example.com") is not None, "the primary calendar exists"


# -- authentication ---------------------------------------------------------------------------------


def test_require_auth_refuses_a_missing_unknown_or_revoked_token_as_google_does(
    running: RunningCalendar, tokens: UserTokens
) -> None:
    url = f"{running.url}/calendar/v3/calendars/primary/events"
    for headers in ({}, {"Authorization": "Basic dG9rLWFsaWNl"}, {"Authorization": "Bearer"}):
        refused = httpx.get(url, headers=headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["errors"][0] == {
            "domain": "global",
            "reason": "authError",
            "message": "Invalid Credentials",
            "location": "Authorization",
            "locationType": "header",
        }
    err = error_of(running.service("tok-nobody").events().list(calendarId="primary"))
    assert err.resp.status == 401
    assert detail(err)["reason"] == "authError"

    alice = running.service("tok-alice")
    assert alice.events().list(calendarId="primary").execute()["items"] == []
    tokens.revoked.add("tok-alice")
    assert error_of(alice.events().list(calendarId="primary")).resp.status == 401


def test_without_auth_nothing_is_checked_and_primary_is_the_default_owners(calendar: Any) -> None:
    calendar.events().insert(calendarId=ALICE, body=event_body("anyone may write")).execute()
    share(calendar, ALICE, BOB, "reader")
    assert [rule["id"] for rule in calendar.acl().list(calendarId=ALICE).execute()["items"]] == [
        f"user:{ALICE}",
        f"user:{BOB}",
    ]
    assert calendar.calendarList().list().execute()["items"] == [], "the default owner owns no calendar yet"


def test_a_token_without_a_write_scope_may_read_but_not_write(running: RunningCalendar, tokens: UserTokens) -> None:
    tokens.scope("tok-alice", READONLY)
    alice = running.service("tok-alice")
    assert alice.events().list(calendarId="primary").execute()["items"] == []
    err = error_of(alice.events().insert(calendarId="primary", body=event_body("x")))
    assert err.resp.status == 403
    assert detail(err)["reason"] == "insufficientPermissions"


# -- ACLs -------------------------------------------------------------------------------------------


def test_the_owner_inserts_lists_gets_and_deletes_acl_rules(running: RunningCalendar) -> None:
    alice = running.service("tok-alice")
    rule = share(alice, "primary", BOB, "reader")
    assert rule["kind"] == "calendar#aclRule"
    assert rule["id"] == f"user:{BOB}"
    assert rule["scope"] == {"type": "user", "value": BOB}
    assert rule["role"] == "reader"
    assert rule["etag"].startswith('"')

    listed = alice.acl().list(calendarId=ALICE).execute()
    assert listed["kind"] == "calendar#acl"
    assert [(item["id"], item["role"]) for item in listed["items"]] == [
        (f"user:{ALICE}", "owner"),
        (f"user:{BOB}", "reader"),
    ]
    assert alice.acl().get(calendarId=ALICE, ruleId=f"user:{BOB}").execute() == rule

    upgraded = share(alice, ALICE, BOB, "writer")
    assert upgraded["role"] == "writer", "inserting an existing scope's rule changes its role"
    assert upgraded["etag"] != rule["etag"]

    alice.acl().delete(calendarId=ALICE, ruleId=f"user:{BOB}").execute()
    assert error_of(alice.acl().get(calendarId=ALICE, ruleId=f"user:{BOB}")).resp.status == 404
    assert error_of(running.service("tok-bob").events().list(calendarId=ALICE)).resp.status == 404


def test_acl_bodies_google_would_take_but_the_sandbox_cannot_are_400s(running: RunningCalendar) -> None:
    acl = running.service("tok-alice").acl()
    for body in (
        {"role": "reader", "scope": {"type": "domain", "value": "example.com"}},
        {"role": "reader", "scope": {"type": "default"}},
        {"role": "reader", "scope": {"type": "user", "value": "not an email"}},
        {"role": "boss", "scope": {"type": "user", "value": BOB}},
        {"scope": {"type": "user", "value": BOB}},
    ):
        assert error_of(acl.insert(calendarId=ALICE, body=body)).resp.status == 400
    err = error_of(acl.delete(calendarId=ALICE, ruleId=f"user:{ALICE}"))
    assert (err.resp.status, detail(err)["reason"]) == (403, "cannotChangeOwnerAcl")


def test_only_an_owner_manages_the_acl_and_writers_may_read_it(running: RunningCalendar) -> None:
    alice, bob, carol = (running.service(f"tok-{name}") for name in ("alice", "bob", "carol"))
    share(alice, ALICE, BOB, "reader")
    share(alice, ALICE, CAROL, "writer")

    err = error_of(bob.acl().list(calendarId=ALICE))
    assert (err.resp.status, detail(err)["reason"]) == (403, "requiredAccessLevel")
    assert detail(err)["message"] == "You need to have writer access to this calendar."
    assert len(carol.acl().list(calendarId=ALICE).execute()["items"]) == 3, "a writer reads the ACL"
    err = error_of(
        carol.acl().insert(calendarId=ALICE, body={"role": "owner", "scope": {"type": "user", "value": CAROL}})
    )
    assert detail(err)["message"] == "You need to have owner access to this calendar."

    share(alice, ALICE, CAROL, "owner")
    share(carol, ALICE, "dave@example.com", "reader")  # an ACL owner manages it too
    err = error_of(carol.acl().delete(calendarId=ALICE, ruleId=f"user:{CAROL}"))
    assert (err.resp.status, detail(err)["reason"]) == (403, "cannotChangeOwnAcl")


# -- what each role may do with events --------------------------------------------------------------


def test_a_reader_can_list_and_get_but_not_insert(running: RunningCalendar) -> None:
    alice, bob = running.service("tok-alice"), running.service("tok-bob")
    event = alice.events().insert(calendarId="primary", body=event_body("alice's")).execute()
    share(alice, ALICE, BOB, "reader")

    assert [item["summary"] for item in bob.events().list(calendarId=ALICE).execute()["items"]] == ["alice's"]
    assert bob.events().get(calendarId=ALICE, eventId=event["id"]).execute()["id"] == event["id"]
    for call in (
        bob.events().insert(calendarId=ALICE, body=event_body("bob's")),
        bob.events().patch(calendarId=ALICE, eventId=event["id"], body={"summary": "bob was here"}),
        bob.events().delete(calendarId=ALICE, eventId=event["id"]),
    ):
        err = error_of(call)
        assert err.resp.status == 403
        assert detail(err) == {
            "domain": "calendar",
            "reason": "requiredAccessLevel",
            "message": "You need to have writer access to this calendar.",
        }
    assert [item["summary"] for item in alice.events().list(calendarId="primary").execute()["items"]] == ["alice's"]

    share(alice, ALICE, BOB, "writer")
    bob.events().patch(calendarId=ALICE, eventId=event["id"], body={"summary": "bob was here"}).execute()
    assert alice.events().get(calendarId="primary", eventId=event["id"]).execute()["summary"] == "bob was here"


def test_a_stranger_gets_404_on_reads_and_403_on_writes(running: RunningCalendar, webhook: Any) -> None:
    alice, carol = running.service("tok-alice"), running.service("tok-carol")
    event = alice.events().insert(calendarId="primary", body=event_body("private")).execute()
    for call in (
        carol.events().list(calendarId=ALICE),
        carol.events().get(calendarId=ALICE, eventId=event["id"]),
        carol.events().instances(calendarId=ALICE, eventId=event["id"]),
        carol.events().watch(calendarId=ALICE, body={"id": "ch", "type": "web_hook", "address": webhook.url}),
        carol.acl().list(calendarId=ALICE),
        carol.calendarList().get(calendarId=ALICE),
    ):
        err = error_of(call)
        assert (err.resp.status, detail(err)["reason"]) == (404, "notFound")
    err = error_of(carol.events().insert(calendarId=ALICE, body=event_body("carol's")))
    assert (err.resp.status, detail(err)["reason"]) == (403, "requiredAccessLevel")
    err = error_of(carol.events().insert(calendarId="nobody@example.com", body=event_body("x")))
    assert err.resp.status == 404, "no calendar comes into being for someone else"

    share(alice, ALICE, CAROL, "freeBusyReader")
    err = error_of(carol.events().list(calendarId=ALICE))
    assert (err.resp.status, detail(err)["message"]) == (403, "You need to have reader access to this calendar.")


def test_static_tokens_act_for_their_user_with_the_same_checks() -> None:
    with served(build_sandbox(auth_tokens={"a": ALICE, "b": BOB})) as running:
        alice, bob = running.service("a"), running.service("b")
        alice.events().insert(calendarId="primary", body=event_body("mine")).execute()  # created on first use
        assert error_of(bob.events().list(calendarId=ALICE)).resp.status == 404
        share(alice, ALICE, BOB, "reader")
        assert len(bob.events().list(calendarId=ALICE).execute()["items"]) == 1


# -- the calendar list ------------------------------------------------------------------------------


def test_the_calendar_list_shows_own_and_shared_calendars_with_their_access_role(running: RunningCalendar) -> None:
    alice, bob = running.service("tok-alice"), running.service("tok-bob")
    share(alice, ALICE, BOB, "reader")
    share(running.service("tok-carol"), CAROL, BOB, "writer")

    items = bob.calendarList().list().execute()["items"]
    assert [(item["id"], item["accessRole"], item.get("primary", False)) for item in items] == [
        (BOB, "owner", True),
        (ALICE, "reader", False),
        (CAROL, "writer", False),
    ]
    assert all(item["kind"] == "calendar#calendarListEntry" and item["summary"] for item in items)
    writable = bob.calendarList().list(minAccessRole="writer").execute()["items"]
    assert [item["id"] for item in writable] == [BOB, CAROL]

    assert bob.calendarList().get(calendarId=ALICE).execute()["accessRole"] == "reader"
    assert bob.calendarList().get(calendarId="primary").execute()["id"] == BOB
    alice.acl().delete(calendarId=ALICE, ruleId=f"user:{BOB}").execute()
    assert error_of(bob.calendarList().get(calendarId=ALICE)).resp.status == 404


# -- journal ----------------------------------------------------------------------------------------


def test_the_journal_names_the_principal_and_never_the_token(running: RunningCalendar) -> None:
    running.service("tok-alice").events().list(calendarId="primary").execute()
    httpx.get(f"{running.url}/calendar/v3/calendars/primary/events", headers={"Authorization": "Bearer tok-secret"})
    entries = running.journal()
    assert [(entry["status"], entry["principal"]) for entry in entries] == [
        (200, f"user:{ALICE}"),
        (401, None),
    ]
    dumped = json.dumps(entries)
    assert "tok-alice" not in dumped
    assert "tok-secret" not in dumped


# -- persistence ------------------------------------------------------------------------------------


def test_users_and_acls_survive_a_restart_with_the_same_db(tmp_path: Path, tokens: UserTokens) -> None:
    db = tmp_path / "calendar.sqlite"
    with served(build_sandbox(db=db, require_auth=True, authenticator=tokens)) as running:
        running.admin("POST", "/_sandbox/users", {"email": ALICE, "name": "Alice"})
        alice = running.service("tok-alice")
        alice.events().insert(calendarId="primary", body=event_body("kept")).execute()
        share(alice, ALICE, BOB, "reader")
        share(alice, ALICE, CAROL, "writer")
        alice.acl().delete(calendarId=ALICE, ruleId=f"user:{CAROL}").execute()
    with served(build_sandbox(db=db, require_auth=True, authenticator=tokens)) as running:
        assert running.admin("GET", "/_sandbox/users") == [{"email": ALICE, "name": "Alice", "calendarId": ALICE}]
        bob = running.service("tok-bob")
        assert [item["summary"] for item in bob.events().list(calendarId=ALICE).execute()["items"]] == ["kept"]
        assert [(item["id"], item["accessRole"]) for item in bob.calendarList().list().execute()["items"]] == [
            (ALICE, "reader")
        ]
        assert error_of(running.service("tok-carol").events().list(calendarId=ALICE)).resp.status == 404
        running.admin("POST", "/_sandbox/reset")
    assert build_sandbox(db=db).model.access.users == {}, "a reset forgets users too"


def test_a_db_from_before_users_and_acls_still_loads(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as old:
        old.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE calendars (id TEXT PRIMARY KEY, owner TEXT NOT NULL, seq INTEGER NOT NULL,"
            " epoch INTEGER NOT NULL, last_updated_ms INTEGER NOT NULL);"
            "CREATE TABLE events (calendar_id TEXT NOT NULL, event_id TEXT NOT NULL, seq INTEGER NOT NULL,"
            " created_seq INTEGER NOT NULL, resource TEXT NOT NULL, PRIMARY KEY (calendar_id, event_id));"
            "CREATE TABLE channels (id TEXT PRIMARY KEY, calendar_id TEXT NOT NULL, resource_id TEXT NOT NULL,"
            " resource_uri TEXT NOT NULL, address TEXT NOT NULL, token TEXT, expiration_ms INTEGER NOT NULL,"
            " state TEXT NOT NULL, next_number INTEGER NOT NULL);"
        )
        old.execute("INSERT INTO calendars VALUES (?, ?, 0, 0, 0)", (ALICE, ALICE))
    old.close()
    sandbox = build_sandbox(db=db, auth_tokens={"a": ALICE})
    assert sandbox.model.role(ALICE, ALICE) is not None
    sandbox.model.grant(ALICE, BOB, Role.READER)
    assert [email for email, _ in build_sandbox(db=db).model.acl(ALICE)] == [ALICE, BOB]


# -- the command ------------------------------------------------------------------------------------


def test_the_cli_require_auth_option_refuses_calls_without_a_token(tmp_path: Path) -> None:
    port = free_port()
    process = start_confsync(
        *("sandbox", "calendar", "--port", str(port), "--require-auth", "--auth-token", f"tok={ALICE}"),
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        stdout=None,
    )
    try:
        url = f"http://127.0.0.1:{port}/calendar/v3/calendars/primary/events"
        for _ in range(200):
            try:
                refused = httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert refused.status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer tok"}, timeout=2).status_code == 404, (
            "authenticated: alice's calendar does not exist until she writes to it"
        )
    finally:
        process.terminate()
        process.communicate(timeout=20)
