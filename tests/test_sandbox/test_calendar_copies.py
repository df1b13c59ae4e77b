"""Attendees' copies of an event and events.move on the Calendar sandbox, driven through
google-api-python-client: a sandbox user invited to an event finds it in their own calendar,
follows the organizer's changes (incremental sync, watch notifications), and may change only
their own answer; a moved event leaves a tombstone behind and keeps its id and conference."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from tests_support import RunningCalendar, Webhook, event_body, list_all, sync_all
from tests_support.fixtures import serve_calendar

from sandbox.calendar.access import Role
from sandbox.calendar.server import build_sandbox

ALICE, BOB, CAROL = "alice@sandbox.test", "bob@sandbox.test", "carol@sandbox.test"
OUTSIDER = "someone@elsewhere.test"


@pytest.fixture
def users(calendar_sandbox: RunningCalendar) -> RunningCalendar:
    for email in (ALICE, BOB, CAROL):
        calendar_sandbox.admin("POST", "/_sandbox/users", {"email": email})
    return calendar_sandbox


def invite(calendar: Any, *guests: str, summary: str = "planning", **extra: Any) -> dict[str, Any]:
    body = {**event_body(summary), "attendees": [{"email": email} for email in guests], **extra}
    result: dict[str, Any] = calendar.events().insert(calendarId=ALICE, body=body, conferenceDataVersion=1).execute()
    return result


def meet() -> dict[str, Any]:
    return {"createRequest": {"requestId": str(uuid.uuid4()), "conferenceSolutionKey": {"type": "hangoutsMeet"}}}


def watch(calendar: Any, calendar_id: str, webhook: Webhook) -> str:
    channel_id = str(uuid.uuid4())
    body = {"id": channel_id, "type": "web_hook", "address": webhook.url}
    calendar.events().watch(calendarId=calendar_id, body=body).execute()
    return channel_id


def exists_on(channel_id: str) -> Any:
    return lambda got: any(
        item["x-goog-channel-id"] == channel_id and item["x-goog-resource-state"] == "exists" for item in got
    )


def error_reason(err: HttpError) -> str:
    return str(err.error_details[0]["reason"])  # type: ignore[index]


def test_an_invited_user_finds_a_copy_with_the_same_id_and_marked_self(users: RunningCalendar, calendar: Any) -> None:
    event = invite(calendar, BOB, OUTSIDER, conferenceData=meet())

    mine = calendar.events().get(calendarId=BOB, eventId=event["id"]).execute()

    assert (mine["id"], mine["iCalUID"], mine["summary"]) == (event["id"], event["iCalUID"], "planning")
    assert (mine["start"], mine["end"]) == (event["start"], event["end"])
    assert mine["conferenceData"] == event["conferenceData"]
    assert mine["organizer"] == {"email": ALICE}
    assert [(a["email"], a.get("self")) for a in mine["attendees"]] == [(BOB, True), (OUTSIDER, None)]
    assert event["organizer"] == {"email": ALICE, "self": True}
    assert all("self" not in a for a in event["attendees"])
    assert [item["id"] for item in list_all(calendar, BOB)[0]] == [event["id"]]
    assert list_all(calendar, CAROL)[0] == []  # not invited, no copy


def test_the_organizers_change_reaches_the_copy_its_sync_and_its_watchers(
    users: RunningCalendar, calendar: Any, webhook: Webhook
) -> None:
    event = invite(calendar, BOB)
    before = calendar.events().get(calendarId=BOB, eventId=event["id"]).execute()
    _, token = sync_all(calendar, BOB)
    channel = watch(calendar, BOB, webhook)

    calendar.events().patch(calendarId=ALICE, eventId=event["id"], body={"summary": "moved to Friday"}).execute()

    changed, _ = sync_all(calendar, BOB, token)
    assert [(item["id"], item["summary"]) for item in changed] == [(event["id"], "moved to Friday")]
    assert changed[0]["etag"] != before["etag"]
    assert changed[0]["updated"] > before["updated"]
    webhook.wait_for(exists_on(channel))


def test_a_removed_attendee_sees_the_copy_cancelled(users: RunningCalendar, calendar: Any) -> None:
    event = invite(calendar, BOB, CAROL)
    _, token = sync_all(calendar, BOB)

    calendar.events().patch(calendarId=ALICE, eventId=event["id"], body={"attendees": [{"email": CAROL}]}).execute()

    changed, _ = sync_all(calendar, BOB, token)
    assert [(item["id"], item["status"]) for item in changed] == [(event["id"], "cancelled")]
    assert list_all(calendar, BOB)[0] == []
    assert calendar.events().get(calendarId=CAROL, eventId=event["id"]).execute()["status"] == "confirmed"


def test_a_cancelled_event_cancels_every_copy(users: RunningCalendar, calendar: Any, webhook: Webhook) -> None:
    event = invite(calendar, BOB, CAROL)
    _, token = sync_all(calendar, BOB)
    channel = watch(calendar, CAROL, webhook)

    calendar.events().delete(calendarId=ALICE, eventId=event["id"]).execute()

    changed, _ = sync_all(calendar, BOB, token)
    assert [(item["id"], item["status"]) for item in changed] == [(event["id"], "cancelled")]
    assert calendar.events().get(calendarId=CAROL, eventId=event["id"]).execute()["status"] == "cancelled"
    webhook.wait_for(exists_on(channel))


def test_an_attendee_deleting_their_copy_cancels_only_theirs_and_declines(
    users: RunningCalendar, calendar: Any
) -> None:
    event = invite(calendar, BOB, CAROL)

    calendar.events().delete(calendarId=BOB, eventId=event["id"]).execute()

    assert calendar.events().get(calendarId=BOB, eventId=event["id"]).execute()["status"] == "cancelled"
    organizers = calendar.events().get(calendarId=ALICE, eventId=event["id"]).execute()
    assert organizers["status"] == "confirmed"
    assert {a["email"]: a.get("responseStatus") for a in organizers["attendees"]}[BOB] == "declined"
    carols = calendar.events().get(calendarId=CAROL, eventId=event["id"]).execute()
    assert carols["status"] == "confirmed"
    assert {a["email"]: a.get("responseStatus") for a in carols["attendees"]}[BOB] == "declined"

    calendar.events().patch(calendarId=ALICE, eventId=event["id"], body={"summary": "still on"}).execute()
    assert calendar.events().get(calendarId=BOB, eventId=event["id"]).execute()["status"] == "cancelled"


@pytest.mark.parametrize(
    "change",
    [
        {"start": {"dateTime": "2026-12-01T12:00:00Z"}, "end": {"dateTime": "2026-12-01T13:00:00Z"}},
        {"summary": "my own title"},
        {"attendees": [{"email": BOB}, {"email": CAROL}]},
    ],
    ids=["time", "title", "guests"],
)
def test_an_attendee_cannot_change_the_shared_fields_of_their_copy(
    users: RunningCalendar, calendar: Any, change: dict[str, Any]
) -> None:
    event = invite(calendar, BOB)

    with pytest.raises(HttpError) as caught:
        calendar.events().patch(calendarId=BOB, eventId=event["id"], body=change).execute()

    assert caught.value.resp.status == 403
    assert error_reason(caught.value) == "forbiddenForNonOrganizer"
    assert calendar.events().get(calendarId=BOB, eventId=event["id"]).execute()["summary"] == "planning"


def test_an_attendee_may_answer_and_set_their_reminders(users: RunningCalendar, calendar: Any) -> None:
    event = invite(calendar, BOB, CAROL)
    reminders = {"useDefault": False, "overrides": [{"method": "popup", "minutes": 5}]}

    mine = (
        calendar.events()
        .patch(
            calendarId=BOB,
            eventId=event["id"],
            body={
                "reminders": reminders,
                "attendees": [{"email": BOB, "responseStatus": "accepted"}, {"email": CAROL}],
            },
        )
        .execute()
    )

    assert mine["reminders"] == reminders
    organizers = calendar.events().get(calendarId=ALICE, eventId=event["id"]).execute()
    assert {a["email"]: a.get("responseStatus") for a in organizers["attendees"]}[BOB] == "accepted"
    assert organizers["reminders"] == {"useDefault": True}
    calendar.events().patch(calendarId=ALICE, eventId=event["id"], body={"summary": "renamed"}).execute()
    assert calendar.events().get(calendarId=BOB, eventId=event["id"]).execute()["reminders"] == reminders


def test_a_series_copy_follows_the_series_and_its_exceptions(users: RunningCalendar, calendar: Any) -> None:
    series = invite(calendar, BOB, recurrence=["RRULE:FREQ=WEEKLY;COUNT=3"])
    instances = calendar.events().instances(calendarId=ALICE, eventId=series["id"]).execute()["items"]
    calendar.events().patch(calendarId=ALICE, eventId=instances[1]["id"], body={"summary": "special"}).execute()

    mine = list_all(calendar, BOB, singleEvents=True)[0]
    assert [item["summary"] for item in mine] == ["planning", "special", "planning"]
    assert {item["recurringEventId"] for item in mine} == {series["id"]}

    calendar.events().delete(calendarId=ALICE, eventId=series["id"]).execute()
    assert list_all(calendar, BOB, singleEvents=True)[0] == []


def test_move_leaves_a_tombstone_and_keeps_id_and_conference(
    users: RunningCalendar, calendar: Any, webhook: Webhook
) -> None:
    event = invite(calendar, BOB, conferenceData=meet())
    _, source_token = sync_all(calendar, ALICE)
    source_channel, destination_channel = watch(calendar, ALICE, webhook), watch(calendar, CAROL, webhook)

    moved = calendar.events().move(calendarId=ALICE, eventId=event["id"], destination=CAROL).execute()

    assert (moved["id"], moved["organizer"]) == (event["id"], {"email": CAROL, "self": True})
    assert moved["conferenceData"] == event["conferenceData"]
    changed, _ = sync_all(calendar, ALICE, source_token)
    assert [(item["id"], item["status"]) for item in changed] == [(event["id"], "cancelled")]
    listed = list_all(calendar, CAROL)[0]
    assert [(item["id"], item["conferenceData"]) for item in listed] == [(event["id"], event["conferenceData"])]
    webhook.wait_for(exists_on(source_channel))
    webhook.wait_for(exists_on(destination_channel))
    bobs = calendar.events().get(calendarId=BOB, eventId=event["id"]).execute()
    assert (bobs["status"], bobs["organizer"]) == ("confirmed", {"email": CAROL})


def test_move_refuses_a_copy_and_an_instance(users: RunningCalendar, calendar: Any) -> None:
    event = invite(calendar, BOB, recurrence=["RRULE:FREQ=DAILY;COUNT=2"])
    instance = calendar.events().instances(calendarId=ALICE, eventId=event["id"]).execute()["items"][0]
    for source, event_id, status in ((BOB, event["id"], 403), (ALICE, instance["id"], 400), (ALICE, "nope0", 404)):
        with pytest.raises(HttpError) as caught:
            calendar.events().move(calendarId=source, eventId=event_id, destination=CAROL).execute()
        assert caught.value.resp.status == status


@pytest.fixture
def authed() -> Iterator[RunningCalendar]:
    yield from serve_calendar(build_sandbox(auth_tokens={"alice-token": ALICE}))


def test_move_needs_writer_access_on_both_calendars(authed: RunningCalendar) -> None:
    for email in (ALICE, CAROL):
        authed.sandbox.model.add_user(email)
    service = build(
        "calendar",
        "v3",
        credentials=Credentials("alice-token"),  # type: ignore[no-untyped-call]
        static_discovery=True,
        client_options={"api_endpoint": authed.api_endpoint},
    )
    try:
        event = service.events().insert(calendarId="primary", body=event_body("mine")).execute()
        with pytest.raises(HttpError) as caught:
            service.events().move(calendarId="primary", eventId=event["id"], destination=CAROL).execute()
        assert (caught.value.resp.status, error_reason(caught.value)) == (403, "requiredAccessLevel")

        authed.sandbox.model.grant(CAROL, ALICE, Role.WRITER)
        moved = service.events().move(calendarId="primary", eventId=event["id"], destination=CAROL).execute()
        assert moved["organizer"]["email"] == CAROL
    finally:
        service.close()


def test_copies_keep_following_the_organizer_after_a_restart(tmp_path: Path) -> None:
    first = build_sandbox(db=tmp_path / "calendar.db")
    for email in (ALICE, BOB):
        first.model.add_user(email)
    body = {**event_body("before restart"), "attendees": [{"email": BOB}]}
    event, _ = first.model.insert(ALICE, body)

    for running in serve_calendar(build_sandbox(db=tmp_path / "calendar.db")):
        service = running.service()
        service.events().patch(calendarId=ALICE, eventId=event["id"], body={"summary": "after restart"}).execute()
        assert service.events().get(calendarId=BOB, eventId=event["id"]).execute()["summary"] == "after restart"
        service.events().patch(calendarId=ALICE, eventId=event["id"], body={"attendees": []}).execute()
        assert service.events().get(calendarId=BOB, eventId=event["id"]).execute()["status"] == "cancelled"
