"""classify(): every row of its decision table (docs/ARCHITECTURE.md), and properties over any event shape."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests_support import meeting

from confsync.calendar import parse_event
from confsync.contracts import CommandReason, ConferencePayload, EventTime, Occurrence, OccurrenceStatus
from confsync.ports import CalendarEvent, EventConference
from confsync.store import Link, LinkState
from processors.classify import (
    A_COPY,
    COPIED,
    DEFAULT_SOLUTION_NAMES,
    NOT_LINKED,
    Delete,
    Elsewhere,
    Fold,
    Follow,
    Skip,
    Update,
    classify,
    delete_version,
    payload_of,
    sweepable,
)

T = datetime(2026, 11, 24, 10, tzinfo=UTC)
OURS = EventConference("cnf_1", "addOn", "My Web Conference")


def event(**changes: object) -> CalendarEvent:
    unsorted = ("bob@example.com", "alice@example.com")  # as Calendar may list them; payloads sort them
    base = CalendarEvent(
        id="evt1", status="confirmed", updated=T, conference=OURS, **meeting("Planning", attendees=unsorted)
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def linked(ev: CalendarEvent | None = None, **changes: object) -> Link:
    payload = payload_of(ev or event())
    assert payload is not None
    values: dict[str, object] = {
        "calendar_id": "alice@example.com",
        "event_id": "evt1",
        "conference_id": "cnf_1",
        "last_fingerprint": payload.fingerprint(),
        "last_event_updated": T,
    }
    values.update(changes)
    return Link(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ev", "link", "kind", "reason"),
    [
        (event(summary="Renamed"), linked(), Update, CommandReason.CHANGED),
        (
            event(start=EventTime(date_time="2026-12-02T10:00:00+01:00", time_zone="Europe/Warsaw")),
            linked(),
            Update,
            CommandReason.CHANGED,
        ),
        (event(attendees=("carol@example.com",)), linked(), Update, CommandReason.CHANGED),
        (event(), None, Skip, None),
        (event(), linked(), Skip, None),
        (event(attendees=("alice@example.com", "bob@example.com")), linked(), Skip, None),
        (event(status="tentative"), linked(), Skip, None),
        (
            event(status="cancelled", summary=None, start=None, end=None, conference=None),
            linked(),
            Delete,
            CommandReason.CANCELLED,
        ),
        (event(status="cancelled", conference=None), None, Skip, None),
        (event(id="evt1_20261208T090000Z", status="cancelled", recurring_event_id="evt1"), None, Skip, None),
        (event(conference=None), linked(), Delete, CommandReason.CONFERENCE_REMOVED),
        (event(conference=None), linked(last_fingerprint=None, last_event_updated=T), Skip, None),
        (
            event(conference=None, updated=T + timedelta(seconds=1)),
            linked(last_fingerprint=None, last_event_updated=T),
            Delete,
            CommandReason.CONFERENCE_REMOVED,
        ),
        (
            event(conference=None),
            linked(last_fingerprint=None, last_event_updated=None),
            Delete,
            CommandReason.CONFERENCE_REMOVED,
        ),
        (
            event(conference=EventConference("abc-defg-hij", "hangoutsMeet", "Google Meet")),
            linked(),
            Delete,
            CommandReason.CONFERENCE_REMOVED,
        ),
        (event(conference=EventConference("zoom-1", "addOn", "Another Vendor")), None, Skip, None),
        (event(conference=None), None, Skip, None),
        (event(id="evt1_20261208T090000Z", recurring_event_id="evt1", summary="moved"), None, Skip, None),
        (event(summary="Renamed"), linked(state=LinkState.DELETED), Skip, None),
        (event(summary="Renamed"), linked(state=LinkState.LEAVING), Update, CommandReason.CHANGED),
        (event(), linked(state=LinkState.LEAVING), Skip, None),
        (event(status="cancelled"), linked(state=LinkState.LEAVING), Skip, None),
        (event(conference=EventConference("cnf_1", "addOn", "Renamed Solution")), linked(), Skip, None),
    ],
    ids=[
        "renamed",
        "moved",
        "guests changed",
        "ours, not linked here nor anywhere",
        "unchanged",
        "attendees reordered only",
        "status tentative, same payload",
        "cancelled with link",
        "cancelled, never ours",
        "cancelled instance without its original start",
        "conference removed",
        "add-on's conference not saved on the event yet",
        "removed after the add-on saw the event",
        "removed from an event the add-on saw as new",
        "switched to Meet",
        "another vendor's add-on",
        "plain event",
        "live instance without its original start",
        "deleted link is no link: nothing speaks for it",
        "leaving link, event seen again changed",
        "leaving link, event seen again unchanged",
        "cancelled again while leaving",
        "link's conference id makes it ours",
    ],
)
def test_the_decision_table(
    ev: CalendarEvent, link: Link | None, kind: type[Skip | Update | Delete], reason: CommandReason | None
) -> None:
    decision = classify(ev, link)
    assert type(decision) is kind, decision.why
    assert (None if isinstance(decision, Skip) else decision.reason) is reason


def test_an_update_carries_the_payload_its_fingerprint_and_the_version() -> None:
    decision = classify(event(summary="Renamed"), linked())
    assert isinstance(decision, Update)
    assert decision.conference_id == "cnf_1"
    assert decision.payload.summary == "Renamed"
    assert decision.payload.attendees == ("alice@example.com", "bob@example.com")
    assert decision.fingerprint == decision.payload.fingerprint()
    assert decision.event_updated == T


def test_all_day_events_and_time_zones_are_carried_through_unchanged() -> None:
    all_day = event(start=EventTime(date="2026-12-24"), end=EventTime(date="2026-12-25"))
    decision = classify(all_day, linked())
    assert isinstance(decision, Update)
    assert decision.payload.start == EventTime(date="2026-12-24")
    zoned = classify(event(summary="x"), linked())
    assert isinstance(zoned, Update)
    assert zoned.payload.start == EventTime(date_time="2026-12-01T10:00:00+01:00", time_zone="Europe/Warsaw")


def test_a_delete_names_the_linked_conference_even_without_event_data() -> None:
    tombstone = CalendarEvent(id="evt1", status="cancelled")
    decision = classify(tombstone, linked())
    assert isinstance(decision, Delete)
    assert decision.conference_id == "cnf_1"
    assert decision.fingerprint == linked().last_fingerprint
    link = linked()
    assert link.last_event_updated is not None
    assert decision.event_updated == link.last_event_updated + timedelta(microseconds=1), (
        "a tombstone without 'updated': just after the last version sent, so it is not stale"
    )
    assert classify(tombstone, linked()) == decision, "the same version for every copy: publishers see duplicates"
    removed = classify(event(conference=None, updated=None), linked())
    assert isinstance(removed, Delete)
    assert removed.event_updated == decision.event_updated


def test_configured_solution_names_decide_what_is_ours() -> None:
    mine = event(conference=EventConference("cnf_9", "addOn", "Acme Meet"))
    assert classify(mine, None) == Skip("not our conference")
    assert classify(mine, None, frozenset({"Acme Meet"})) == Skip(NOT_LINKED, conference_id="cnf_9")
    assert classify(mine, linked(conference_id="cnf_9"), frozenset({"Acme Meet"})) == Skip(
        "unchanged", conference_id="cnf_9", fingerprint=linked().last_fingerprint
    )


@pytest.mark.parametrize("names", [DEFAULT_SOLUTION_NAMES, frozenset({"Acme Meet", "My Web Conference"})])
def test_another_of_our_conferences_copied_onto_a_linked_event_removes_the_linked_one_and_touches_not_the_other(
    names: frozenset[str],
) -> None:
    copied = event(conference=EventConference("cnf_9", "addOn", "Acme Meet"))
    decision = classify(copied, linked(), names)
    assert isinstance(decision, Delete)
    assert (decision.conference_id, decision.reason) == ("cnf_1", CommandReason.CONFERENCE_REMOVED)


ALICE_OWNS = linked(calendar_id="alice@example.com")


@pytest.mark.parametrize(
    ("ev", "elsewhere", "expected", "why"),
    [
        (
            event(id="evt9", organizer="mallory@example.com"),
            Elsewhere(ALICE_OWNS, organized_here=True, same_owner=False),
            Skip(COPIED, conference_id="cnf_1"),
            "another event id carrying the conference copied its conferenceData",
        ),
        (
            event(organizer="alice@example.com"),
            Elsewhere(ALICE_OWNS, organized_here=False, same_owner=False),
            Skip(A_COPY, conference_id="cnf_1"),
            "a guest's copy of the meeting",
        ),
        (
            event(status="cancelled", organizer="alice@example.com"),
            Elsewhere(ALICE_OWNS, organized_here=False, same_owner=False),
            Skip(A_COPY, conference_id="cnf_1"),
            "a guest removed their copy",
        ),
        (
            event(organizer="alice@example.com"),
            Elsewhere(ALICE_OWNS, organized_here=False, same_owner=True),
            Skip(A_COPY, conference_id="cnf_1"),
            "the owner's other calendar invited as a guest: still a copy",
        ),
        (
            event(organizer="team@example.com"),
            Elsewhere(ALICE_OWNS, organized_here=True, same_owner=False),
            Skip("moved out of its owner's calendars", conference_id="cnf_1"),
            "moved to a calendar someone else owns",
        ),
    ],
)
def test_only_the_owning_link_speaks_for_a_conference(
    ev: CalendarEvent, elsewhere: Elsewhere, expected: Skip, why: str
) -> None:
    assert classify(ev, None, elsewhere=elsewhere) == expected, why


def test_an_event_moved_to_another_of_its_owners_calendars_is_followed() -> None:
    moved = event(organizer="team@example.com", summary="Planning (team)")
    decision = classify(moved, None, elsewhere=Elsewhere(ALICE_OWNS, organized_here=True, same_owner=True))
    assert isinstance(decision, Follow)
    assert (decision.source, decision.conference_id) == (ALICE_OWNS, "cnf_1")
    assert decision.payload.summary == "Planning (team)"
    assert decision.fingerprint == decision.payload.fingerprint()
    assert decision.event_updated == moved.updated


def test_a_link_here_outranks_the_conference_linked_elsewhere() -> None:
    """A (calendar, event) with its own link is classified by it, whatever else shows the conference."""
    here = linked(calendar_id="team@example.com")
    decision = classify(
        event(summary="Renamed"), here, elsewhere=Elsewhere(ALICE_OWNS, organized_here=False, same_owner=True)
    )
    assert isinstance(decision, Update)


# -- properties -------------------------------------------------------------------------------------

texts = st.none() | st.text(max_size=20)
times = (
    st.none()
    | st.fixed_dictionaries({"dateTime": st.sampled_from(["2026-12-01T10:00:00Z", "garbage", "2026-12-01T10:00:00"])})
    | st.fixed_dictionaries({"date": st.sampled_from(["2026-12-24", "24/12"])})
)
raw_events = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=10)},
    optional={
        "status": st.sampled_from(["confirmed", "tentative", "cancelled", "weird"]),
        "updated": st.sampled_from(["2026-11-24T10:00:00.000Z", "not a time"]),
        "summary": texts,
        "start": times,
        "end": times,
        "attendees": st.lists(st.fixed_dictionaries({}, optional={"email": st.emails()}), max_size=3),
        "recurringEventId": texts,
        "conferenceData": st.fixed_dictionaries(
            {},
            optional={
                "conferenceId": texts,
                "conferenceSolution": st.fixed_dictionaries(
                    {},
                    optional={
                        "key": st.fixed_dictionaries({}, optional={"type": st.sampled_from(["addOn", "hangoutsMeet"])}),
                        "name": st.sampled_from(["My Web Conference", "Google Meet", "x"]),
                    },
                ),
            },
        ),
    },
)
links = st.none() | st.builds(
    Link,
    calendar_id=st.just("alice@example.com"),
    event_id=st.just("evt1"),
    conference_id=st.sampled_from(["cnf_1", "other"]),
    last_fingerprint=st.none() | st.text(max_size=8),
    state=st.sampled_from(list(LinkState)),
)


@settings(max_examples=400)
@given(raw_events, links)
def test_classify_never_raises_and_is_deterministic(raw: dict[str, object], link: Link | None) -> None:
    ev = parse_event(raw)
    first, second = classify(ev, link), classify(ev, link)
    assert first == second
    if not isinstance(first, Skip):
        assert first.conference_id
        assert first.fingerprint
    if isinstance(first, Update):
        assert first.payload is not None


DAY = 86400.0


@pytest.mark.parametrize(
    ("link", "sweep", "why"),
    [
        (linked(), True, "confirmed: a listing showed our conference on it"),
        (linked(last_fingerprint=None, created_at=T - timedelta(hours=1)), False, "the user may still be editing"),
        (linked(last_fingerprint=None, created_at=T - timedelta(days=2)), True, "an orphan"),
        (linked(last_fingerprint=None, last_event_updated=T - timedelta(days=2)), True, "older link: aged by version"),
        (linked(last_fingerprint=None, last_event_updated=T - timedelta(hours=1)), False, "older link, young"),
        (linked(last_fingerprint=None, last_event_updated=None), False, "no age known: never"),
    ],
)
def test_a_full_listing_sweeps_confirmed_links_and_only_old_unconfirmed_ones(link: Link, sweep: bool, why: str) -> None:
    assert sweepable(link, T - timedelta(seconds=DAY)) is sweep, why


def test_an_orphan_whose_event_never_existed_is_deleted_at_the_version_of_its_birth() -> None:
    orphan = linked(last_fingerprint=None, last_event_updated=None, created_at=T - timedelta(days=2))
    assert delete_version(None, orphan) == T - timedelta(days=2), "every sweep's copy carries the same version"


def test_an_event_the_user_never_saved_with_our_conference_orphans_it_only_after_the_grace() -> None:
    """The add-on added our conference to an existing event, then the user discarded the edit:
    the event keeps its old version and never shows the conference."""
    before_edit = event(conference=None, updated=T - timedelta(days=3))
    link = linked(last_fingerprint=None, last_event_updated=T - timedelta(days=3), created_at=T - timedelta(days=2))
    assert isinstance(classify(before_edit, link), Skip), "no grace given: wait"
    assert isinstance(classify(before_edit, link, orphaned_before=T - timedelta(days=3)), Skip), "young"
    decision = classify(before_edit, link, orphaned_before=T - timedelta(days=1))
    assert isinstance(decision, Delete)
    assert (decision.reason, decision.conference_id, decision.orphan) == (CommandReason.RECONCILED, "cnf_1", True)
    assert decision.event_updated == before_edit.updated
    confirmed = classify(event(conference=None, updated=T + timedelta(hours=1)), linked())
    assert isinstance(confirmed, Delete)
    assert confirmed.reason is CommandReason.CONFERENCE_REMOVED, "a confirmed link's removal is unchanged"
    assert not confirmed.orphan


# -- a series' exceptions ---------------------------------------------------------------------

SERIES = event(recurrence=("RRULE:FREQ=WEEKLY;COUNT=5",))
ORIGINAL = EventTime(date_time="2026-12-08T09:00:00Z")


def occurrence(**changes: object) -> CalendarEvent:
    base = event(
        id="evt1_20261208T090000Z",
        recurring_event_id="evt1",
        original_start_time=ORIGINAL,
        start=EventTime(date_time="2026-12-08T10:00:00+01:00", time_zone="Europe/Warsaw"),
        end=EventTime(date_time="2026-12-08T11:00:00+01:00", time_zone="Europe/Warsaw"),
        updated=T + timedelta(minutes=5),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ev", "expected", "why"),
    [
        (
            occurrence(status="cancelled", summary=None, start=None, end=None, conference=None),
            Occurrence(ORIGINAL, OccurrenceStatus.CANCELLED),
            "a cancelled occurrence (its tombstone carries little)",
        ),
        (
            occurrence(
                start=EventTime(date_time="2026-12-09T09:00:00Z"), end=EventTime(date_time="2026-12-09T10:00:00Z")
            ),
            Occurrence(
                ORIGINAL,
                OccurrenceStatus.MOVED,
                EventTime(date_time="2026-12-09T09:00:00Z"),
                EventTime(date_time="2026-12-09T10:00:00Z"),
            ),
            "moved to another day",
        ),
        (occurrence(summary="Renamed"), None, "in its place (the same moment, written in another zone)"),
    ],
)
def test_an_occurrence_without_a_conference_of_its_own_folds_into_its_series(
    ev: CalendarEvent, expected: Occurrence | None, why: str
) -> None:
    decision = classify(ev, None)
    assert isinstance(decision, Fold), why
    assert (decision.series_id, decision.key, decision.occurrence) == ("evt1", "2026-12-08T09:00:00Z", expected), why
    assert decision.event_updated == ev.updated


def test_a_series_payload_carries_the_exceptions_its_link_holds() -> None:
    cancelled = (Occurrence(ORIGINAL, OccurrenceStatus.CANCELLED),)
    payload = payload_of(SERIES, cancelled)
    assert payload is not None
    link = linked(SERIES, exceptions=cancelled, last_fingerprint=payload.fingerprint())
    assert classify(SERIES, link) == Skip("unchanged", conference_id="cnf_1", fingerprint=payload.fingerprint())
    renamed = classify(replace(SERIES, summary="Weekly"), link)
    assert isinstance(renamed, Update)
    assert renamed.payload.exceptions == cancelled, "a change of the series keeps its exceptions"


def test_a_payload_without_exceptions_keeps_its_fingerprint_and_still_tells_the_service_there_are_none() -> None:
    weekly = ConferencePayload(
        start=EventTime(date_time="2026-12-01T10:00:00Z"),
        end=EventTime(date_time="2026-12-01T11:00:00Z"),
        summary="Weekly",
        recurrence=("RRULE:FREQ=WEEKLY;COUNT=5",),
    )
    assert weekly.fingerprint() == "f28bb8d08388f93fc993b0403a9e2768", "as before exceptions existed: no resend"
    assert weekly.to_json()["exceptions"] == [], "the last exception removed reaches the service"
    cancelled = replace(weekly, exceptions=(Occurrence(ORIGINAL, OccurrenceStatus.CANCELLED),))
    assert cancelled.fingerprint() != weekly.fingerprint()


def test_an_occurrence_of_a_series_linked_in_another_calendar_is_a_copy() -> None:
    guest_copy = occurrence(organizer="alice@example.com")
    decision = classify(guest_copy, None, elsewhere=Elsewhere(ALICE_OWNS, organized_here=False, same_owner=False))
    assert decision == Skip(A_COPY, conference_id="cnf_1"), "not a copied conferenceData: Google shares the series' id"
