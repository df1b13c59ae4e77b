"""The Calendar sandbox's partial responses (``fields``), driven through google-api-python-client
as Google documents them: a listing, an instance listing and a get answer only what was asked for,
pages and sync tokens work the same, and a selection that cannot be read is a 400."""

from __future__ import annotations

from typing import Any

import pytest
from googleapiclient.errors import HttpError
from tests_support import RunningCalendar, event_body

from sandbox.calendar.partial import parse_fields, project

CAL = "alice@example.com"
FIELDS = "nextPageToken,nextSyncToken,items(id,start/dateTime,attendees/email,conferenceData(conferenceId))"


def seed(running: RunningCalendar, count: int) -> None:
    events = []
    for n in range(count):
        body = {"id": f"evt{n:04d}", **event_body(f"e{n}", day=n), "description": "long agenda " * 20}
        body["attendees"] = [{"email": f"u{n}@example.com", "displayName": "U"}]
        body["conferenceData"] = {
            "conferenceId": f"cnf_{n}",
            "conferenceSolution": {"key": {"type": "addOn"}, "name": "My Web Conference"},
        }
        events.append(body)
    running.admin("POST", f"/_sandbox/calendars/{CAL}/bulk-insert", {"events": events, "conferenceDataVersion": 1})


def test_a_listing_answers_only_the_fields_asked_for_and_pages_as_before(
    calendar_sandbox: RunningCalendar, calendar: Any
) -> None:
    seed(calendar_sandbox, 5)
    full, masked, page_token = [], [], None
    while True:
        page = calendar.events().list(calendarId=CAL, maxResults=2, fields=FIELDS, pageToken=page_token).execute()
        masked += page["items"]
        assert set(page) <= {"items", "nextPageToken", "nextSyncToken"}
        page_token = page.get("nextPageToken")
        if page_token is None:
            break
    assert page["nextSyncToken"], "the last page still carries the sync token"
    full = calendar.events().list(calendarId=CAL).execute()["items"]
    assert masked == [
        {
            "id": item["id"],
            "start": {"dateTime": item["start"]["dateTime"]},
            "attendees": [{"email": item["attendees"][0]["email"]}],
            "conferenceData": {"conferenceId": item["conferenceData"]["conferenceId"]},
        }
        for item in full
    ]
    again = calendar.events().list(calendarId=CAL, syncToken=page["nextSyncToken"], fields=FIELDS).execute()
    assert again == {"items": [], "nextSyncToken": again["nextSyncToken"]}


def test_a_get_and_an_instance_listing_answer_only_the_fields_asked_for(
    calendar_sandbox: RunningCalendar, calendar: Any
) -> None:
    series = (
        calendar.events()
        .insert(calendarId=CAL, body=event_body("weekly", recurrence=["RRULE:FREQ=WEEKLY;COUNT=2"]))
        .execute()
    )
    got = calendar.events().get(calendarId=CAL, eventId=series["id"], fields="id,summary,recurrence").execute()
    assert got == {"id": series["id"], "summary": "weekly", "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=2"]}
    listed = (
        calendar.events().instances(calendarId=CAL, eventId=series["id"], fields="items/recurringEventId").execute()
    )
    assert listed == {"items": [{"recurringEventId": series["id"]}] * 2}


@pytest.mark.parametrize("fields", ["items(id", "items/", ",id", "items()"])
def test_a_selection_that_cannot_be_read_is_a_400(
    calendar_sandbox: RunningCalendar, calendar: Any, fields: str
) -> None:
    seed(calendar_sandbox, 1)
    with pytest.raises(HttpError) as refused:
        calendar.events().list(calendarId=CAL, fields=fields).execute()
    assert refused.value.resp.status == 400


def test_selections_merge_and_a_star_selects_every_field() -> None:
    selection = parse_fields("a/b,a/c(d),a/c/e,f,*")
    value = {"a": {"b": 1, "c": [{"d": 2, "e": 3, "g": 4}], "h": 5}, "f": 6, "z": {"y": 7}}
    assert project(value, selection) == {"a": {"b": 1, "c": [{"d": 2, "e": 3}]}, "f": 6, "z": {"y": 7}}
    assert project(value, parse_fields("a,a/b")) == {"a": value["a"]}, "the whole field, whatever else was asked"
