"""Who speaks for a conference, end to end over ``confsync local`` on Pub/Sub and in-process:
the rows of processors/classify.py's table that involve more than one calendar or person.

Each test makes its own people (users of both sandboxes, with calendars and ACLs), acts as
them through Calendar's API, and reads the outcome back from the provider: what it holds
(``StackDriver.compare``) and what it was asked since the test began (its journal). Every test
ends with the provider agreeing with Calendar, one provider call per effective change, and no
delete the conference's owner did not cause.
"""

from __future__ import annotations

import time
from typing import Any

from tests_support.local_stack import Stack, person, store_of, timed

from confsync.store import CalendarStatus, LinkState
from stack.driver import StackDriver

AGREE_TIMEOUT_S = 60.0


def agreed(driver: StackDriver) -> None:
    rows = driver.wait_until_agreed(AGREE_TIMEOUT_S)
    assert [row for row in rows if not row.agrees] == []


def calls(driver: StackDriver, mark: int, conference_id: str, method: str) -> list[dict[str, Any]]:
    return [e for e in driver.journal()[mark:] if e["method"] == method and e["path"].endswith(conference_id)]


def one_call_per_change(driver: StackDriver, mark: int, changes: int) -> None:
    """The provider was asked once per effective change of this test's conferences since ``mark``
    (the stack is shared: other tests' late calls are not counted)."""
    ours = set(driver.conferences)

    def writes() -> list[dict[str, Any]]:
        entries = driver.journal()[mark:]
        return [e for e in entries if e["method"] in ("PATCH", "DELETE") and e["path"].rsplit("/", 1)[-1] in ours]

    # The provider journals a call just after answering it: wait for the last one, then for stragglers.
    driver.wait_until(lambda: len(writes()) >= changes, 5.0, f"{changes} calls in the provider's journal")
    time.sleep(0.5)
    keys = [e["idempotency_key"] for e in writes()]
    assert (len(set(keys)), len(keys)) == (changes, changes), writes()


def attached(driver: StackDriver, calendar_id: str, event: dict[str, Any], *, as_: str | None = None) -> str:
    """The add-on's conference for ``event``, once the first listing's update has reached it
    (version 2), so that a test's counts start after it."""
    conference = driver.add_conference(calendar_id, event, as_=as_)
    assert driver.wait_for_version(conference, 2) == 2
    return conference


def wait_for_summary(driver: StackDriver, conference_id: str, summary: str) -> None:
    def holds() -> bool:
        held = driver.conference(conference_id)
        return held is not None and held.get("summary") == summary

    driver.wait_until(holds, AGREE_TIMEOUT_S, f"{conference_id} to read {summary!r}")


def test_guests_copies_and_a_shared_calendar_speak_only_through_the_owners_copy(
    stack: Stack, driver: StackDriver
) -> None:
    """Carol is a guest (her calendar is watched: she uses confsync too); Dave may edit Alice's
    calendar, so his change is a change of the owning copy."""
    alice, carol, dave = person("alice"), person("carol"), person("dave")
    for user in (alice, carol, dave):
        driver.add_user(user)
    attached(driver, carol, driver.insert(carol, timed("Carol's own", 3)))  # her calendar is watched
    driver.share(alice, dave, "writer")
    planning = driver.insert(alice, {**timed("Planning", 4), "attendees": [{"email": carol}]})
    conference = attached(driver, alice, planning)
    agreed(driver)
    mark = driver.journal_mark()

    driver.cancel(carol, planning["id"])  # Carol removes the meeting from her calendar
    driver.calendar_as(dave).events().patch(
        calendarId=alice, eventId=planning["id"], body={"summary": "Planning, edited by Dave"}
    ).execute()

    wait_for_summary(driver, conference, "Planning, edited by Dave")
    agreed(driver)
    assert calls(driver, mark, conference, "DELETE") == []
    one_call_per_change(driver, mark, 1)  # Dave's rename; Carol declining changes nothing it is told
    with store_of(stack) as store:
        assert store.get_link(carol, planning["id"]) is None, "her copy never owned it"


