"""End to end over ``confsync local``, on Pub/Sub (emulator) and on the in-process transport.

Each test changes events only through the Calendar API (google-api-python-client) and the
add-on API over HTTP, then waits (bounded) until every conference the provider holds agrees
with Calendar's truth, read back through the provider's REST API. The provider's request
journal then shows no conference created twice and no change applied twice (retries reuse
one Idempotency-Key and only one of its answers is a success).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from datetime import datetime
from typing import Any

from tests_support.local_stack import Stack

from stack.driver import Row, StackDriver

AGREE_TIMEOUT_S = 60.0
IDLE_SPELL_S = 6.0  # past uvicorn's keep-alive, which the Calendar sandbox serves with


def timed(summary: str, day: int, hour: int = 10, *attendees: str, **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "start": {"dateTime": f"2026-12-{day:02d}T{hour:02d}:00:00+01:00", "timeZone": "Europe/Warsaw"},
        "end": {"dateTime": f"2026-12-{day:02d}T{hour + 1:02d}:00:00+01:00", "timeZone": "Europe/Warsaw"},
        "attendees": [{"email": email} for email in attendees],
        **extra,
    }


def with_conference(driver: StackDriver, calendar: str, body: dict[str, Any]) -> tuple[str, str]:
    event = driver.insert(calendar, body)
    return str(event["id"]), driver.add_conference(calendar, event)


def assert_agreed(driver: StackDriver, timeout_s: float = AGREE_TIMEOUT_S) -> list[Row]:
    rows = driver.wait_until_agreed(timeout_s)
    differing = [row for row in rows if not row.agrees]
    assert not differing, f"provider disagrees with Calendar: {differing}"
    return rows


def assert_one_apply_per_change(driver: StackDriver, since: int, creates: int) -> dict[str, int]:
    report = driver.call_report(since)
    assert report["creates"] == creates, report
    assert report["duplicate_applies"] == 0, report
    return report


def test_moves_renames_and_guest_changes_reach_the_provider(driver: StackDriver, calendar: str) -> None:
    mark = driver.journal_mark()
    planning, _ = with_conference(driver, calendar, timed("Planning", 8, 10, "bob@example.com"))
    review, _ = with_conference(driver, calendar, timed("Review", 9, 14))
    assert_agreed(driver)

    driver.patch(calendar, planning, {k: v for k, v in timed("Planning", 10, 15).items() if k in ("start", "end")})
    driver.patch(calendar, review, {"summary": "Design review"})
    driver.patch(calendar, planning, {"attendees": [{"email": "bob@example.com"}, {"email": "carol@example.com"}]})

    rows = assert_agreed(driver)
    by_event = {row.event_id: row for row in rows}
    assert by_event[review].actual is not None
    assert by_event[review].actual.summary == "Design review"
    assert by_event[planning].actual is not None
    assert by_event[planning].actual.attendees == ("bob@example.com", "carol@example.com")
    assert_one_apply_per_change(driver, mark, creates=2)


def test_a_cancelled_meeting_is_deleted_and_a_cancelled_occurrence_reaches_its_series(
    driver: StackDriver, calendar: str
) -> None:
    mark = driver.journal_mark()
    retro, retro_conference = with_conference(driver, calendar, timed("Retro", 8))
    weekly, weekly_conference = with_conference(
        driver, calendar, timed("Weekly", 9, 10, recurrence=["RRULE:FREQ=WEEKLY;COUNT=4"])
    )
    assert_agreed(driver)
    # version 1 is the create; the first listing that sees the event carrying it sends one update
    assert driver.wait_for_version(weekly_conference, 2) == 2

    listed = driver.settled_listings(calendar)
    driver.cancel_instance(calendar, weekly, 2)
    assert driver.wait_for_listing(calendar, listed)
    driver.cancel(calendar, retro)

    assert_agreed(driver)
    assert driver.conference(retro_conference)["state"] == "deleted"  # type: ignore[index]
    weekly_now = driver.conference(weekly_conference)
    assert weekly_now is not None
    assert weekly_now["state"] == "active", "the series keeps its conference"
    assert weekly_now["version"] == 3, "one update: the series with its cancelled occurrence"
    assert [item["status"] for item in weekly_now["exceptions"]] == ["cancelled"]
    assert_one_apply_per_change(driver, mark, creates=2)


def test_removing_the_conference_or_switching_to_meet_deletes_ours(driver: StackDriver, calendar: str) -> None:
    removed, removed_conference = with_conference(driver, calendar, timed("Standup", 8))
    switched, switched_conference = with_conference(driver, calendar, timed("Customer call", 9))
    assert_agreed(driver)

    driver.remove_conference(calendar, removed)
    driver.switch_to_meet(calendar, switched)

    assert_agreed(driver)
    assert driver.conference(removed_conference)["state"] == "deleted"  # type: ignore[index]
    assert driver.conference(switched_conference)["state"] == "deleted"  # type: ignore[index]


def test_a_410_mid_stream_recovers_with_a_full_sync_and_finds_deletions(driver: StackDriver, calendar: str) -> None:
    kept, _ = with_conference(driver, calendar, timed("Kept", 8))
    gone, gone_conference = with_conference(driver, calendar, timed("Gone", 9))
    assert_agreed(driver)

    driver.invalidate_sync_tokens(calendar)
    driver.patch(calendar, kept, {"summary": "Kept, renamed after the 410"})
    driver.cancel(calendar, gone)

    rows = assert_agreed(driver)
    assert {row.event_id: row.actual.summary for row in rows if row.actual}[kept] == "Kept, renamed after the 410"
    assert driver.conference(gone_conference)["state"] == "deleted"  # type: ignore[index]


def test_duplicate_notifications_apply_each_change_once(driver: StackDriver, calendar: str) -> None:
    driver.duplicate_notifications(on=True)
    mark = driver.journal_mark()
    event, _ = with_conference(driver, calendar, timed("Twice told", 8))
    for n in range(3):
        driver.patch(calendar, event, {"summary": f"Twice told, take {n}"})

    assert_agreed(driver)
    assert_one_apply_per_change(driver, mark, creates=1)


def test_a_503_and_429_storm_at_the_provider_ends_with_one_apply_per_change(driver: StackDriver, calendar: str) -> None:
    mark = driver.journal_mark()
    events = [with_conference(driver, calendar, timed(f"Meeting {n}", 8 + n))[0] for n in range(4)]
    assert_agreed(driver)
    storm = [  # rules fire in order: the first two of each kind for sure, then PATCHes at random
        {"path": "^/v1/conferences/", "method": "PATCH", "status": 503, "count": 2},
        {"path": "^/v1/conferences/", "method": "DELETE", "status": 429, "count": 2},
        {"path": "^/v1/conferences/", "method": "PATCH", "status": 503, "probability": 0.5, "count": 10},
    ]
    for rule in storm:
        driver.provider_fault(rule)

    for n, event in enumerate(events[:3]):
        driver.patch(calendar, event, {"summary": f"Meeting {n}, moved in the storm"})
    driver.cancel(calendar, events[3])

    assert_agreed(driver, timeout_s=120)
    report = assert_one_apply_per_change(driver, mark, creates=4)
    assert report["retried"] >= 4, "each of the first two PATCHes and DELETEs failed"


def test_killed_services_come_back_and_lose_nothing(stack: Stack, driver: StackDriver, calendar: str) -> None:
    """Each service is SIGKILLed right after a burst of changes (messages in flight), more
    changes come while it is down, and ``confsync local`` replaces it (as Cloud Run would):
    every change reaches the provider, none twice. With the in-process transport the queues
    die with ``serve all``; Calendar retries its notifications until the webhook answers,
    and the next sync reads everything since the last saved token."""
    mark = driver.journal_mark()
    events = [with_conference(driver, calendar, timed(f"Resilient {n}", 8 + n))[0] for n in range(3)]
    assert_agreed(driver)
    victims = ["serve-processor", "serve-publisher"] if stack.transport == "pubsub" else ["serve-all"]

    for round_, victim in enumerate(victims):
        for n, event in enumerate(events):
            driver.patch(calendar, event, {"summary": f"Resilient {n}, round {round_}"})
        old = stack.pid(victim)
        os.kill(old, signal.SIGKILL)
        for n, event in enumerate(events):
            driver.patch(calendar, event, {"summary": f"Resilient {n}, while {victim} was down"})
        stack.wait_restarted(victim, old)
        assert_agreed(driver, timeout_s=120)

    rows = assert_agreed(driver)
    assert {row.actual.summary for row in rows if row.actual and row.event_id == events[0]} == {
        f"Resilient 0, while {victims[-1]} was down"
    }
    assert driver.call_report(mark)["creates"] == 3


def test_a_reverted_move_reaches_the_provider_again(driver: StackDriver, calendar: str) -> None:
    """10:00 -> 15:00 -> 10:00 -> 15:00, each applied before the next: the last 15:00 has the
    first one's content but a newer version, and the provider must apply it, not replay the
    first 15:00's answer and keep 10:00."""
    mark = driver.journal_mark()
    event, _ = with_conference(driver, calendar, timed("Revert me", 8, 10))
    assert_agreed(driver)
    for hour in (15, 10, 15):
        driver.patch(calendar, event, {k: v for k, v in timed("Revert me", 8, hour).items() if k in ("start", "end")})
        rows = assert_agreed(driver)
        (row,) = [row for row in rows if row.event_id == event]
        assert row.actual is not None
        assert row.actual.start == datetime.fromisoformat(f"2026-12-08T{hour:02d}:00:00+01:00")
    assert_one_apply_per_change(driver, mark, creates=1)


def test_calendars_added_after_an_idle_spell_are_watched_and_sync(driver: StackDriver, calendar: str) -> None:
    """Ingest has not talked to Calendar for longer than the server's keep-alive (5 s), so its
    pooled connections are closed: the add-on's watches for new calendars must still hold."""
    calendars = [calendar, *(f"u{uuid.uuid4().hex[:10]}@example.com" for _ in range(3))]
    for extra in calendars[1:]:
        driver.add_calendar(extra)
    time.sleep(IDLE_SPELL_S)
    events = {cal: with_conference(driver, cal, timed("After the quiet", 8))[0] for cal in calendars}
    for cal, event in events.items():
        driver.patch(cal, event, {"summary": f"After the quiet, renamed in {cal}"})
    rows = assert_agreed(driver)
    summaries = {row.event_id: row.actual.summary for row in rows if row.actual}
    assert [summaries[event] for event in events.values()] == [f"After the quiet, renamed in {cal}" for cal in events]
