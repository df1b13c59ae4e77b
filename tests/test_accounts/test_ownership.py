"""Only the owning copy speaks for a conference: a guest's copy, a move between the owner's
calendars, a move out of them, and a move back within the grace, over ``confsync serve all``
with users' accounts on and Calendar's notifications driving every change. What the vendor
holds is read back from the vendor; what it was asked, from its journal."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests_support.accounts_world import AccountsWorld, WorldFactory

from confsync.store import LinkState

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
TEAM = "team-planning@example.com"  # a secondary calendar of Alice's
GRACE_S = 1.5


def vendor_calls(world: AccountsWorld, method: str, conference_id: str) -> list[dict[str, Any]]:
    return [e for e in world.provider.journal() if e["method"] == method and e["path"].endswith(conference_id)]


def summary_at_vendor(world: AccountsWorld, conference_id: str) -> str | None:
    return world.conference(conference_id).get("summary")


def link_state(world: AccountsWorld, calendar_id: str, event_id: str) -> LinkState | None:
    link = world.stack.store.get_link(calendar_id, event_id)
    return None if link is None else link.state


def team_calendar(world: AccountsWorld, *writers: str) -> None:
    world.calendar.admin("POST", "/_sandbox/calendars", {"id": TEAM, "owner": ALICE})
    for writer in writers:
        rule = {"role": "writer", "scope": {"type": "user", "value": writer}}
        world.calendar_as(ALICE).acl().insert(calendarId=TEAM, body=rule).execute()


def test_a_guest_removing_their_copy_leaves_the_conference_to_its_organizer(accounts_world: WorldFactory) -> None:
    world = accounts_world(ALICE, CAROL)
    world.connect(ALICE, CAROL)
    world.attach(CAROL, CAROL, world.new_event(CAROL, CAROL, "Carol's own"))  # her calendar is watched too
    event = world.new_event(ALICE, ALICE)
    conference = world.attach(ALICE, ALICE, event)
    alice = world.calendar_as(ALICE).events()
    alice.patch(calendarId=ALICE, eventId=event["id"], body={"attendees": [{"email": CAROL}]}).execute()
    world.wait_for(lambda: world.conference(conference)["attendees"] == [CAROL], what="the guest invited")

    world.calendar_as(CAROL).events().delete(calendarId=CAROL, eventId=event["id"]).execute()
    world.calendar_as(ALICE).events().patch(calendarId=ALICE, eventId=event["id"], body={"summary": "After"}).execute()

    world.wait_for(lambda: summary_at_vendor(world, conference) == "After", what="the organizer's next change")
    world.settle()
    assert world.conference(conference)["state"] == "active"
    assert vendor_calls(world, "DELETE", conference) == []
    assert world.stack.store.get_link(CAROL, event["id"]) is None, "her copy never owned it"
    patched = lambda: [e["status"] for e in vendor_calls(world, "PATCH", conference)]  # noqa: E731
    world.wait_for(lambda: len(patched()) >= 3, what="the journal to show the rename")  # it lags the answer
    assert patched() == [200, 200, 200], "saved, guest invited, renamed: one call each"

    # Her calendar listed in full (a 410, then a backfill) sweeps only what it owns.
    world.calendar.admin("POST", f"/_sandbox/calendars/{CAROL}/invalidate-sync-tokens")
    changed_at = datetime.now(UTC)
    world.new_event(CAROL, CAROL, "Carol's next")  # her next listing meets the 410 and lists in full

    def listed_since() -> bool:
        state = world.stack.store.get_calendar(CAROL)
        return state is not None and state.last_synced_at is not None and state.last_synced_at > changed_at

    world.wait_for(listed_since, what="her full listing")
    gone = [e for e in world.calendar.journal() if e["status"] == 410 and f"/calendars/{CAROL}/events" in e["path"]]
    assert gone, "her listing met the 410"
    summary = world.stack.backfill().run([CAROL])
    world.settle()
    assert (summary.deletes, summary.reconciled) == (0, 0)
    assert vendor_calls(world, "DELETE", conference) == []
    assert world.conference(conference)["state"] == "active"


def test_a_meeting_moved_to_another_of_its_owners_calendars_keeps_its_conference(
    accounts_world: WorldFactory,
) -> None:
    world = accounts_world(ALICE)
    world.connect(ALICE)
    team_calendar(world)
    event = world.new_event(ALICE, ALICE)
    conference = world.attach(ALICE, ALICE, event)

    world.calendar_as(ALICE).events().move(calendarId=ALICE, eventId=event["id"], destination=TEAM).execute()

    world.wait_for(lambda: link_state(world, TEAM, event["id"]) is LinkState.LIVE, what="the link to follow")
    world.settle()
    assert link_state(world, ALICE, event["id"]) is LinkState.DELETED
    assert world.stack.store.get_calendar(TEAM).subject == ALICE, "read as its owner"
    world.stack.channels.renew(timedelta(0))  # the lag loop's pass: the due watch opens
    assert [c.calendar_id for c in world.stack.store.live_channels(TEAM)] == [TEAM]

    team = world.calendar_as(ALICE).events()
    team.patch(calendarId=TEAM, eventId=event["id"], body={"summary": "Planning, in the team calendar"}).execute()

    world.wait_for(
        lambda: summary_at_vendor(world, conference) == "Planning, in the team calendar", what="a change after the move"
    )
    world.settle()
    assert vendor_calls(world, "DELETE", conference) == []
    assert world.conference(conference)["state"] == "active"
    patched = lambda: [e["status"] for e in vendor_calls(world, "PATCH", conference)]  # noqa: E731
    world.wait_for(lambda: len(patched()) >= 3, what="the journal to show the rename")  # it lags the answer
    assert patched() == [200, 200, 200], "saved, moved (its link in Calendar changed), renamed: one call each"


def shared_team_meeting(accounts_world: WorldFactory) -> tuple[AccountsWorld, dict[str, Any], str]:
    """Alice's meeting, with its conference, in her team calendar, which Bob may edit."""
    world = accounts_world(ALICE, BOB, delete_grace_s=GRACE_S)
    world.connect(ALICE)
    team_calendar(world, BOB)
    event = world.new_event(ALICE, TEAM)
    return world, event, world.attach(ALICE, TEAM, event)