def test_an_event_that_copied_someone_elses_conference_can_neither_change_nor_delete_it(
    driver: StackDriver,
) -> None:
    alice, mallory = person("alice"), person("mallory")
    for user in (alice, mallory):
        driver.add_user(user)
    attached(driver, mallory, driver.insert(mallory, timed("Mallory's own", 5)))  # watched
    planning = driver.insert(alice, timed("Planning", 6))
    conference = attached(driver, alice, planning)
    agreed(driver)
    stolen = driver.event(alice, planning["id"])["conferenceData"]  # type: ignore[index]
    mark = driver.journal_mark()

    fake = driver.insert(mallory, {**timed("Not Alice's", 7), "conferenceData": stolen})
    driver.patch(mallory, fake["id"], {"conferenceData": stolen, "summary": "Renamed"})
    driver.cancel(mallory, fake["id"])
    driver.patch(alice, planning["id"], {"summary": "Planning, still Alice's"})

    wait_for_summary(driver, conference, "Planning, still Alice's")
    agreed(driver)
    one_call_per_change(driver, mark, 1)
    assert calls(driver, mark, conference, "DELETE") == []


def test_a_meeting_moved_between_its_owners_calendars_keeps_its_conference_and_its_new_calendar_is_watched(
    driver: StackDriver,
) -> None:
    alice = person("alice")
    team = person("team")
    driver.add_user(alice)
    driver.add_secondary_calendar(team, alice)
    planning = driver.insert(alice, timed("Planning", 8))
    conference = attached(driver, alice, planning)
    agreed(driver)
    mark = driver.journal_mark()

    driver.move(alice, planning["id"], team)
    driver.wait_until(lambda: len(driver.live_channels_of(team)) == 1, AGREE_TIMEOUT_S, "the team calendar watched")
    driver.patch(team, planning["id"], {"summary": "Planning, in the team calendar"})

    wait_for_summary(driver, conference, "Planning, in the team calendar")
    agreed(driver)
    assert calls(driver, mark, conference, "DELETE") == []
    one_call_per_change(driver, mark, 2)  # the move (its link in Calendar changed), then the rename

    driver.cancel(team, planning["id"])  # the owner deletes it: that delete goes out, after the grace
    driver.wait_until(lambda: driver.conference(conference)["state"] == "deleted", AGREE_TIMEOUT_S, "the delete")  # type: ignore[index]
    agreed(driver)
    one_call_per_change(driver, mark, 3)


def test_a_meeting_moved_out_of_its_owners_calendars_is_deleted_after_the_grace(
    stack: Stack, driver: StackDriver
) -> None:
    alice, bob = person("alice"), person("bob")
    team = person("team")
    for user in (alice, bob):
        driver.add_user(user)
    driver.add_secondary_calendar(team, alice)
    driver.share(team, bob, "writer")
    planning = driver.insert(team, timed("Planning", 9))
    conference = attached(driver, team, planning, as_=alice)
    agreed(driver)
    mark = driver.journal_mark()

    driver.move(team, planning["id"], bob, as_=bob)  # Bob takes it to his own calendar

    def leaving() -> bool:
        with store_of(stack) as store:
            link = store.get_link(team, planning["id"])
            return link is not None and link.state in (LinkState.LEAVING, LinkState.DELETED)

    driver.wait_until(leaving, AGREE_TIMEOUT_S, "the owner's copy confirmed gone")
    driver.wait_until(lambda: driver.conference(conference)["state"] == "deleted", AGREE_TIMEOUT_S, "the delete")  # type: ignore[index]
    agreed(driver)
    assert [e["status"] for e in calls(driver, mark, conference, "DELETE")] == [204]
    one_call_per_change(driver, mark, 1)


def test_a_calendar_whose_owner_revoked_google_is_disconnected_and_nothing_is_deleted(
    stack: Stack, driver: StackDriver
) -> None:
    erin = person("erin", "partner.example")  # outside the delegated domain: read with her own grant
    driver.add_user(erin)
    planning = driver.insert(erin, timed("Planning", 10))
    conference = attached(driver, erin, planning)
    agreed(driver)
    mark = driver.journal_mark()

    driver.revoke_at_google(erin)
    driver.sign_in_again(erin)  # Calendar's own UI still works for her
    driver.cancel(erin, planning["id"])

    def disconnected() -> bool:
        with store_of(stack) as store:
            state = store.get_calendar(erin)
            return state is not None and state.status is CalendarStatus.DISCONNECTED

    driver.wait_until(disconnected, AGREE_TIMEOUT_S, "her calendar disconnected")
    assert calls(driver, mark, conference, "DELETE") == [], "lost access is not cancellation"
    assert driver.conference(conference)["state"] == "active"  # type: ignore[index]

    assert driver.connect(erin).consents, "she reconnects"
    driver.wait_until(lambda: driver.conference(conference)["state"] == "deleted", AGREE_TIMEOUT_S, "her delete")  # type: ignore[index]
    agreed(driver)
    one_call_per_change(driver, mark, 1)
