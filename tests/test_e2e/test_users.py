"""Users' accounts end to end over ``confsync local``, on Pub/Sub (emulator) and in-process.

Every call is made as a person: the add-on API with a Google ID token the Calendar sandbox
mints for that user, Calendar with the user's own token, the connect pages with a browser of
their own that answers Google's and the vendor's consent pages. The provider's journal and
the store then show what changed, and what did not.
"""

from __future__ import annotations

from typing import Any

from tests_support.local_stack import Stack, person, store_of, timed

from confsync.calendar import CALENDAR_SCOPES
from stack.driver import StackDriver, authentication_url

AGREE_TIMEOUT_S = 60.0


def writes_since(driver: StackDriver, mark: int) -> list[dict[str, Any]]:
    """The conferencing API calls since ``mark`` that create, change or delete something."""
    entries = driver.journal()[mark:]
    return [e for e in entries if e["method"] in ("POST", "PATCH", "DELETE") and e["path"].startswith("/v1/")]


def error_of(answer: Any) -> dict[str, Any]:
    error: dict[str, Any] = answer.json()["error"]
    return error


def test_mallory_can_neither_attach_a_conference_to_bobs_calendar_nor_take_it_over(
    stack: Stack, driver: StackDriver
) -> None:
    bob, mallory = person("bob"), person("mallory")
    for user in (bob, mallory):
        driver.add_user(user)
    planning = driver.insert(bob, timed("Planning", 8))
    conference = driver.add_conference(bob, planning)
    assert not [row for row in driver.wait_until_agreed(AGREE_TIMEOUT_S) if not row.agrees]
    held = driver.wait_for_version(conference, 2)  # the create, then the update its first listing sends
    assert held == 2
    assert driver.connect(mallory).consents, "mallory is a connected user with a vendor account of her own"
    standup = driver.insert(bob, timed("Standup", 9))
    mark = driver.journal_mark()

    # Bob's calendar, which she cannot see; then the same once Bob lets her edit it: still his.
    unseen = driver.request_conference(bob, standup, as_=mallory)
    driver.share(bob, mallory, "writer")
    shared = driver.request_conference(bob, standup, as_=mallory)
    # Bob's own meeting, which has his conference
    replaced = driver.request_conference(bob, planning, as_=mallory)

    assert unseen.status_code == 403, unseen.text
    assert error_of(unseen)["reason"] in ("no_write_access", "calendar_of_another_user"), unseen.text
    assert shared.status_code == 403, shared.text
    assert error_of(shared)["reason"] == "calendar_of_another_user", shared.text
    assert replaced.status_code == 403, replaced.text
    assert error_of(replaced)["reason"] == "calendar_of_another_user", replaced.text
    assert writes_since(driver, mark) == []
    after = driver.conference(conference)
    assert after is not None
    assert (after["owner"], after["state"], after["version"]) == (bob, "active", 2)
    with store_of(stack) as store:
        calendar = store.get_calendar(bob)
        assert calendar is not None
        assert calendar.subject == bob
        link = store.get_link(bob, str(planning["id"]))
        assert link is not None
        assert link.conference_id == conference
        assert store.get_link(bob, str(standup["id"])) is None
        assert store.calendars_of(mallory) == []


def test_a_user_who_has_not_connected_connects_and_the_retry_lands_in_their_vendor_account(
    stack: Stack, driver: StackDriver
) -> None:
    """Outside the delegated domain: Google's consent (the calendar scopes) and the vendor's."""
    erin = person("erin", "partner.example")
    driver.add_user(erin)
    event = driver.insert(erin, timed("Partner sync", 10))
    mark = driver.journal_mark()

    first = driver.request_conference(erin, event)
    link = authentication_url(first)
    assert link is not None, first.text
    assert writes_since(driver, mark) == []
    with store_of(stack) as store:
        assert store.get_link(erin, str(event["id"])) is None

    connection = driver.connect(erin, link)
    assert [consent.at for consent in connection.consents] == ["Google", "vendor"]
    assert set(CALENDAR_SCOPES) <= connection.consents[0].scopes
    conference = driver.add_conference(erin, event)

    held = driver.conference(conference)
    assert held is not None
    assert held["owner"] == erin
    creates = [e for e in writes_since(driver, mark) if e["method"] == "POST"]
    assert len(creates) == 1
    # Her calendar is read with her own Google grant: her rename reaches her conference.
    driver.patch(erin, str(event["id"]), {"summary": "Partner sync (moved online)"})
    rows = [row for row in driver.wait_until_agreed(AGREE_TIMEOUT_S) if row.conference_id == conference]
    assert [(row.agrees, row.account) for row in rows] == [(True, erin)]
    assert rows[0].actual is not None
    assert rows[0].actual.summary == "Partner sync (moved online)"