def test_a_meeting_moved_out_of_its_owners_calendars_loses_its_conference_after_the_grace(
    accounts_world: WorldFactory,
) -> None:
    world, event, conference = shared_team_meeting(accounts_world)

    world.calendar_as(BOB).events().move(calendarId=TEAM, eventId=event["id"], destination=BOB).execute()

    world.wait_for(lambda: link_state(world, TEAM, event["id"]) is LinkState.LEAVING, what="the delete deferred")
    assert world.stack.lag_repair().run_once().deferred_released == 0, "not before the grace is over"
    assert world.conference(conference)["state"] == "active"
    time.sleep(GRACE_S)
    assert world.stack.lag_repair().run_once().deferred_released == 1

    world.wait_for(lambda: world.conference(conference)["state"] == "deleted", what="the delete after the grace")
    world.settle()
    assert [e["status"] for e in vendor_calls(world, "DELETE", conference)] == [204]
    assert link_state(world, TEAM, event["id"]) is LinkState.DELETED


def test_a_meeting_back_in_its_owners_calendar_within_the_grace_keeps_its_conference(
    accounts_world: WorldFactory,
) -> None:
    world, event, conference = shared_team_meeting(accounts_world)
    bob = world.calendar_as(BOB).events()

    bob.move(calendarId=TEAM, eventId=event["id"], destination=BOB).execute()
    world.wait_for(lambda: link_state(world, TEAM, event["id"]) is LinkState.LEAVING, what="the delete deferred")
    bob.move(calendarId=BOB, eventId=event["id"], destination=TEAM).execute()
    world.wait_for(lambda: link_state(world, TEAM, event["id"]) is LinkState.LIVE, what="the event seen again")
    time.sleep(GRACE_S)
    assert world.stack.lag_repair().run_once().deferred_released == 1

    world.settle()
    assert vendor_calls(world, "DELETE", conference) == [], "the waiting delete was dropped"
    assert world.conference(conference)["state"] == "active"
    bob.patch(calendarId=TEAM, eventId=event["id"], body={"summary": "Still here"}).execute()
    world.wait_for(lambda: summary_at_vendor(world, conference) == "Still here", what="a change after the return")


def test_an_event_gone_for_good_from_a_calendar_its_owner_still_reads_is_deleted_not_taken_for_lost_access(
    accounts_world: WorldFactory,
) -> None:
    world = accounts_world(ALICE)
    world.connect(ALICE)
    event = world.new_event(ALICE, ALICE)
    conference = world.attach(ALICE, ALICE, event)
    # Calendar's trash emptied: the listing shows the tombstone, events.get answers 404.
    rule = {"method": "GET", "path": f"/events/{event['id']}$", "status": 404, "count": 1}
    world.calendar.admin("POST", "/_sandbox/faults", rule)

    world.calendar_as(ALICE).events().delete(calendarId=ALICE, eventId=event["id"]).execute()

    world.wait_for(lambda: world.conference(conference)["state"] == "deleted", what="the delete")
    assert world.stack.store.get_calendar(ALICE).status.value == "active", "its calendar still reads fine"


def test_a_cancel_whose_calendar_no_longer_answers_is_lost_access_and_deletes_nothing(
    accounts_world: WorldFactory,
) -> None:
    world = accounts_world(ALICE)
    world.connect(ALICE)
    event = world.new_event(ALICE, ALICE)
    conference = world.attach(ALICE, ALICE, event)
    for path in (f"/events/{event['id']}$", f"/calendarList/{ALICE}$"):
        world.calendar.admin("POST", "/_sandbox/faults", {"method": "GET", "path": path, "status": 404, "count": 1})

    world.calendar_as(ALICE).events().delete(calendarId=ALICE, eventId=event["id"]).execute()

    world.wait_for(lambda: world.stack.store.get_calendar(ALICE).status.value == "disconnected", what="disconnected")
    world.settle()
    assert vendor_calls(world, "DELETE", conference) == []
    assert world.conference(conference)["state"] == "active"
