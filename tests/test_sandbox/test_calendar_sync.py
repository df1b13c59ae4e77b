"""The Calendar sandbox, driven only through google-api-python-client: paging, full and
incremental sync, sync-token expiry, conferenceData and recurring events behave as Google
documents them."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from googleapiclient.errors import HttpError
from tests_support import RunningCalendar, event_body, list_all, sync_all

CAL = "alice@example.com"


def seed(running: RunningCalendar, count: int, calendar_id: str = CAL) -> list[str]:
    events = [event_body(f"seeded {i}", day=i % 300) for i in range(count)]
    running.admin("POST", f"/_sandbox/calendars/{calendar_id}/bulk-insert", {"events": events})
    return [item["id"] for item in list_all(running.service(), calendar_id, maxResults=2500)[0]]


def insert_series(calendar: Any, rule: str = "RRULE:FREQ=WEEKLY;COUNT=3") -> dict[str, Any]:
    """A recurring event called "weekly" on CAL, repeating by ``rule``."""
    series: dict[str, Any] = (
        calendar.events().insert(calendarId=CAL, body=event_body("weekly", recurrence=[rule])).execute()
    )
    return series


def nth_instance(calendar: Any, series: dict[str, Any], index: int) -> dict[str, Any]:
    """The ``index``-th instance of ``series``."""
    instance: dict[str, Any] = (
        calendar.events().instances(calendarId=CAL, eventId=series["id"]).execute()["items"][index]
    )
    return instance


# -- paging ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [1, 2, 7, 25])
def test_small_pages_return_every_event_exactly_once(calendar_sandbox: RunningCalendar, page_size: int) -> None:
    ids = seed(calendar_sandbox, 25)
    items, pages = list_all(calendar_sandbox.service(), CAL, maxResults=page_size)
    assert [item["id"] for item in items] == ids
    assert len(pages) == -(-25 // page_size)
    for page in pages[:-1]:
        assert len(page["items"]) == page_size
        assert "nextPageToken" in page
        assert "nextSyncToken" not in page
    assert "nextSyncToken" in pages[-1]
    assert "nextPageToken" not in pages[-1]


@pytest.mark.parametrize(("page_size", "expected_pages"), [(None, 11), (1000, 3), (2500, 2), (5000, 2)])
def test_large_pages_default_to_250_and_cap_at_2500(
    calendar_sandbox: RunningCalendar, page_size: int | None, expected_pages: int
) -> None:
    ids = seed(calendar_sandbox, 2600)
    params = {} if page_size is None else {"maxResults": page_size}
    items, pages = list_all(calendar_sandbox.service(), CAL, **params)
    assert sorted(item["id"] for item in items) == sorted(ids)
    assert len(pages) == expected_pages
    assert max(len(page["items"]) for page in pages) == min(page_size or 250, 2500)


def test_a_page_token_from_another_query_is_refused(calendar_sandbox: RunningCalendar) -> None:
    seed(calendar_sandbox, 5)
    service = calendar_sandbox.service()
    token = service.events().list(calendarId=CAL, maxResults=2).execute()["nextPageToken"]
    with pytest.raises(HttpError) as caught:
        service.events().list(calendarId=CAL, maxResults=2, pageToken=token, showDeleted=True).execute()
    assert caught.value.resp.status == 400


# -- full then incremental sync --------------------------------------------------------------------


def test_incremental_sync_returns_exactly_what_changed(calendar_sandbox: RunningCalendar, calendar: Any) -> None:
    events = calendar.events()
    kept = events.insert(calendarId=CAL, body=event_body("kept")).execute()
    renamed = events.insert(calendarId=CAL, body=event_body("before")).execute()
    deleted = events.insert(calendarId=CAL, body=event_body("doomed")).execute()
    series = insert_series(calendar, "RRULE:FREQ=WEEKLY;COUNT=4")
    _, token = sync_all(calendar, CAL)

    added = events.insert(calendarId=CAL, body=event_body("new")).execute()
    events.patch(calendarId=CAL, eventId=renamed["id"], body={"summary": "after"}).execute()
    events.delete(calendarId=CAL, eventId=deleted["id"]).execute()
    instance = nth_instance(calendar, series, 2)
    events.delete(calendarId=CAL, eventId=instance["id"]).execute()

    changed, token = sync_all(calendar, CAL, token)
    by_id = {item["id"]: item for item in changed}
    assert set(by_id) == {added["id"], renamed["id"], deleted["id"], instance["id"]}
    assert kept["id"] not in by_id
    assert by_id[renamed["id"]]["summary"] == "after"
    assert by_id[deleted["id"]]["status"] == "cancelled"
    cancelled_instance = by_id[instance["id"]]
    assert cancelled_instance["status"] == "cancelled"
    assert cancelled_instance["recurringEventId"] == series["id"]
    assert cancelled_instance["originalStartTime"] == instance["originalStartTime"]

    nothing, _ = sync_all(calendar, CAL, token)
    assert nothing == []


def test_a_full_sync_hides_deleted_events_unless_asked(calendar: Any) -> None:
    events = calendar.events()
    gone = events.insert(calendarId=CAL, body=event_body("gone")).execute()
    events.delete(calendarId=CAL, eventId=gone["id"]).execute()
    assert list_all(calendar, CAL)[0] == []
    shown = list_all(calendar, CAL, showDeleted=True)[0]
    assert [(item["id"], item["status"]) for item in shown] == [(gone["id"], "cancelled")]


def test_writes_between_pages_are_never_lost(calendar_sandbox: RunningCalendar) -> None:
    """A client that mirrors the calendar through paged syncs ends equal to the truth."""
    service = calendar_sandbox.service()
    events = service.events()
    rng = random.Random(7)
    ids = seed(calendar_sandbox, 60)
    mirror: dict[str, str] = {}

    def apply(items: list[dict[str, Any]]) -> None:
        for item in items:
            if item["status"] == "cancelled":
                mirror.pop(item["id"], None)
            else:
                mirror[item["id"]] = item["summary"]

    token = None
    for _round in range(4):
        request: dict[str, Any] = {"calendarId": CAL, "maxResults": 7}
        if token:
            request["syncToken"] = token
        page_token = None
        while True:
            page = events.list(**request, **({"pageToken": page_token} if page_token else {})).execute()
            apply(page["items"])
            for _ in range(3):  # the calendar keeps changing while the client pages
                victim = rng.choice(ids)
                action = rng.random()
                if action < 0.5:
                    events.patch(calendarId=CAL, eventId=victim, body={"summary": f"s{rng.random()}"}).execute()
                elif action < 0.8:
                    ids.append(events.insert(calendarId=CAL, body=event_body("late")).execute()["id"])
                elif len(ids) > 10:
                    ids.remove(victim)
                    events.delete(calendarId=CAL, eventId=victim).execute()
            page_token = page.get("nextPageToken")
            if page_token is None:
                token = page["nextSyncToken"]
                break
    apply(sync_all(service, CAL, token)[0])
    truth = {item["id"]: item["summary"] for item in list_all(service, CAL, maxResults=2500)[0]}
    assert mirror == truth


def test_updated_min_lists_recent_changes_including_deletions(calendar: Any) -> None:
    events = calendar.events()
    old = events.insert(calendarId=CAL, body=event_body("old")).execute()
    doomed = events.insert(calendarId=CAL, body=event_body("doomed")).execute()
    since = events.insert(calendarId=CAL, body=event_body("marker")).execute()["updated"]
    events.delete(calendarId=CAL, eventId=doomed["id"]).execute()
    recent = list_all(calendar, CAL, updatedMin=since)[0]
    assert {(item["summary"] if item["status"] != "cancelled" else item["id"]) for item in recent} == {
        "marker",
        doomed["id"],
    }
    assert old["id"] not in {item["id"] for item in recent}


def test_updated_is_strictly_increasing_with_milliseconds(calendar: Any) -> None:
    events = calendar.events()
    stamps = [events.insert(calendarId=CAL, body=event_body(f"e{i}")).execute()["updated"] for i in range(30)]
    assert all(stamp.endswith("Z") and len(stamp) == len("2026-11-24T18:09:47.123Z") for stamp in stamps)
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)


# -- parameters that cannot go with a sync token, and 410 ------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("timeMin", "2026-01-01T00:00:00Z"),
        ("timeMax", "2027-01-01T00:00:00Z"),
        ("updatedMin", "2026-01-01T00:00:00Z"),
        ("orderBy", "updated"),
        ("q", "standup"),
        ("iCalUID", "x@google.com"),
        ("privateExtendedProperty", "a=b"),
        ("sharedExtendedProperty", "a=b"),
    ],
)
def test_a_parameter_google_forbids_with_a_sync_token_is_a_400(calendar: Any, name: str, value: str) -> None:
    calendar.events().insert(calendarId=CAL, body=event_body("x")).execute()
    _, token = sync_all(calendar, CAL)
    with pytest.raises(HttpError) as caught:
        calendar.events().list(calendarId=CAL, syncToken=token, **{name: value}).execute()
    assert caught.value.resp.status == 400
    assert caught.value.error_details[0]["location"] == name


def _assert_full_sync_required(call: Any) -> None:
    with pytest.raises(HttpError) as caught:
        call.execute()
    assert caught.value.resp.status == 410
    assert caught.value.reason == "Sync token is no longer valid, a full sync is required."
    assert caught.value.error_details[0]["reason"] == "fullSyncRequired"


def test_invalidated_tokens_answer_410_until_a_full_sync(calendar_sandbox: RunningCalendar, calendar: Any) -> None:
    calendar.events().insert(calendarId=CAL, body=event_body("x")).execute()
    _, first = sync_all(calendar, CAL)
    _, second = sync_all(calendar, CAL, first)
    calendar_sandbox.admin("POST", f"/_sandbox/calendars/{CAL}/invalidate-sync-tokens")
    for token in (first, second):
        _assert_full_sync_required(calendar.events().list(calendarId=CAL, syncToken=token))
    items, fresh = sync_all(calendar, CAL)
    assert len(items) == 1
    assert sync_all(calendar, CAL, fresh)[0] == []


def test_garbage_and_foreign_tokens_answer_410(calendar: Any) -> None:
    calendar.events().insert(calendarId=CAL, body=event_body("x")).execute()
    calendar.events().insert(calendarId="bob@example.com", body=event_body("y")).execute()
    _, bobs = sync_all(calendar, "bob@example.com")
    for token in ("garbage", "", bobs):
        _assert_full_sync_required(calendar.events().list(calendarId=CAL, syncToken=token))


# -- conferenceData ---------------------------------------------------------------------------------

OUR_CONFERENCE = {
    "conferenceId": "conf-123",
    "conferenceSolution": {"key": {"type": "addOn"}, "name": "My Web Conference"},
    "entryPoints": [{"entryPointType": "video", "uri": "https://conf.example.com/123", "passcode": "42"}],
}


def test_conference_data_is_ignored_without_conference_data_version_1(calendar: Any) -> None:
    events = calendar.events()
    plain = events.insert(calendarId=CAL, body={**event_body("x"), "conferenceData": OUR_CONFERENCE}).execute()
    assert "conferenceData" not in plain
    assert "conferenceData" not in events.get(calendarId=CAL, eventId=plain["id"]).execute()
    ours = events.insert(
        calendarId=CAL, conferenceDataVersion=1, body={**event_body("y"), "conferenceData": OUR_CONFERENCE}
    ).execute()
    assert ours["conferenceData"] == OUR_CONFERENCE


def test_conference_data_survives_edits_that_do_not_name_it(calendar: Any) -> None:
    events = calendar.events()
    event = events.insert(
        calendarId=CAL, conferenceDataVersion=1, body={**event_body("y"), "conferenceData": OUR_CONFERENCE}
    ).execute()
    patched = events.patch(
        calendarId=CAL, eventId=event["id"], body={"summary": "renamed", "conferenceData": None}
    ).execute()
    assert patched["conferenceData"] == OUR_CONFERENCE, "without conferenceDataVersion=1 the body's is ignored"
    replaced = events.update(calendarId=CAL, eventId=event["id"], body=event_body("put")).execute()
    assert replaced["conferenceData"] == OUR_CONFERENCE
    removed = events.patch(
        calendarId=CAL, eventId=event["id"], conferenceDataVersion=1, body={"conferenceData": None}
    ).execute()
    assert "conferenceData" not in removed


def test_switching_to_meet_replaces_our_conference(calendar: Any) -> None:
    events = calendar.events()
    event = events.insert(
        calendarId=CAL, conferenceDataVersion=1, body={**event_body("y"), "conferenceData": OUR_CONFERENCE}
    ).execute()
    meet = {"createRequest": {"requestId": "r1", "conferenceSolutionKey": {"type": "hangoutsMeet"}}}
    switched = events.patch(
        calendarId=CAL, eventId=event["id"], conferenceDataVersion=1, body={"conferenceData": meet}
    ).execute()
    assert switched["conferenceData"]["conferenceSolution"]["key"]["type"] == "hangoutsMeet"
    assert switched["conferenceData"]["createRequest"]["status"]["statusCode"] == "success"
    assert switched["conferenceData"]["conferenceId"] != "conf-123"


# -- recurring events -------------------------------------------------------------------------------


def test_instances_keep_local_time_across_a_dst_change(calendar: Any) -> None:
    body = {
        "summary": "standup",
        "start": {"dateTime": "2026-10-19T10:00:00", "timeZone": "Europe/Warsaw"},
        "end": {"dateTime": "2026-10-19T10:15:00", "timeZone": "Europe/Warsaw"},
        "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"],
    }
    series = calendar.events().insert(calendarId=CAL, body=body).execute()
    instances = calendar.events().instances(calendarId=CAL, eventId=series["id"]).execute()["items"]
    assert [item["id"] for item in instances] == [
        f"{series['id']}_20261019T080000Z",  # CEST, UTC+2
        f"{series['id']}_20261026T090000Z",  # CET, UTC+1: Warsaw left summer time on Oct 25
        f"{series['id']}_20261102T090000Z",
    ]
    assert all(datetime.fromisoformat(item["start"]["dateTime"]).hour == 10 for item in instances)
    assert all(item["recurringEventId"] == series["id"] for item in instances)


def test_editing_one_instance_creates_an_exception_seen_by_single_events(calendar: Any) -> None:
    events = calendar.events()
    series = insert_series(calendar)
    second = nth_instance(calendar, series, 1)
    moved = events.patch(calendarId=CAL, eventId=second["id"], body={"summary": "moved one"}).execute()
    assert moved["id"] == second["id"]
    assert moved["recurringEventId"] == series["id"]
    assert moved["originalStartTime"] == second["originalStartTime"]
    expanded = list_all(calendar, CAL, singleEvents=True)[0]
    assert [item["summary"] for item in expanded] == ["weekly", "moved one", "weekly"]
    events.delete(calendarId=CAL, eventId=second["id"]).execute()
    assert len(list_all(calendar, CAL, singleEvents=True)[0]) == 2
    assert len(list_all(calendar, CAL, singleEvents=True, showDeleted=True)[0]) == 3


def test_a_cancelled_instance_shows_in_a_plain_listing_but_not_its_series_twice(calendar: Any) -> None:
    events = calendar.events()
    series = insert_series(calendar, "RRULE:FREQ=DAILY;COUNT=3")
    first = nth_instance(calendar, series, 0)
    events.delete(calendarId=CAL, eventId=first["id"]).execute()
    listed = list_all(calendar, CAL)[0]
    assert [(item["id"], item["status"]) for item in listed] == [
        (series["id"], "confirmed"),
        (first["id"], "cancelled"),
    ]


def test_deleting_a_series_cancels_it_and_its_exceptions(calendar: Any) -> None:
    events = calendar.events()
    series = insert_series(calendar)
    second = nth_instance(calendar, series, 1)
    events.patch(calendarId=CAL, eventId=second["id"], body={"summary": "exception"}).execute()
    _, token = sync_all(calendar, CAL)
    events.delete(calendarId=CAL, eventId=series["id"]).execute()
    changed, _ = sync_all(calendar, CAL, token)
    assert {(item["id"], item["status"]) for item in changed} == {
        (series["id"], "cancelled"),
        (second["id"], "cancelled"),
    }


def test_an_instance_id_that_the_rule_never_produces_is_not_found(calendar: Any) -> None:
    series = insert_series(calendar)
    with pytest.raises(HttpError) as caught:
        calendar.events().get(calendarId=CAL, eventId=f"{series['id']}_20300101T000000Z").execute()
    assert caught.value.resp.status == 404


def test_time_window_and_order_by_start_time(calendar: Any) -> None:
    events = calendar.events()
    base = datetime(2026, 12, 1, 9, tzinfo=UTC)
    for offset in (3, 1, 2):
        start = base + timedelta(days=offset)
        events.insert(
            calendarId=CAL,
            body={
                "summary": f"day {offset}",
                "start": {"dateTime": start.isoformat()},
                "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
            },
        ).execute()
    window = list_all(
        calendar,
        CAL,
        singleEvents=True,
        orderBy="startTime",
        timeMin=(base + timedelta(days=1, hours=2)).isoformat(),
        timeMax=(base + timedelta(days=4)).isoformat(),
    )[0]
    assert [item["summary"] for item in window] == ["day 2", "day 3"]
    with pytest.raises(HttpError) as caught:
        events.list(calendarId=CAL, orderBy="startTime").execute()
    assert caught.value.resp.status == 400
