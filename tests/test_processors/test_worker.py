"""The processor against the calendar sandbox (google-api-python-client), a SQLite store and
the in-process transport: full and incremental sync, 410 recovery with a sweep, CAS loss, a
crash before the token is saved, coalescing, gone and disconnected calendars."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests_support import RunningCalendar, addon_link, event_body

from confsync.calendar import GoogleCalendarClient
from confsync.contracts import (
    CalendarChanged,
    CommandKind,
    CommandReason,
    ConferenceCommand,
    EventTime,
    ResourceState,
    Source,
)
from confsync.store import CalendarStatus, Link
from confsync.store.sqlite import SqliteStore
from confsync.transport.memory import MemoryBroker
from processors.pacing import ListingPace
from processors.worker import CalendarWorker

CAL = "alice@example.com"


def ours(conference_id: str, summary: str = "Planning", day: int = 0) -> dict[str, Any]:
    return {
        **event_body(summary, day=day),
        "conferenceData": {
            "conferenceId": conference_id,
            "conferenceSolution": {"key": {"type": "addOn"}, "name": "My Web Conference"},
        },
    }


@dataclass
class Rig:
    calendar: RunningCalendar
    store: SqliteStore
    broker: MemoryBroker
    worker: CalendarWorker
    service: Any

    def insert(self, body: dict[str, Any]) -> dict[str, Any]:
        """Insert an event; one carrying our conference gets the owning link the add-on made for it."""
        result: dict[str, Any] = (
            self.service.events().insert(calendarId=CAL, body=body, conferenceDataVersion=1).execute()
        )
        if "conferenceData" in body:
            addon_link(self.store, CAL, result)
        return result

    def notify(self, at: datetime | None = None) -> None:
        self.worker.handle(CalendarChanged(calendar_id=CAL, source=Source.MANUAL, received_at=at or datetime.now(UTC)))

    def commands(self) -> list[ConferenceCommand]:
        got = []
        for ack_id, message in self.broker.pull("commands-sub", 10_000, 0.05):
            self.broker.ack("commands-sub", ack_id)
            got.append(ConferenceCommand.from_bytes(message.data))
        return got

    def listings(self) -> int:
        return sum(1 for e in self.calendar.journal() if e["method"] == "GET" and e["path"].endswith("/events"))


@pytest.fixture
def rig(calendar_sandbox: RunningCalendar, tmp_path: Path) -> Iterator[Rig]:
    broker = MemoryBroker()
    broker.create_topic("commands")
    broker.create_subscription("commands-sub", "commands")
    store = SqliteStore(tmp_path / "state.sqlite")
    client = GoogleCalendarClient(endpoint=calendar_sandbox.api_endpoint)
    worker = CalendarWorker(store, client, broker, "commands", pace=ListingPace(0, 0))
    yield Rig(calendar_sandbox, store, broker, worker, calendar_sandbox.service())
    client.close()
    store.close()


@pytest.mark.parametrize("page_size", [1, 2500])
def test_first_sync_then_changes_produce_exactly_the_right_commands(rig: Rig, page_size: int) -> None:
    rig.worker.page_size = page_size
    a = rig.insert(ours("cnf_a", "A"))
    b = rig.insert(ours("cnf_b", "B", day=1))
    rig.insert(event_body("not ours", day=2))
    rig.notify()
    first = rig.commands()
    assert sorted((c.conference_id, c.kind) for c in first) == [
        ("cnf_a", CommandKind.UPDATE),
        ("cnf_b", CommandKind.UPDATE),
    ]
    assert rig.store.get_link(CAL, a["id"]).conference_id == "cnf_a"

    rig.notify()
    assert rig.commands() == [], "nothing changed: no command"

    rig.service.events().patch(calendarId=CAL, eventId=a["id"], body={"summary": "A renamed"}).execute()
    rig.service.events().delete(calendarId=CAL, eventId=b["id"]).execute()
    rig.notify()
    changed = {c.conference_id: c for c in rig.commands()}
    assert changed["cnf_a"].kind is CommandKind.UPDATE
    assert changed["cnf_a"].payload.summary == "A renamed"
    assert (changed["cnf_b"].kind, changed["cnf_b"].reason) == (CommandKind.DELETE, CommandReason.CANCELLED)
    assert set(changed) == {"cnf_a", "cnf_b"}


def test_every_published_command_waits_in_the_outbox_and_a_lost_one_is_published_again(rig: Rig) -> None:
    from ingest.lag import LagRepair  # noqa: PLC0415 - the repair that reads the outbox

    rig.worker.republish_after_s = 60
    rig.insert(ours("cnf_a", "A"))
    rig.insert(ours("cnf_b", "B", day=1))
    rig.notify()
    lost = rig.commands()  # pulled and acknowledged, never applied: lost as far as anyone knows
    later = datetime.now(UTC) + timedelta(seconds=61)
    waiting = rig.store.outbox_due(later)
    assert sorted(e.command_id for e in waiting) == sorted(c.command_id for c in lost)
    assert rig.store.outbox_due(datetime.now(UTC)) == [], "not before they are due"
    assert {e.calendar_id for e in waiting} == {c.calendar_id for c in lost}, "each names its calendar (status)"
    assert rig.store.count_outbox(lost[0].calendar_id) == 2

    rig.store.outbox_done([lost[0].command_id])  # a publisher settled this one
    repair = LagRepair(rig.store, rig.broker, "changes", "commands", clock=lambda: later)
    assert repair.run_once().commands_republished == 1
    assert [c.command_id for c in rig.commands()] == [lost[1].command_id], "the same command: same Idempotency-Key"
    assert repair.run_once().commands_republished == 0, "rescheduled, with a longer delay"
    (entry,) = rig.store.outbox_due(later + timedelta(seconds=121))
    assert entry.attempts == 1


def test_a_410_mid_stream_recovers_with_a_full_sync_and_sweeps_vanished_events(rig: Rig) -> None:
    kept = rig.insert(ours("cnf_kept"))
    rig.notify()
    rig.commands()
    # an event whose tombstone is gone by the time we list again: only the sweep can find it
    rig.store.upsert_link(Link(CAL, "vanished0001", "cnf_vanished", "fp", datetime.now(UTC)))
    rig.store.upsert_link(Link(CAL, "fresh00001", "cnf_fresh", None, None))  # not yet seen: must survive
    # the add-on made these for events not saved yet: one a minute ago (the user may still be
    # editing: it must survive), one two days ago (the edit was discarded: an orphan)
    now = datetime.now(UTC)
    editing = Link(CAL, "editing001", "cnf_editing", None, now, created_at=now - timedelta(minutes=1))
    orphan = Link(CAL, "orphan0001", "cnf_orphan", None, now - timedelta(days=2), created_at=now - timedelta(days=2))
    rig.store.upsert_link(editing)
    rig.store.upsert_link(orphan)
    rig.service.events().patch(calendarId=CAL, eventId=kept["id"], body={"summary": "changed in the gap"}).execute()
    rig.calendar.admin("POST", f"/_sandbox/calendars/{CAL}/invalidate-sync-tokens")
    rig.notify()
    commands = {c.conference_id: c for c in rig.commands()}
    assert commands["cnf_kept"].payload.summary == "changed in the gap"
    assert (commands["cnf_vanished"].kind, commands["cnf_vanished"].reason) == (
        CommandKind.DELETE,
        CommandReason.RECONCILED,
    )
    assert "cnf_fresh" not in commands
    assert rig.store.get_link(CAL, "fresh00001").state.value == "live"
    assert "cnf_editing" not in commands, "a conference whose event may still be saved is kept"
    assert rig.store.get_link(CAL, "editing001").state.value == "live"
    assert (commands["cnf_orphan"].kind, commands["cnf_orphan"].event_updated) == (
        CommandKind.DELETE,
        orphan.last_event_updated + timedelta(microseconds=1),
    )
    state = rig.store.get_calendar(CAL)
    rig.notify()
    assert rig.commands() == []
    assert rig.store.get_calendar(CAL).token_version == state.token_version + 1, "the fresh token works"


def test_losing_the_token_race_saves_nothing(rig: Rig) -> None:
    rig.insert(ours("cnf_a"))
    original = rig.worker._handle_events

    def another_worker_finishes_first(commands: Any, calendar_id: str, events: tuple[Any, ...]) -> None:
        original(commands, calendar_id, events)
        rig.store.save_sync_token(CAL, "their-token", expected_version=0, at=datetime.now(UTC))

    rig.worker._handle_events = another_worker_finishes_first  # type: ignore[method-assign]
    rig.notify()
    state = rig.store.get_calendar(CAL)
    assert (state.sync_token, state.token_version) == ("their-token", 1)


def test_a_crash_before_the_token_is_saved_replays_the_same_commands(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    rig.insert(ours("cnf_a"))
    rig.insert(ours("cnf_b", day=1))
    rig.notify()
    rig.commands()
    events = rig.service.events().list(calendarId=CAL).execute()["items"]
    for item in events:
        rig.service.events().patch(calendarId=CAL, eventId=item["id"], body={"summary": "moved"}).execute()

    def crash(*_args: object, **_kwargs: object) -> bool:
        raise RuntimeError("killed between publish and token save")

    links_before = {link.event_id: link for link in rig.store.live_links(CAL)}
    monkeypatch.setattr(rig.store, "save_sync_token", crash)
    monkeypatch.setattr(rig.store, "upsert_link", lambda _link: None)  # died before the links were written too
    monkeypatch.setattr(rig.store, "upsert_links", lambda _links: None)
    with pytest.raises(RuntimeError):
        rig.notify()
    first = sorted(c.command_id for c in rig.commands())
    monkeypatch.undo()
    assert {link.event_id: link for link in rig.store.live_links(CAL)} == links_before
    rig.notify()
    replayed = sorted(c.command_id for c in rig.commands())
    assert replayed == first
    assert len(first) == 2


def test_a_notification_older_than_the_last_sync_costs_no_listing(rig: Rig) -> None:
    rig.insert(ours("cnf_a"))
    rig.notify()
    before = rig.listings()
    rig.notify(at=datetime.now(UTC) - timedelta(minutes=5))
    assert rig.listings() == before
    rig.notify()
    assert rig.listings() == before + 1


def test_a_notification_older_than_this_process_s_last_listing_is_settled_without_a_store_read(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.insert(ours("cnf_a"))
    rig.notify()
    reads: list[str] = []
    read = rig.store.get_calendar
    monkeypatch.setattr(rig.store, "get_calendar", lambda calendar_id: reads.append(calendar_id) or read(calendar_id))
    before = rig.listings()
    rig.notify(at=datetime.now(UTC) - timedelta(minutes=5))
    assert (rig.listings(), reads) == (before, [])
    rig.notify()  # received after that listing began: listed, its calendar read as before
    assert rig.listings() == before + 1
    assert CAL in reads


def test_a_listing_that_did_not_save_its_token_covers_no_notification(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.insert(ours("cnf_a"))
    rig.notify()
    first_listing_done = datetime.now(UTC)
    monkeypatch.setattr(rig.store, "save_sync_token", lambda *_args, **_kwargs: False)  # another process's won
    rig.notify()
    monkeypatch.undo()
    before = rig.listings()
    rig.notify(at=first_listing_done)  # after the saved listing, before the unsaved one: not covered
    assert rig.listings() == before + 1


def test_a_calendar_that_cannot_be_read_is_disconnected_and_none_of_its_conferences_deleted(rig: Rig) -> None:
    rig.store.upsert_link(Link("ghost@example.com", "evt1", "cnf_g1", "fp", datetime.now(UTC)))
    rig.store.upsert_link(Link("ghost@example.com", "evt2", "cnf_g2", "fp", datetime.now(UTC)))
    rig.worker.handle(
        CalendarChanged(calendar_id="ghost@example.com", source=Source.RENEWAL, received_at=datetime.now(UTC))
    )
    assert rig.commands() == []  # lost access is not cancellation
    state = rig.store.get_calendar("ghost@example.com")
    assert state.status is CalendarStatus.DISCONNECTED
    assert "404" in (state.last_error or "")
    assert [link.conference_id for link in rig.store.live_links("ghost@example.com")] == ["cnf_g1", "cnf_g2"]


def test_refused_credentials_disconnect_the_calendar_without_retrying(rig: Rig) -> None:
    from confsync.serving import ServedApp  # noqa: PLC0415
    from sandbox.calendar import create_app  # noqa: PLC0415
    from sandbox.calendar.server import build_sandbox  # noqa: PLC0415

    with ServedApp(create_app(build_sandbox(auth_tokens={"good": CAL}))) as served:
        client = GoogleCalendarClient(endpoint=f"{served.url}/calendar/v3/")
        worker = CalendarWorker(rig.store, client, rig.broker, "commands")
        worker.handle(CalendarChanged(calendar_id=CAL, source=Source.MANUAL, received_at=datetime.now(UTC)))
        client.close()
    state = rig.store.get_calendar(CAL)
    assert state.status is CalendarStatus.DISCONNECTED
    assert "refused" in state.last_error


@pytest.mark.parametrize("status", [403, 404])
def test_a_cancel_calendar_will_not_confirm_is_lost_access_not_a_delete(rig: Rig, status: int) -> None:
    event = rig.insert(ours("cnf_a"))
    rig.notify()
    assert [c.kind for c in rig.commands()] == [CommandKind.UPDATE]
    rig.service.events().delete(calendarId=CAL, eventId=event["id"]).execute()
    path = f"/events/{event['id']}$"
    rig.calendar.admin("POST", "/_sandbox/faults", {"method": "GET", "path": path, "status": status, "count": 1})

    rig.notify()

    assert rig.commands() == [], "nothing deleted"
    state = rig.store.get_calendar(CAL)
    assert state.status is CalendarStatus.DISCONNECTED
    assert str(status) in state.last_error, "the cause is kept"
    assert rig.store.get_link(CAL, event["id"]).state.value == "live", "the owner's reconnect resyncs it"


def test_a_cancel_is_confirmed_with_calendar_before_the_delete(rig: Rig) -> None:
    event = rig.insert(ours("cnf_a"))
    rig.notify()
    rig.commands()
    rig.service.events().delete(calendarId=CAL, eventId=event["id"]).execute()
    rig.notify()
    assert [(c.kind, c.reason) for c in rig.commands()] == [(CommandKind.DELETE, CommandReason.CANCELLED)]
    gets = [e for e in rig.calendar.journal() if e["method"] == "GET" and e["path"].endswith(f"/events/{event['id']}")]
    assert len(gets) == 1, "one events.get confirmed it"


def test_a_cancelled_or_moved_occurrence_reaches_the_series_conference_with_all_its_exceptions(rig: Rig) -> None:
    weekly = {**ours("cnf_w", "Weekly"), "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=5"]}
    series = rig.insert(weekly)
    rig.notify()
    assert [c.payload.exceptions for c in rig.commands()] == [()]
    events = rig.service.events()
    instances = events.instances(calendarId=CAL, eventId=series["id"]).execute()["items"]
    events.delete(calendarId=CAL, eventId=instances[1]["id"]).execute()
    moved = {"start": {"dateTime": "2026-12-16T15:00:00Z"}, "end": {"dateTime": "2026-12-16T16:00:00Z"}}
    events.patch(calendarId=CAL, eventId=instances[2]["id"], body=moved).execute()

    rig.notify()

    (update,) = rig.commands()
    assert (update.kind, update.conference_id) == (CommandKind.UPDATE, "cnf_w")
    assert [(o.status.value, o.original_start.date_time, o.start) for o in update.payload.exceptions] == [
        ("cancelled", instances[1]["originalStartTime"]["dateTime"], None),
        ("moved", instances[2]["originalStartTime"]["dateTime"], EventTime(date_time="2026-12-16T15:00:00Z")),
    ]
    assert update.payload.summary == "Weekly", "the series as it is, with its exceptions"

    events.patch(calendarId=CAL, eventId=series["id"], body={"summary": "Weekly, renamed"}).execute()
    events.patch(
        calendarId=CAL, eventId=instances[2]["id"], body={"start": instances[2]["start"], "end": instances[2]["end"]}
    ).execute()
    rig.notify()
    (both,) = rig.commands()
    assert both.payload.summary == "Weekly, renamed"
    assert [o.status.value for o in both.payload.exceptions] == ["cancelled"], "moved back: no longer an exception"
    rig.notify()
    assert rig.commands() == [], "nothing changed since"


def test_a_permanent_error_marks_the_calendar_failed_until_a_backfill_lists_it_again(rig: Rig) -> None:
    from ingest.lag import LagRepair  # noqa: PLC0415 - the repair that would re-announce it
    from processors.backfill import Backfill  # noqa: PLC0415 - the operator's way back

    rig.insert(ours("cnf_a"))
    notified = datetime.now(UTC)
    rig.store.record_notification(CAL, "ch-1", 1, notified)
    rig.calendar.admin("POST", "/_sandbox/faults", {"method": "GET", "path": "/events$", "status": 400, "count": 1})
    rig.worker.handle(CalendarChanged(calendar_id=CAL, source=Source.REPAIR, received_at=notified))
    state = rig.store.get_calendar(CAL)
    assert state.status is CalendarStatus.FAILED
    assert "400" in state.last_error, "an operator can see why"
    assert rig.commands() == []

    rig.broker.create_topic("changes")
    repair = LagRepair(rig.store, rig.broker, "changes", clock=lambda: notified + timedelta(minutes=5))
    assert repair.run_once().lagging == 0, "no longer re-announced every minute"
    listings = rig.listings()
    rig.notify()
    assert rig.listings() == listings, "nor listed for each notification"

    Backfill(rig.store, rig.worker.calendar, rig.broker, "commands").run([CAL])
    state = rig.store.get_calendar(CAL)
    assert (state.status, state.last_error) == (CalendarStatus.ACTIVE, None)
    assert [c.conference_id for c in rig.commands()] == ["cnf_a"]


def test_a_burst_of_200_notifications_costs_at_most_3_listings(rig: Rig) -> None:
    """Through the in-process transport, ordered by calendar as in production."""
    import time  # noqa: PLC0415

    from tests_support.transport import wait_until  # noqa: PLC0415

    from confsync.transport.base import DeadLetter  # noqa: PLC0415
    from confsync.transport.memory import MemoryWorker  # noqa: PLC0415

    rig.worker.pace = ListingPace()  # the production default
    rig.insert(ours("cnf_a"))
    rig.broker.create_topic("changes")
    rig.broker.create_topic("changes-dead")
    rig.broker.create_subscription("changes-sub", "changes")
    handled: list[int] = []

    def count_and_handle(message: Any) -> None:
        rig.worker(message)
        handled.append(1)

    worker = MemoryWorker(
        rig.broker, "changes-sub", count_and_handle, dead_letter=DeadLetter(rig.broker, "changes-dead", "changes-sub")
    ).start()
    before = rig.listings()
    try:
        started = time.monotonic()
        for number in range(200):
            change = CalendarChanged(
                calendar_id=CAL,
                source=Source.PUSH,
                received_at=datetime.now(UTC),
                channel_id="ch",
                resource_state=ResourceState.EXISTS,
                message_number=number,
            )
            rig.broker.publish("changes", change.to_bytes(), ordering_key=CAL)
            time.sleep(max(0.0, started + number / 200 - time.monotonic()))  # spread over one second
        wait_until(lambda: len(handled) == 200, what="all 200 notifications handled")
    finally:
        worker.stop(5)
    assert rig.listings() - before <= 3


@pytest.mark.parametrize(("per_s", "most"), [(25, 0.05), (5, 1 / 2)])
def test_the_listing_pace_follows_the_rate_a_storm_at_most_one_listing_in_20(rig: Rig, per_s: int, most: float) -> None:
    """16 s of notifications, on a clock the worker's waits move: at 25 a second a listing covers
    20 or more of them; at 5 a second the calendar is listed every half second, as always."""
    now = [datetime.now(UTC)]
    rig.worker.pace = ListingPace()  # the production default
    rig.worker.clock = lambda: now[0]
    rig.worker.sleep = lambda seconds: now.__setitem__(0, now[0] + timedelta(seconds=seconds))
    rig.insert(ours("cnf_a"))
    rig.notify(now[0])
    before, start, count = rig.listings(), now[0], 16 * per_s
    for n in range(count):
        at = start + timedelta(seconds=1 + n / per_s)
        now[0] = max(now[0], at)
        rig.worker.handle(CalendarChanged(calendar_id=CAL, source=Source.MANUAL, received_at=at))
    listings = rig.listings() - before
    assert listings <= count * most
    assert listings >= count * most / 2, "and no fewer than the pace allows"


def test_notifications_of_one_calendar_handled_side_by_side_list_once_and_publish_once(rig: Rig) -> None:
    """An unordered subscription (the emulator) hands one calendar's notifications to several
    threads at once: they take turns, and the later ones find the calendar already synced."""
    import threading  # noqa: PLC0415

    rig.insert(ours("cnf_a"))
    rig.insert(ours("cnf_b", day=1))
    arrived = datetime.now(UTC)
    before = rig.listings()
    threads = [
        threading.Thread(
            target=rig.worker.handle,
            args=(CalendarChanged(calendar_id=CAL, source=Source.MANUAL, received_at=arrived),),
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert rig.listings() - before == 1
    assert sorted(c.conference_id for c in rig.commands()) == ["cnf_a", "cnf_b"], "each command published once"


def test_links_expire_retain_days_after_their_event_ends_or_after_their_delete(rig: Rig) -> None:
    from confsync.retention import Retention  # noqa: PLC0415

    made = datetime(2026, 11, 20, tzinfo=UTC)
    rig.worker.retention, rig.worker.clock = Retention(timedelta(days=90)), lambda: made
    kept = rig.insert(ours("cnf_a", "A", day=27))  # ends 2026-12-28 10:00 UTC
    gone = rig.insert(ours("cnf_b", "B", day=1))
    rig.notify()
    assert len(rig.commands()) == 2
    assert rig.store.get_link(CAL, kept["id"]).expires_at == datetime(2026, 12, 28, 10, tzinfo=UTC) + timedelta(days=90)  # type: ignore[union-attr]
    rig.service.events().delete(calendarId=CAL, eventId=gone["id"]).execute()
    rig.notify()
    assert [c.kind for c in rig.commands()] == [CommandKind.DELETE]
    assert rig.store.get_link(CAL, gone["id"]).expires_at == made + timedelta(days=90)  # type: ignore[union-attr]


def test_an_event_whose_link_expired_makes_no_link_and_no_command_when_edited(rig: Rig) -> None:
    from confsync.retention import Retention  # noqa: PLC0415

    rig.worker.retention = Retention(timedelta(days=90))
    old = rig.insert(ours("cnf_a", "A"))
    rig.notify()
    assert len(rig.commands()) == 1
    rig.store.purge_expired(datetime.now(UTC) + timedelta(days=91))  # the event ended more than 90 days before
    rig.service.events().patch(calendarId=CAL, eventId=old["id"], body={"summary": "A, minutes added"}).execute()
    rig.notify()
    assert rig.commands() == []
    assert rig.store.get_link(CAL, old["id"]) is None, "nothing re-created"
