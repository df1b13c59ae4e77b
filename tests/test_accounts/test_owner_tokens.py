"""Conferences live in their owner's vendor account and calendars are read as their owner, through
expiries and revocations: ``confsync serve all`` with users' accounts on, the two sandboxes'
OAuth servers, Calendar's notifications driving every change. What the vendor holds is read
back from the vendor; what Calendar was asked, from its journal."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from tests_support.accounts_world import AccountsWorld, Person, WorldFactory, heading

from confsync.store.records import CalendarStatus, GrantStatus, OAuthProvider

ALICE = "alice@example.com"


@pytest.fixture
def world(accounts_world: WorldFactory) -> AccountsWorld:
    return accounts_world(ALICE)


@pytest.fixture
def alice(world: AccountsWorld) -> Iterator[Person]:
    person = Person(ALICE)
    answer = world.create(ALICE, ALICE, "first")
    assert heading(person.connect(answer.json()["error"]["authenticationUrl"]).text) == "Connected"
    yield person
    person.close()


def rename(world: AccountsWorld, event: dict[str, Any], summary: str) -> None:
    world.calendar_as(ALICE).events().patch(calendarId=ALICE, eventId=event["id"], body={"summary": summary}).execute()


def summary_at_vendor(world: AccountsWorld, conference_id: str) -> str | None:
    return world.conference(conference_id).get("summary")


def vendor_calls(world: AccountsWorld, method: str) -> list[dict[str, Any]]:
    return [e for e in world.provider.journal() if e["method"] == method]


def test_an_access_token_that_expired_mid_run_is_refreshed_and_no_change_is_lost(
    world: AccountsWorld, alice: Person
) -> None:
    event = world.new_event(ALICE, ALICE)
    conference = world.attach(ALICE, ALICE, event)
    rename(world, event, "Planning v2")
    world.wait_for(lambda: summary_at_vendor(world, conference) == "Planning v2", what="v2 at the vendor")
    version = world.stack.store.get_grant(ALICE, OAuthProvider.VENDOR).version  # type: ignore[union-attr]

    world.provider.admin("POST", "/_sandbox/clock", {"advance_s": 7200})  # every access token confsync holds expired
    rename(world, event, "Planning v3")

    world.wait_for(lambda: summary_at_vendor(world, conference) == "Planning v3", what="v3 at the vendor")
    patches = [e["status"] for e in vendor_calls(world, "PATCH")]
    assert 401 in patches  # the expired token was refused once ...
    assert patches[-1] == 200  # ... and the retry with a fresh one went through
    grant = world.stack.store.get_grant(ALICE, OAuthProvider.VENDOR)
    assert grant is not None
    assert grant.status is GrantStatus.ACTIVE
    assert grant.version > version  # the vendor rotated the refresh token, and its successor was saved


def test_a_revoked_vendor_grant_holds_the_owners_changes_and_a_reconnect_delivers_them_in_order(
    world: AccountsWorld, alice: Person
) -> None:
    event = world.new_event(ALICE, ALICE)
    conference = world.attach(ALICE, ALICE, event)
    version = world.conference(conference)["version"]
    world.provider.admin("POST", f"/_sandbox/users/{ALICE}/revoke")  # Alice disconnects confsync at the vendor

    rename(world, event, "Planning v2")
    world.wait_for(lambda: world.stack.store.count_held(ALICE) == 1, what="the first change held")
    rename(world, event, "Planning v3")
    world.wait_for(lambda: world.stack.store.count_held(ALICE) == 2, what="the second change held")

    assert summary_at_vendor(world, conference) == "Planning"  # nothing reached the vendor ...
    assert world.stack.store.get_grant(ALICE, OAuthProvider.VENDOR).status is GrantStatus.REVOKED  # type: ignore[union-attr]
    again = world.create(ALICE, ALICE, "another")
    assert again.json()["error"]["type"] == "AUTHENTICATION"

    assert heading(alice.connect(again.json()["error"]["authenticationUrl"]).text) == "Connected"

    world.wait_for(lambda: summary_at_vendor(world, conference) == "Planning v3", what="the held changes delivered")
    assert world.stack.store.count_held(ALICE) == 0
    # In order: v2 then v3 both applied (versions 2 and 3); v3 first would have made v2 stale (409).
    assert world.conference(conference)["version"] == version + 2
    assert 409 not in [e["status"] for e in vendor_calls(world, "PATCH")]


def test_a_revoked_google_grant_disconnects_the_calendar_without_a_delete_and_a_reconnect_resyncs_it(
    world: AccountsWorld, alice: Person
) -> None:
    event = world.new_event(ALICE, ALICE)
    conference = world.attach(ALICE, ALICE, event)
    world.calendar.admin("POST", f"/_sandbox/users/{ALICE}/revoke-grants")  # Alice removes confsync's access

    rename(world, event, "Planning v2")

    world.wait_for(
        lambda: world.stack.store.get_calendar(ALICE).status is CalendarStatus.DISCONNECTED,  # type: ignore[union-attr]
        what="the calendar disconnected",
    )
    assert world.stack.store.get_grant(ALICE, OAuthProvider.GOOGLE).status is GrantStatus.REVOKED  # type: ignore[union-attr]
    assert vendor_calls(world, "DELETE") == []
    assert world.conference(conference)["state"] == "active"
    again = world.create(ALICE, ALICE, "another")
    assert again.json()["error"]["type"] == "AUTHENTICATION"

    assert heading(alice.connect(again.json()["error"]["authenticationUrl"]).text) == "Connected"

    world.wait_for(lambda: summary_at_vendor(world, conference) == "Planning v2", what="the resync")
    assert world.stack.store.get_calendar(ALICE).status is CalendarStatus.ACTIVE  # type: ignore[union-attr]
    assert vendor_calls(world, "DELETE") == []


def test_a_busy_token_endpoint_is_waited_out_never_taken_for_a_revocation(world: AccountsWorld, alice: Person) -> None:
    event = world.new_event(ALICE, ALICE)
    conference = world.attach(ALICE, ALICE, event)
    world.provider.admin("POST", "/_sandbox/clock", {"advance_s": 7200})  # the next call needs a refresh ...
    rule = {"method": "POST", "path": "^/oauth/token$", "status": 429, "count": 2, "retry_after": 0}
    world.provider.admin("POST", "/_sandbox/faults", rule)  # ... and the vendor's token endpoint is busy

    rename(world, event, "Planning v2")

    world.wait_for(lambda: summary_at_vendor(world, conference) == "Planning v2", what="v2 once the endpoint answers")
    grant = world.stack.store.get_grant(ALICE, OAuthProvider.VENDOR)
    assert grant is not None
    assert grant.status is GrantStatus.ACTIVE
    assert world.stack.store.count_held(ALICE) == 0


def test_a_guests_copy_of_the_meeting_speaks_for_nothing_and_the_organizers_delete_goes_through(
    accounts_world: WorldFactory,
) -> None:
    bob = "bob@example.com"
    world = accounts_world(ALICE, bob)
    world.connect(ALICE, bob)
    world.attach(bob, bob, world.new_event(bob, bob, "Bob's own"))  # Bob's calendar is watched too
    event = world.new_event(ALICE, ALICE)
    conference = world.attach(ALICE, ALICE, event)
    world.calendar_as(ALICE).events().patch(
        calendarId=ALICE, eventId=event["id"], body={"attendees": [{"email": bob}], "summary": "With Bob"}
    ).execute()  # Bob's calendar now holds a copy, carrying Alice's conference
    world.wait_for(lambda: summary_at_vendor(world, conference) == "With Bob", what="the organizer's change")
    world.settle()

    world.calendar_as(ALICE).events().delete(calendarId=ALICE, eventId=event["id"]).execute()

    world.wait_for(lambda: world.conference(conference)["state"] == "deleted", what="the organizer's delete")
    refused = [e for e in vendor_calls(world, "PATCH") + vendor_calls(world, "DELETE") if e["status"] == 404]
    assert refused == []  # no command went out with Bob's token for Alice's conference
    assert world.stack.store.get_link(bob, event["id"]) is None  # his copy was never linked


def test_a_calendar_answering_404_is_disconnected_not_emptied_and_its_owner_reconnects_it(
    world: AccountsWorld, alice: Person
) -> None:
    event = world.new_event(ALICE, ALICE)
    conference = world.attach(ALICE, ALICE, event)
    world.calendar.admin("POST", "/_sandbox/faults", {"method": "GET", "path": "/events$", "status": 404, "count": 3})

    rename(world, event, "Planning v2")

    def disconnected() -> bool:
        state = world.stack.store.get_calendar(ALICE)
        return state is not None and state.status is CalendarStatus.DISCONNECTED

    world.wait_for(disconnected, what="the calendar disconnected")
    assert vendor_calls(world, "DELETE") == []  # lost access is not cancellation
    assert world.conference(conference)["state"] == "active"
    world.calendar.admin("DELETE", "/_sandbox/faults")
    again = world.create(ALICE, ALICE, "another", event={"summary": "Another"})
    assert again.json()["error"]["type"] == "AUTHENTICATION"  # her calendar is not followed: she is asked

    assert heading(alice.connect(again.json()["error"]["authenticationUrl"]).text) == "Connected"

    world.wait_for(lambda: summary_at_vendor(world, conference) == "Planning v2", what="the resync")
    assert vendor_calls(world, "DELETE") == []


def test_an_event_that_copied_someone_elses_conference_can_neither_change_nor_delete_it(
    accounts_world: WorldFactory,
) -> None:
    mallory = "mallory@example.com"
    world = accounts_world(ALICE, mallory)
    world.connect(ALICE, mallory)
    world.attach(mallory, mallory, world.new_event(mallory, mallory, "Mallory's own"))  # her calendar is watched
    event = world.new_event(ALICE, ALICE)
    conference = world.attach(ALICE, ALICE, event)
    before = world.conference(conference)
    stolen = world.calendar_as(ALICE).events().get(calendarId=ALICE, eventId=event["id"]).execute()["conferenceData"]
    body = {
        "summary": "Not Alice's",
        "start": {"dateTime": "2026-12-03T09:00:00Z"},
        "end": {"dateTime": "2026-12-03T10:00:00Z"},
        "conferenceData": stolen,
    }
    fake = world.calendar_as(mallory).events().insert(calendarId=mallory, body=body, conferenceDataVersion=1).execute()
    world.calendar_as(mallory).events().patch(
        calendarId=mallory, eventId=fake["id"], body={"summary": "Renamed"}
    ).execute()
    world.calendar_as(mallory).events().delete(calendarId=mallory, eventId=fake["id"]).execute()
    deleted_at = datetime.now(UTC)

    def listed_since() -> bool:  # a listing of Mallory's calendar began after her delete
        state = world.stack.store.get_calendar(mallory)
        return state is not None and state.last_synced_at is not None and state.last_synced_at > deleted_at

    world.wait_for(listed_since, what="Mallory's calendar listed after her delete")
    world.settle()
    refused = [e for e in vendor_calls(world, "PATCH") + vendor_calls(world, "DELETE") if e["status"] == 404]
    assert refused == []  # nothing was even tried for Alice's conference in Mallory's name
    rename(world, event, "Planning, still Alice's")  # a change of Alice's after Mallory's: it still reaches

    world.wait_for(lambda: summary_at_vendor(world, conference) == "Planning, still Alice's", what="Alice's change")
    after = world.conference(conference)
    assert after["state"] == "active"
    assert after["version"] == before["version"] + 1  # Alice's change, and nothing of Mallory's
    assert world.stack.store.get_link(mallory, fake["id"]) is None
