"""Security-review regressions on the Calendar sandbox, through google-api-python-client and
httpx as a client sees it: one organizer cannot reach another's copies, an attendee writes only
a bounded, valid answer, only a channel's creator stops it, the journal keeps no query token,
malformed attendee writes and clock moves are 400s (never 500s)."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from googleapiclient.errors import HttpError
from tests_support import RunningCalendar, event_body
from tests_support.fixtures import serve_calendar

from sandbox.calendar.server import build_sandbox
from sandbox.clock import Clock

ALICE, BOB, CAROL, MALLORY = "alice@example.com", "bob@example.com", "carol@example.com", "mallory@example.com"
TOKENS = {f"tok-{email.partition('@')[0]}": email for email in (ALICE, BOB, CAROL, MALLORY)}
WEBHOOK = "http://127.0.0.1:9/hook"  # never delivered to in these tests: nothing listens


@pytest.fixture
def running() -> Iterator[RunningCalendar]:
    """A sandbox that requires auth (static tokens ``tok-<name>``), with four users."""
    for running in serve_calendar(build_sandbox(auth_tokens=TOKENS)):
        for email in TOKENS.values():
            running.admin("POST", "/_sandbox/users", {"email": email})
        yield running


def failure(call: Any) -> tuple[int, str]:
    with pytest.raises(HttpError) as caught:
        call.execute()
    details: list[dict[str, Any]] = caught.value.error_details  # type: ignore[assignment]
    return caught.value.resp.status, str(details[0]["reason"])


def invite(service: Any, *guests: str, **extra: Any) -> dict[str, Any]:
    body = {**event_body("carol's meeting"), "attendees": [{"email": email} for email in guests], **extra}
    event: dict[str, Any] = service.events().insert(calendarId="primary", body=body).execute()
    return event


# -- 1. one organizer's event never overwrites or cancels a copy of another's -------------------


def test_another_organizer_cannot_overwrite_or_cancel_an_attendees_copy(running: RunningCalendar) -> None:
    carol, mallory, alice = (running.service(f"tok-{name}") for name in ("carol", "mallory", "alice"))
    event = invite(carol, ALICE, BOB)

    forged = {**event_body("PHISH"), "id": event["id"], "attendees": [{"email": ALICE}]}
    mallory.events().insert(calendarId="primary", body=forged).execute()  # her own calendar: allowed
    mine = alice.events().get(calendarId="primary", eventId=event["id"]).execute()
    assert (mine["summary"], mine["organizer"]) == ("carol's meeting", {"email": CAROL})

    mallory.events().patch(calendarId="primary", eventId=event["id"], body={"attendees": []}).execute()
    mallory.events().delete(calendarId="primary", eventId=event["id"]).execute()
    mine = alice.events().get(calendarId="primary", eventId=event["id"]).execute()
    assert (mine["status"], mine["summary"], mine["organizer"]) == ("confirmed", "carol's meeting", {"email": CAROL})

    answer = {"attendees": [{"email": ALICE, "responseStatus": "accepted"}, {"email": BOB}]}
    alice.events().patch(calendarId="primary", eventId=event["id"], body=answer).execute()
    carols = carol.events().get(calendarId="primary", eventId=event["id"]).execute()
    assert {a["email"]: a.get("responseStatus") for a in carols["attendees"]}[ALICE] == "accepted"


def test_a_cancelled_copy_of_another_organizers_event_is_left_alone(running: RunningCalendar) -> None:
    carol, mallory, alice = (running.service(f"tok-{name}") for name in ("carol", "mallory", "alice"))
    event = invite(carol, ALICE)
    alice.events().delete(calendarId="primary", eventId=event["id"]).execute()  # alice declines

    forged = {**event_body("PHISH"), "id": event["id"], "attendees": [{"email": ALICE}]}
    mallory.events().insert(calendarId="primary", body=forged).execute()

    mine = alice.events().get(calendarId="primary", eventId=event["id"]).execute()
    assert (mine["status"], mine["organizer"]) == ("cancelled", {"email": CAROL})


def test_an_exception_is_not_copied_under_another_organizers_series(
    calendar_sandbox: RunningCalendar, calendar: Any
) -> None:
    for email in (ALICE, CAROL, MALLORY):
        calendar_sandbox.admin("POST", "/_sandbox/users", {"email": email})
    series = {**event_body("weekly"), "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"], "attendees": [{"email": ALICE}]}
    first = calendar.events().insert(calendarId=MALLORY, body=series).execute()
    calendar.events().insert(calendarId=CAROL, body={**series, "id": first["id"]}).execute()
    instance = calendar.events().instances(calendarId=CAROL, eventId=first["id"]).execute()["items"][1]

    calendar.events().patch(calendarId=CAROL, eventId=instance["id"], body={"summary": "carol's"}).execute()

    items = calendar.events().list(calendarId=ALICE, singleEvents=True).execute()["items"]
    assert {(item["summary"], item["organizer"]["email"]) for item in items} == {("weekly", MALLORY)}


def test_move_refuses_a_destination_holding_a_copy_of_another_organizers_event(
    calendar_sandbox: RunningCalendar, calendar: Any
) -> None:
    for email in (ALICE, CAROL, MALLORY):
        calendar_sandbox.admin("POST", "/_sandbox/users", {"email": email})
    body = {**event_body("carol's"), "attendees": [{"email": ALICE}]}
    event = calendar.events().insert(calendarId=CAROL, body=body).execute()
    forged = {**event_body("PHISH"), "id": event["id"]}
    calendar.events().insert(calendarId=MALLORY, body=forged).execute()

    assert failure(calendar.events().move(calendarId=MALLORY, eventId=event["id"], destination=ALICE)) == (
        409,
        "duplicate",
    )
    mine = calendar.events().get(calendarId=ALICE, eventId=event["id"]).execute()
    assert (mine["summary"], mine["organizer"]) == ("carol's", {"email": CAROL})
    assert calendar.events().get(calendarId=MALLORY, eventId=event["id"]).execute()["status"] == "confirmed"


def test_copies_follow_a_moved_event_to_its_new_organizer(calendar_sandbox: RunningCalendar, calendar: Any) -> None:
    for email in (ALICE, BOB, CAROL):
        calendar_sandbox.admin("POST", "/_sandbox/users", {"email": email})
    event = (
        calendar.events().insert(calendarId=ALICE, body={**event_body("m"), "attendees": [{"email": BOB}]}).execute()
    )
    calendar.events().move(calendarId=ALICE, eventId=event["id"], destination=CAROL).execute()

    calendar.events().patch(calendarId=CAROL, eventId=event["id"], body={"summary": "moved"}).execute()
    bobs = calendar.events().get(calendarId=BOB, eventId=event["id"]).execute()
    assert (bobs["summary"], bobs["organizer"]) == ("moved", {"email": CAROL})
    calendar.events().patch(calendarId=CAROL, eventId=event["id"], body={"attendees": []}).execute()
    assert calendar.events().get(calendarId=BOB, eventId=event["id"]).execute()["status"] == "cancelled"


# -- 2. an attendee's answer is one of Google's, and bounded ----------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        {"responseStatus": "x" * 100},
        {"responseStatus": 5},
        {"comment": "c" * 9000},
        {"comment": 5},
        {"additionalGuests": -1},
        {"additionalGuests": 10**9},
        {"additionalGuests": "2"},
        {"additionalGuests": True},
    ],
    ids=["status-text", "status-int", "comment-long", "comment-int", "guests-neg", "guests-huge", "guests-str", "bool"],
)
def test_an_attendee_answer_outside_googles_values_is_a_400(running: RunningCalendar, entry: dict[str, Any]) -> None:
    carol, bob = running.service("tok-carol"), running.service("tok-bob")
    event = invite(carol, BOB)

    body = {"attendees": [{"email": BOB, **entry}]}
    assert failure(bob.events().patch(calendarId="primary", eventId=event["id"], body=body)) == (400, "invalid")
    carols = carol.events().get(calendarId="primary", eventId=event["id"]).execute()
    assert carols["attendees"] == [{"email": BOB}]


def test_an_attendee_answer_with_a_comment_reaches_the_organizer(running: RunningCalendar) -> None:
    carol, bob = running.service("tok-carol"), running.service("tok-bob")
    event = invite(carol, BOB)

    answer = {"email": BOB, "responseStatus": "tentative", "comment": "late", "additionalGuests": 1}
    bob.events().patch(calendarId="primary", eventId=event["id"], body={"attendees": [answer]}).execute()

    carols = carol.events().get(calendarId="primary", eventId=event["id"]).execute()
    assert carols["attendees"] == [answer]


# -- 3. only a channel's creator stops it ---------------------------------------------------------------


def test_only_the_principal_who_opened_a_channel_may_stop_it(running: RunningCalendar) -> None:
    alice, bob = running.service("tok-alice"), running.service("tok-bob")
    body = {"id": "alice-channel", "type": "web_hook", "address": WEBHOOK}
    channel = alice.events().watch(calendarId="primary", body=body).execute()
    stop = {"id": channel["id"], "resourceId": channel["resourceId"]}

    assert failure(bob.channels().stop(body=stop)) == (404, "notFound")
    assert [view["state"] for view in running.admin("GET", "/_sandbox/channels")] == ["live"]
    alice.channels().stop(body=stop).execute()
    assert [view["state"] for view in running.admin("GET", "/_sandbox/channels")] == ["stopped"]


def test_a_channels_creator_survives_a_restart_and_old_rows_still_load(tmp_path: Path) -> None:
    db = tmp_path / "calendar.sqlite"
    for running in serve_calendar(build_sandbox(db=db, auth_tokens=TOKENS)):
        running.admin("POST", "/_sandbox/users", {"email": ALICE})
        body = {"id": "kept", "type": "web_hook", "address": WEBHOOK}
        channel = running.service("tok-alice").events().watch(calendarId="primary", body=body).execute()
    stop = {"id": channel["id"], "resourceId": channel["resourceId"]}
    for running in serve_calendar(build_sandbox(db=db, auth_tokens=TOKENS)):
        assert failure(running.service("tok-bob").channels().stop(body=stop)) == (404, "notFound")
        running.service("tok-alice").channels().stop(body=stop).execute()

    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as conn:
        conn.execute(
            "CREATE TABLE channels (id TEXT PRIMARY KEY, calendar_id TEXT NOT NULL, resource_id TEXT NOT NULL,"
            " resource_uri TEXT NOT NULL, address TEXT NOT NULL, token TEXT, expiration_ms INTEGER NOT NULL,"
            " state TEXT NOT NULL, next_number INTEGER NOT NULL)"
        )
        conn.execute(
            "INSERT INTO channels VALUES ('old', ?, 'rid', 'uri', ?, NULL, 9999999999999, 'live', 2)", (ALICE, WEBHOOK)
        )
    conn.close()
    for running in serve_calendar(build_sandbox(db=old)):
        assert [view["id"] for view in running.admin("GET", "/_sandbox/channels")] == ["old"]
        running.service().channels().stop(body={"id": "old", "resourceId": "rid"}).execute()


# -- 4. no token in the journal -----------------------------------------------------------------------------


def test_the_journal_redacts_tokens_sent_in_the_query(running: RunningCalendar) -> None:
    secrets = {
        "access_token": "ya29.SECRET-ACCESS",
        "key": "AIzaSECRET-KEY",
        "token": "SECRET-TOKEN",
        "client_secret": "SECRET-CLIENT",
        "code": "SECRET-CODE",
        "assertion": "SECRET-ASSERTION",
        "refresh_token": "SECRET-REFRESH",
    }
    url = f"{running.url}/calendar/v3/calendars/primary/events"
    answered = httpx.get(url, params={**secrets, "maxResults": "5"}, headers={"Authorization": "Bearer tok-alice"})
    assert answered.status_code == 200
    refused = httpx.get(url, params={"access_token": "tok-alice"})
    assert refused.status_code == 401, "a token in the query is ignored: only the Authorization header counts"

    entries = running.journal()
    dumped = json.dumps(entries)
    assert not any(secret in dumped for secret in [*secrets.values(), "tok-alice"])
    assert entries[0]["query"] == {**dict.fromkeys(secrets, "[redacted]"), "maxResults": "5"}
    assert entries[1]["query"] == {"access_token": "[redacted]"}


# -- 5. malformed attendee writes are 400s --------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"attendees": ["x"]},
        {"attendees": [None]},
        {"attendees": {"a": 1}},
        {"attendees": 5},
        {"extendedProperties": [1]},
        {"extendedProperties": "x"},
        {"reminders": "x"},
    ],
    ids=["attendee-str", "attendee-null", "attendees-object", "attendees-int", "props-list", "props-str", "reminders"],
)
@pytest.mark.parametrize("method", ["patch", "update"])
def test_a_malformed_write_to_a_copy_is_a_400(running: RunningCalendar, change: dict[str, Any], method: str) -> None:
    carol, bob = running.service("tok-carol"), running.service("tok-bob")
    event = invite(carol, BOB)
    body = change
    if method == "update":
        body = {**bob.events().get(calendarId="primary", eventId=event["id"]).execute(), **change}

    write = getattr(bob.events(), method)
    status, _ = failure(write(calendarId="primary", eventId=event["id"], body=body))
    assert status == 400


# -- 6. the clock takes only a finite, bounded, representable advance ------------------------------


@pytest.mark.parametrize(
    "advance", [b"NaN", b"Infinity", b"1e20", b"1e308", b"3e11", b"-5", b"315576001", b"1e400", b'"60"', b"true"]
)
def test_a_clock_advance_out_of_range_is_a_400_and_the_sandbox_keeps_working(
    calendar_sandbox: RunningCalendar, calendar: Any, advance: bytes
) -> None:
    answered = httpx.post(
        f"{calendar_sandbox.url}/_sandbox/clock",
        content=b'{"advance_s": ' + advance + b"}",
        headers={"content-type": "application/json"},
    )
    assert answered.status_code == 400
    assert answered.json()["error"]["errors"][0]["reason"] == "invalid"
    assert calendar.events().insert(calendarId="primary", body=event_body("still here")).execute()["id"]
    assert calendar_sandbox.admin("POST", "/_sandbox/clock", {"advance_s": 60})["now"]


def test_the_clock_refuses_bad_advances_and_a_time_past_what_it_can_show() -> None:
    clock = Clock()
    for bad in (math.nan, math.inf, -1.0, 1e20, 11 * 366 * 86400.0):
        with pytest.raises(ValueError, match="clock"):
            clock.advance(bad)
    for _ in range(900):  # ten years at a time, the clock stops short of what a datetime can hold
        try:
            clock.advance(10 * 365 * 86400)
        except ValueError:
            break
    else:
        pytest.fail("the clock kept moving past year 9000")
    assert clock.now().year < 9999
    clock.advance(0)
