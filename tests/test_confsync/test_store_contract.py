"""One contract for every Store: the same tests on SQLite and on Firestore (its emulator)."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from confsync.contracts import EventTime, Occurrence, OccurrenceStatus
from confsync.errors import ConfigError
from confsync.ports import Store
from confsync.settings import Secret
from confsync.store import (
    AppliedVersion,
    BackfillClaim,
    BackfillEntry,
    BackfillJob,
    BackfillProgress,
    BackfillState,
    CalendarStatus,
    ChannelRecord,
    ChannelState,
    ConnectFlow,
    FlowStage,
    Grant,
    GrantStatus,
    HeldCommand,
    Link,
    LinkState,
    OAuthProvider,
    OutboxEntry,
    User,
    UserStatus,
    open_store,
)
from confsync.store.sqlite import SqliteStore

T0 = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
CAL = "alice@example.com"


@pytest.fixture(params=["sqlite", "firestore"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        backend: Store = SqliteStore(tmp_path / "state.sqlite")
    else:
        request.getfixturevalue("firestore_emulator_host")
        from google.cloud import firestore  # noqa: PLC0415 - only with the emulator up

        from confsync.store.firestore import FirestoreStore  # noqa: PLC0415

        backend = FirestoreStore(firestore.Client(project="confsync-test"), prefix=f"t{uuid.uuid4().hex[:8]}_")
    yield backend
    backend.close()


# -- calendars ------------------------------------------------------------------------------------


def test_an_unknown_calendar_has_no_state(store: Store) -> None:
    assert store.get_calendar(CAL) is None


def test_ensure_creates_once_and_keeps_what_it_finds(store: Store) -> None:
    created = store.ensure_calendar(CAL, subject="alice@example.com")
    assert (created.token_version, created.sync_token, created.status) == (0, None, CalendarStatus.ACTIVE)
    assert store.save_sync_token(CAL, "tok-1", expected_version=0, at=T0)
    again = store.ensure_calendar(CAL)
    assert again.sync_token == "tok-1"
    assert again.subject == "alice@example.com"


def test_the_first_claim_of_a_calendar_holds_and_is_never_replaced(store: Store) -> None:
    assert store.claim_calendar(CAL, "alice@example.com").subject == "alice@example.com"
    assert store.claim_calendar(CAL, "mallory@example.com").subject == "alice@example.com", "refused: kept"
    assert store.get_calendar(CAL).subject == "alice@example.com"  # type: ignore[union-attr]
    store.ensure_calendar("bob@example.com")  # known (a watch, a listing) but owned by nobody yet
    assert store.save_sync_token("bob@example.com", "tok-1", expected_version=0, at=T0)
    claimed = store.claim_calendar("bob@example.com", "bob@example.com")
    assert (claimed.subject, claimed.sync_token) == ("bob@example.com", "tok-1")


def test_racing_claims_of_one_calendar_have_one_winner(store: Store) -> None:
    start = threading.Barrier(4)
    seen: list[str | None] = []

    def contend(user: str) -> None:
        start.wait()
        seen.append(store.claim_calendar("race@example.com", user).subject)

    threads = [threading.Thread(target=contend, args=(f"u{n}@example.com",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    owner = store.get_calendar("race@example.com").subject  # type: ignore[union-attr]
    assert seen == [owner] * 4, "every claimant is told the one owner that stands"


def test_a_token_is_saved_only_against_the_version_read(store: Store) -> None:
    store.ensure_calendar(CAL)
    assert store.save_sync_token(CAL, "tok-1", expected_version=0, at=T0)
    assert not store.save_sync_token(CAL, "tok-stale", expected_version=0, at=T0)
    assert store.save_sync_token(CAL, "tok-2", expected_version=1, at=T0 + timedelta(seconds=1))
    state = store.get_calendar(CAL)
    assert state is not None
    assert (state.sync_token, state.token_version, state.last_synced_at) == ("tok-2", 2, T0 + timedelta(seconds=1))


def test_the_first_token_of_a_calendar_never_seen_needs_version_0(store: Store) -> None:
    assert not store.save_sync_token("new@example.com", "tok", expected_version=3, at=T0)
    assert store.save_sync_token("new@example.com", "tok", expected_version=0, at=T0)


def test_clearing_the_token_is_a_versioned_write_too(store: Store) -> None:
    store.save_sync_token(CAL, "tok-1", expected_version=0, at=T0)
    assert store.save_sync_token(CAL, None, expected_version=1, at=T0)
    state = store.get_calendar(CAL)
    assert state is not None
    assert (state.sync_token, state.token_version) == (None, 2)


def test_a_notification_is_new_once_per_channel_and_number(store: Store) -> None:
    assert store.record_notification(CAL, "ch-1", 1, T0)
    assert store.record_notification(CAL, "ch-1", 3, T0 + timedelta(seconds=1))
    assert not store.record_notification(CAL, "ch-1", 3, T0 + timedelta(seconds=2)), "a duplicate"
    assert not store.record_notification(CAL, "ch-1", 2, T0 + timedelta(seconds=3)), "an older one"
    assert store.record_notification(CAL, "ch-2", 1, T0 + timedelta(seconds=4)), "a renewed channel restarts at 1"
    state = store.get_calendar(CAL)
    assert state is not None
    assert (state.last_channel_id, state.last_message_number, state.last_notified_at) == (
        "ch-2",
        1,
        T0 + timedelta(seconds=4),
    )


def test_every_notification_counts_for_lag_repair_whatever_its_number(store: Store) -> None:
    """A number is only a hint (anyone holding a channel's token can send one): a lower one
    still moves the arrival time lag repair watches, and that time never goes back."""
    assert store.record_notification(CAL, "ch-1", 10**17, T0)
    assert store.save_sync_token(CAL, "tok-1", expected_version=0, at=T0 + timedelta(seconds=1))
    assert not store.record_notification(CAL, "ch-1", 2, T0 + timedelta(seconds=2))
    assert [c.calendar_id for c in store.lagging_calendars(T0 + timedelta(seconds=10))] == [CAL]
    assert not store.record_notification(CAL, "ch-1", 3, T0 + timedelta(seconds=1)), "recorded out of order"
    state = store.get_calendar(CAL)
    assert state is not None
    assert state.last_notified_at == T0 + timedelta(seconds=2)


def test_a_calendar_no_listing_covered_for_a_while_is_quiet_longest_first(store: Store) -> None:
    for calendar_id, began in (("bob@example.com", T0), (CAL, T0 + timedelta(hours=1))):
        store.ensure_calendar(calendar_id)
        assert store.save_sync_token(calendar_id, "tok", expected_version=0, at=began)
    store.ensure_calendar("carol@example.com")  # never listed: first, a first listing is overdue
    store.ensure_calendar("dave@example.com")
    assert store.save_sync_token("dave@example.com", "tok", expected_version=0, at=T0)
    store.set_calendar_status("dave@example.com", CalendarStatus.DISCONNECTED, "revoked")
    cutoff = T0 + timedelta(hours=6)
    quiet = [c.calendar_id for c in store.quiet_calendars(cutoff)]
    assert quiet == ["carol@example.com", "bob@example.com", CAL], "active ones, never listed, then oldest first"
    assert [c.calendar_id for c in store.quiet_calendars(cutoff, limit=2)] == ["carol@example.com", "bob@example.com"]
    assert [c.calendar_id for c in store.quiet_calendars(T0 + timedelta(minutes=30))] == [
        "carol@example.com",
        "bob@example.com",
    ]
    assert store.save_sync_token("bob@example.com", "tok-2", expected_version=1, at=cutoff)
    assert store.save_sync_token("carol@example.com", "tok", expected_version=0, at=cutoff)
    assert [c.calendar_id for c in store.quiet_calendars(cutoff)] == [CAL], "listed since"


def test_a_notification_no_sync_covered_is_lagging_until_a_listing_begins_after_it(store: Store) -> None:
    store.ensure_calendar(CAL)
    assert store.save_sync_token(CAL, "tok-1", expected_version=0, at=T0)
    store.record_notification(CAL, "ch-1", 1, T0 + timedelta(seconds=1))  # after the listing began
    store.record_notification("bob@example.com", "ch-2", 1, T0)  # never synced at all
    store.record_notification("carol@example.com", "ch-3", 1, T0 + timedelta(seconds=30))  # too recent to tell
    store.ensure_calendar("dave@example.com")
    assert store.save_sync_token("dave@example.com", "tok", expected_version=0, at=T0)  # notified never
    cutoff = T0 + timedelta(seconds=10)
    assert [c.calendar_id for c in store.lagging_calendars(cutoff)] == ["bob@example.com", CAL], "oldest first"
    assert [c.calendar_id for c in store.lagging_calendars(cutoff, limit=1)] == ["bob@example.com"]

    assert store.save_sync_token(CAL, "tok-2", expected_version=1, at=T0 + timedelta(seconds=1)), "began with it"
    assert [c.calendar_id for c in store.lagging_calendars(cutoff)] == ["bob@example.com", CAL], "not after it"
    assert store.save_sync_token(CAL, "tok-3", expected_version=2, at=T0 + timedelta(seconds=2))
    store.set_calendar_status("bob@example.com", CalendarStatus.GONE, "404 from watch")
    assert store.lagging_calendars(cutoff) == [], "covered by a later listing; a gone calendar is not waited for"


def test_status_changes_are_kept_with_their_reason(store: Store) -> None:
    store.ensure_calendar(CAL)
    store.ensure_calendar("bob@example.com")
    store.set_calendar_status(CAL, CalendarStatus.DISCONNECTED, "401 from Google: token revoked")
    state = store.get_calendar(CAL)
    assert state is not None
    assert (state.status, state.last_error) == (CalendarStatus.DISCONNECTED, "401 from Google: token revoked")
    assert [c.calendar_id for c in store.list_calendars(CalendarStatus.DISCONNECTED)] == [CAL]
    assert [c.calendar_id for c in store.list_calendars()] == [CAL, "bob@example.com"]


def test_calendars_are_counted_by_status(store: Store) -> None:
    for calendar_id in (CAL, "bob@example.com", "carol@example.com"):
        store.ensure_calendar(calendar_id)
    store.set_calendar_status("bob@example.com", CalendarStatus.DISCONNECTED, "invalid_grant")
    counts = {status: store.count_calendars(status) for status in CalendarStatus}
    assert counts == {
        CalendarStatus.ACTIVE: 2, CalendarStatus.DISCONNECTED: 1, CalendarStatus.GONE: 0, CalendarStatus.FAILED: 0
    }  # fmt: skip


def test_odd_calendar_ids_are_stored_faithfully(store: Store) -> None:
    for odd in ("c_1234@group.calendar.google.com", "a/b@example.com", "..", "__reserved__", "żółw@example.pl"):
        assert store.save_sync_token(odd, f"tok-{odd}", expected_version=0, at=T0)
        state = store.get_calendar(odd)
        assert state is not None
        assert (state.calendar_id, state.sync_token) == (odd, f"tok-{odd}")


def test_a_pass_over_calendars_of_one_status_pages_through_each_once(store: Store) -> None:
    ids = ["a/b@example.com", "żółw@example.pl", *(f"user{n}@example.com" for n in range(5))]
    for calendar_id in ids:
        store.ensure_calendar(calendar_id)
    store.set_calendar_status("user3@example.com", CalendarStatus.DISCONNECTED, "401")
    seen: list[str] = []
    after: str | None = None
    while page := store.calendars_page(CalendarStatus.ACTIVE, after=after, limit=2):
        assert len(page) <= 2
        seen += [state.calendar_id for state in page]
        after = page[-1].calendar_id
    assert sorted(seen) == sorted(set(ids) - {"user3@example.com"}), "each active calendar once, no other"
    assert [c.calendar_id for c in store.calendars_page(CalendarStatus.DISCONNECTED)] == ["user3@example.com"]


# -- channels -------------------------------------------------------------------------------------


def channel(channel_id: str, expires_in_h: float, calendar_id: str = CAL) -> ChannelRecord:
    return ChannelRecord(
        channel_id=channel_id,
        calendar_id=calendar_id,
        resource_id=f"res-{calendar_id}",
        token=Secret(f"secret-{channel_id}"),
        expiration=T0 + timedelta(hours=expires_in_h),
    )


def test_a_channel_is_found_by_id_with_its_secret(store: Store) -> None:
    store.add_channel(channel("ch-1", 24))
    found = store.get_channel("ch-1")
    assert found == channel("ch-1", 24)
    assert found is not None
    assert found.token.reveal() == "secret-ch-1"
    assert store.get_channel("ch-unknown") is None


def test_expiring_channels_are_listed_soonest_first_and_only_live(store: Store) -> None:
    for channel_id, hours in (("late", 100), ("soon", 2), ("sooner", 1), ("stopped", 3)):
        store.add_channel(channel(channel_id, hours))
    store.stop_channel("stopped")
    expiring = store.channels_expiring_before(T0 + timedelta(hours=24))
    assert [c.channel_id for c in expiring] == ["sooner", "soon"]
    assert store.get_channel("stopped") is not None
    assert store.get_channel("stopped").state is ChannelState.STOPPED  # type: ignore[union-attr]


def test_expiring_channels_are_counted_only_live_and_only_before_the_time(store: Store) -> None:
    assert store.count_channels_expiring_before(T0 + timedelta(hours=24)) == 0
    for channel_id, hours in (("late", 100), ("soon", 2), ("sooner", 1), ("stopped", 3)):
        store.add_channel(channel(channel_id, hours))
    store.stop_channel("stopped")
    assert store.count_channels_expiring_before(T0 + timedelta(hours=24)) == 2
    assert store.count_channels_expiring_before(T0 + timedelta(hours=1)) == 0, "expiring at the time is not before it"


def test_due_channels_are_paged_soonest_first_from_where_the_last_page_ended(store: Store) -> None:
    for channel_id, hours in (("c", 1), ("a", 1), ("b", 2), ("late", 100), ("stopped", 3), ("d", 5)):
        store.add_channel(channel(channel_id, hours))
    store.stop_channel("stopped")
    before = T0 + timedelta(hours=24)
    first = store.channels_due(before, limit=2)
    assert [c.channel_id for c in first] == ["a", "c"], "ties by channel id"
    cursor = (first[-1].expiration, first[-1].channel_id)
    second = store.channels_due(before, after=cursor, limit=2)
    assert [c.channel_id for c in second] == ["b", "d"], "stopped and later channels are not due"
    assert store.channels_due(before, after=(second[-1].expiration, second[-1].channel_id), limit=2) == []
    store.stop_channel("a")  # renewed meanwhile: the cursor still holds
    assert [c.channel_id for c in store.channels_due(before, after=cursor, limit=5)] == ["b", "d"]


def test_live_channels_of_a_calendar(store: Store) -> None:
    store.add_channel(channel("a", 5))
    store.add_channel(channel("b", 1))
    store.add_channel(channel("other", 1, calendar_id="bob@example.com"))
    store.stop_channel("a")
    assert [c.channel_id for c in store.live_channels(CAL)] == ["b"]
    store.stop_channel("never-existed")  # harmless


# -- links ----------------------------------------------------------------------------------------


def link(event_id: str, conference_id: str, *, minutes: int = 0) -> Link:
    return Link(CAL, event_id, conference_id, f"fp-{event_id}-{minutes}", T0 + timedelta(minutes=minutes))


def test_a_lease_has_one_holder_until_it_runs_out_or_is_released(store: Store) -> None:
    name = f"watch:{CAL}"
    assert store.take_lease(name, "ingest-1", now=T0, until=T0 + timedelta(seconds=60))
    assert not store.take_lease(name, "ingest-2", now=T0 + timedelta(seconds=59), until=T0 + timedelta(minutes=5))
    assert store.take_lease(name, "ingest-1", now=T0 + timedelta(seconds=30), until=T0 + timedelta(seconds=90))
    assert store.take_lease("watch:bob@example.com", "ingest-2", now=T0, until=T0 + timedelta(seconds=60))
    store.release_lease(name, "ingest-2")  # not its lease: nothing changes
    assert not store.take_lease(name, "ingest-2", now=T0 + timedelta(seconds=60), until=T0 + timedelta(minutes=5))
    assert store.take_lease(name, "ingest-2", now=T0 + timedelta(seconds=90), until=T0 + timedelta(minutes=5))
    store.release_lease(name, "ingest-2")
    assert store.take_lease(name, "ingest-3", now=T0 + timedelta(seconds=91), until=T0 + timedelta(minutes=5))


def test_racing_threads_take_a_lease_once(store: Store) -> None:
    start = threading.Barrier(4)
    won: list[str] = []

    def contend(holder: str) -> None:
        start.wait()
        if store.take_lease("watch:race", holder, now=T0, until=T0 + timedelta(seconds=60)):
            won.append(holder)

    threads = [threading.Thread(target=contend, args=(f"h{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1


def test_links_are_found_both_ways_and_updated_in_place(store: Store) -> None:
    store.upsert_link(link("evt1", "cnf_1"))
    store.upsert_link(link("evt1", "cnf_1", minutes=5))
    assert store.get_link(CAL, "evt1") == link("evt1", "cnf_1", minutes=5)
    assert store.link_for_conference("cnf_1") == link("evt1", "cnf_1", minutes=5)
    assert store.get_link(CAL, "evt-missing") is None
    assert store.link_for_conference("cnf_missing") is None


def test_links_written_together_are_each_written_as_one_would_be(store: Store) -> None:
    store.upsert_link(Link(CAL, "evt1", "cnf_1", created_at=T0, request_key="key-1"))
    store.upsert_links([])
    store.upsert_links([link("evt1", "cnf_1", minutes=5), link("evt2", "cnf_2", minutes=7)])
    assert store.get_link(CAL, "evt1") == replace(link("evt1", "cnf_1", minutes=5), created_at=T0, request_key="key-1")
    assert store.link_for_conference("cnf_2") == link("evt2", "cnf_2", minutes=7)
    assert [found.event_id for found in store.live_links(CAL)] == ["evt1", "evt2"]


def test_a_link_keeps_when_the_addon_created_it_through_later_updates(store: Store) -> None:
    store.upsert_link(Link(CAL, "evt1", "cnf_1", created_at=T0))
    store.upsert_link(link("evt1", "cnf_1", minutes=5))  # a listing confirms it: created_at None
    assert store.get_link(CAL, "evt1") == replace(link("evt1", "cnf_1", minutes=5), created_at=T0)
    store.mark_link_deleted(CAL, "evt1")
    kept = store.get_link(CAL, "evt1")
    assert kept is not None
    assert kept.created_at == T0
    store.upsert_link(link("evt2", "cnf_2"))
    made_by_a_listing = store.get_link(CAL, "evt2")
    assert made_by_a_listing is not None
    assert made_by_a_listing.created_at is None


def test_adding_a_link_never_replaces_a_live_one(store: Store) -> None:
    first = Link(CAL, "evt1", "cnf_1", last_event_updated=T0, created_at=T0, request_key="key-1")
    assert store.add_link(first) == first
    assert store.add_link(replace(first, conference_id="cnf_2", request_key="key-2")) == first
    assert store.get_link(CAL, "evt1") == first
    assert store.link_for_conference("cnf_2") is None
    store.mark_link_deleted(CAL, "evt1")
    second = replace(first, conference_id="cnf_2", request_key="key-2")
    assert store.add_link(second) == second, "a deleted link gives way"
    assert store.link_for_conference("cnf_2") == second


def test_a_link_keeps_the_request_that_made_it_through_later_updates(store: Store) -> None:
    store.upsert_link(Link(CAL, "evt1", "cnf_1", created_at=T0, request_key="key-1"))
    store.upsert_link(link("evt1", "cnf_1", minutes=5))  # a listing confirms it: request_key None
    assert store.get_link(CAL, "evt1") == replace(link("evt1", "cnf_1", minutes=5), created_at=T0, request_key="key-1")


def test_live_links_exclude_deleted_ones_for_mark_and_sweep(store: Store) -> None:
    for n in range(5):
        store.upsert_link(link(f"evt{n}", f"cnf_{n}"))
    store.upsert_link(Link("bob@example.com", "evtX", "cnf_x"))
    store.mark_link_deleted(CAL, "evt2")
    store.mark_link_deleted(CAL, "evt-missing")  # harmless
    assert [live.event_id for live in store.live_links(CAL)] == ["evt0", "evt1", "evt3", "evt4"]
    deleted = store.get_link(CAL, "evt2")
    assert deleted is not None
    assert deleted.state is LinkState.DELETED
    assert store.link_for_conference("cnf_2") == deleted, "a cancelled event's link still names its conference"


def test_live_links_leave_out_the_events_a_listing_showed(store: Store) -> None:
    for n in range(4):
        store.upsert_link(link(f"evt{n}", f"cnf_{n}"))
    listed = {"evt0", "evt2", "evt-not-linked"}
    assert store.live_links(CAL, excluding=listed) == [link("evt1", "cnf_1"), link("evt3", "cnf_3")]
    assert [live.event_id for live in store.live_links(CAL, excluding=set())] == ["evt0", "evt1", "evt2", "evt3"]


def test_links_are_counted_per_calendar_and_state(store: Store) -> None:
    for n in range(4):
        store.upsert_link(link(f"evt{n}", f"cnf_{n}"))
    store.upsert_link(Link("bob@example.com", "evtX", "cnf_x"))
    store.mark_link_deleted(CAL, "evt2")
    store.upsert_link(replace(link("evt3", "cnf_3"), state=LinkState.LEAVING))
    counts = {state: store.count_links(CAL, state) for state in LinkState}
    assert counts == {LinkState.LIVE: 2, LinkState.LEAVING: 1, LinkState.DELETED: 1}
    assert store.count_links("nobody@example.com", LinkState.LIVE) == 0


# -- applied versions -----------------------------------------------------------------------------


# -- retention ------------------------------------------------------------------------------------

EXPIRES = T0 + timedelta(days=90)


def _raw_expiry(store: Store, conference_id: str, event_id: str | None = None) -> object:
    """expires_at as Firestore holds it: its TTL policy acts only on a timestamp."""
    from confsync.store.keys import doc_id  # noqa: PLC0415

    if event_id is None:
        ref = store._conferences.document(doc_id(conference_id))  # type: ignore[attr-defined]
    else:
        ref = store._calendars.document(doc_id(CAL)).collection("links").document(doc_id(event_id))  # type: ignore[attr-defined]
    return (ref.get().to_dict() or {}).get("expires_at")


def test_links_and_applied_versions_keep_their_expiry_as_written(store: Store) -> None:
    store.upsert_link(replace(link("evt1", "cnf_1"), expires_at=EXPIRES))
    store.upsert_link(link("evt2", "cnf_2"))  # an unbounded series: kept
    assert store.apply_if_newer(AppliedVersion("cnf_1", T0, "fp", EXPIRES))
    if not store.local:  # Firestore: timestamps its TTL policy acts on
        assert _raw_expiry(store, "cnf_1") == EXPIRES
        assert _raw_expiry(store, "cnf_1", "evt1") == EXPIRES
    assert store.get_link(CAL, "evt1") == replace(link("evt1", "cnf_1"), expires_at=EXPIRES)
    assert store.link_for_conference("cnf_1") == replace(link("evt1", "cnf_1"), expires_at=EXPIRES)
    assert store.get_link(CAL, "evt2").expires_at is None  # type: ignore[union-attr]
    assert store.get_applied("cnf_1") == AppliedVersion("cnf_1", T0, "fp", EXPIRES)
    later = EXPIRES + timedelta(days=30)
    store.mark_link_deleted(CAL, "evt2", expires_at=later)
    assert store.get_link(CAL, "evt2").expires_at == later  # type: ignore[union-attr]
    assert store.apply_if_newer(AppliedVersion("cnf_1", T0 + timedelta(minutes=1), "fp2", None)), "became unbounded"
    assert store.get_applied("cnf_1").expires_at is None  # type: ignore[union-attr]
    if not store.local:
        assert isinstance(_raw_expiry(store, "cnf_2", "evt2"), datetime), "a deleted link's too"
    # The event moved later while its update waited: the link, kept longer, keeps the conference's pointer.
    store.apply_if_newer(AppliedVersion("cnf_4", T0, "fp", T0 + timedelta(days=1)))
    store.upsert_link(replace(link("evt4", "cnf_4"), expires_at=EXPIRES))
    if not store.local:
        assert _raw_expiry(store, "cnf_4") == EXPIRES, "the pointer's document expires with the link"
    assert store.link_for_conference("cnf_4") == replace(link("evt4", "cnf_4"), expires_at=EXPIRES)


def test_the_sweep_removes_only_what_expired_or_the_stores_ttl_policy_does(store: Store) -> None:
    store.upsert_link(replace(link("evt1", "cnf_1"), expires_at=T0))
    store.upsert_link(replace(link("evt2", "cnf_2"), expires_at=EXPIRES))
    store.upsert_link(link("evt3", "cnf_3"))
    store.apply_if_newer(AppliedVersion("cnf_1", T0, "fp", T0))
    store.apply_if_newer(AppliedVersion("cnf_3", T0, "fp", None))
    counted = store.purge_expired(T0 + timedelta(days=1), dry_run=True)
    purged = store.purge_expired(T0 + timedelta(days=1))
    if purged.by_ttl:
        assert store.get_link(CAL, "evt1") is not None, "left to the TTL policy"
        return
    assert (counted.links, counted.applied) == (purged.links, purged.applied) == (1, 1)
    assert store.get_link(CAL, "evt1") is None
    assert store.get_applied("cnf_1") is None
    assert [live.event_id for live in store.live_links(CAL)] == ["evt2", "evt3"]
    assert store.get_applied("cnf_3") is not None


def test_apply_if_newer_keeps_only_the_newest_version(store: Store) -> None:
    assert store.get_applied("cnf_1") is None
    assert store.apply_if_newer(AppliedVersion("cnf_1", T0, "fp-a"))
    assert not store.apply_if_newer(AppliedVersion("cnf_1", T0, "fp-a")), "a duplicate"
    assert not store.apply_if_newer(AppliedVersion("cnf_1", T0 - timedelta(microseconds=1), "fp-old")), "stale"
    assert store.apply_if_newer(AppliedVersion("cnf_1", T0 + timedelta(microseconds=1), "fp-b"))
    assert store.get_applied("cnf_1") == AppliedVersion("cnf_1", T0 + timedelta(microseconds=1), "fp-b")


def test_shuffled_versions_end_at_the_newest(store: Store) -> None:
    versions = [T0 + timedelta(milliseconds=n) for n in range(30)]
    random.Random(5).shuffle(versions)
    wins = [store.apply_if_newer(AppliedVersion("cnf_s", version, "fp")) for version in versions]
    applied = store.get_applied("cnf_s")
    assert applied is not None
    assert applied.event_updated == T0 + timedelta(milliseconds=29)
    running_max = [version == max(versions[: i + 1]) for i, version in enumerate(versions)]
    assert wins == running_max, "a version wins exactly when it is newer than all before it"


# -- concurrency ----------------------------------------------------------------------------------


def race_for_versions(store: Store, threads: int, attempts: int) -> list[int]:
    """Each thread reads the version and tries to save; returns the versions won, all threads."""
    store.ensure_calendar(CAL)
    won: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def contend(name: int) -> None:
        start.wait()
        for attempt in range(attempts):
            state = store.get_calendar(CAL)
            assert state is not None
            if store.save_sync_token(CAL, f"t{name}-{attempt}", expected_version=state.token_version, at=T0):
                with lock:
                    won.append(state.token_version + 1)

    workers = [threading.Thread(target=contend, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return won


def test_racing_threads_win_each_version_exactly_once(store: Store) -> None:
    small = isinstance(store, SqliteStore)
    won = race_for_versions(store, threads=8 if small else 3, attempts=40 if small else 3)
    state = store.get_calendar(CAL)
    assert state is not None
    assert sorted(won) == list(range(1, state.token_version + 1)), "no version won twice, none lost"


def test_racing_appliers_end_at_the_newest_version(store: Store) -> None:
    versions = [T0 + timedelta(milliseconds=n) for n in range(24 if isinstance(store, SqliteStore) else 6)]
    random.Random(9).shuffle(versions)
    chunks = [versions[n::3] for n in range(3)]
    workers = [
        threading.Thread(
            target=lambda part=part: [store.apply_if_newer(AppliedVersion("cnf_r", v, "fp")) for v in part]
        )
        for part in chunks
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    applied = store.get_applied("cnf_r")
    assert applied is not None
    assert applied.event_updated == max(versions)


# -- opening --------------------------------------------------------------------------------------


def test_open_store_picks_the_backend_from_the_url(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/nested/dir/state.sqlite")
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "nested/dir/state.sqlite"
    store.close()
    with pytest.raises(ConfigError, match="CONFSYNC_STORE_URL"):
        open_store("postgres://db")


# -- outbox ---------------------------------------------------------------------------------------


def test_a_leaving_link_is_no_longer_swept_yet_still_names_its_conference_and_a_live_one_outranks_it(
    store: Store,
) -> None:
    store.upsert_link(replace(link("evt1", "cnf_1"), state=LinkState.LEAVING))
    assert store.live_links(CAL) == [], "its delete already waits: no sweep sends another"
    leaving = store.get_link(CAL, "evt1")
    assert leaving is not None
    assert leaving.state is LinkState.LEAVING
    assert store.link_for_conference("cnf_1") == leaving, "its copies still know whose it is"
    moved = Link("team@example.com", "evt1", "cnf_1", "fp", T0 + timedelta(minutes=9))
    store.upsert_link(moved)  # it moved to another of the owner's calendars
    store.mark_link_deleted(CAL, "evt1")
    assert store.link_for_conference("cnf_1") == moved


def test_a_series_link_keeps_its_exceptions_until_a_write_changes_them(store: Store) -> None:
    cancelled = Occurrence(EventTime(date_time="2026-12-08T09:00:00Z"), OccurrenceStatus.CANCELLED)
    moved = Occurrence(
        EventTime(date="2026-12-15"), OccurrenceStatus.MOVED, EventTime(date="2026-12-16"), EventTime(date="2026-12-17")
    )
    store.upsert_link(replace(link("weekly", "cnf_w"), exceptions=(cancelled, moved)))
    assert store.get_link(CAL, "weekly") == replace(link("weekly", "cnf_w"), exceptions=(cancelled, moved))
    store.upsert_link(replace(link("weekly", "cnf_w", minutes=5), exceptions=(moved,)))
    assert store.get_link(CAL, "weekly") == replace(link("weekly", "cnf_w", minutes=5), exceptions=(moved,))
    store.upsert_link(link("weekly", "cnf_w", minutes=6))
    assert store.get_link(CAL, "weekly") == link("weekly", "cnf_w", minutes=6), "the last one removed"


def test_a_deferred_command_comes_back_when_due_and_is_no_longer_deferred_once_published(store: Store) -> None:
    store.outbox_add([OutboxEntry("cmd-later", "cnf-1", b"{}", T0 + timedelta(seconds=300), deferred=True)])
    assert store.outbox_due(T0 + timedelta(seconds=60)) == [], "not before its grace is over"
    (due,) = store.outbox_due(T0 + timedelta(seconds=301))
    assert due == OutboxEntry("cmd-later", "cnf-1", b"{}", T0 + timedelta(seconds=300), deferred=True)
    store.outbox_reschedule("cmd-later", T0 + timedelta(seconds=400), 0)
    (published,) = store.outbox_due(T0 + timedelta(seconds=401))
    assert (published.deferred, published.attempts) == (False, 0), "now an ordinary unsettled command"


def test_the_outbox_hands_back_overdue_commands_until_they_are_settled(store: Store) -> None:
    entries = [
        OutboxEntry("cmd-late", "cnf-1", b'{"kind": "delete"}', T0 + timedelta(seconds=60)),
        OutboxEntry("cmd-early", "cnf-2", b"\x00binary\xff", T0 + timedelta(seconds=30)),
        OutboxEntry("cmd-later", "cnf-3", b"{}", T0 + timedelta(seconds=600)),
    ]
    store.outbox_add(entries)
    assert store.outbox_due(T0 + timedelta(seconds=10)) == []
    due = store.outbox_due(T0 + timedelta(seconds=61))
    assert [e.command_id for e in due] == ["cmd-early", "cmd-late"], "most overdue first"
    assert due[0] == entries[1], "bytes and times come back as stored"
    assert [e.command_id for e in store.outbox_due(T0 + timedelta(seconds=61), limit=1)] == ["cmd-early"]

    store.outbox_reschedule("cmd-early", T0 + timedelta(seconds=300), 1)
    assert [e.command_id for e in store.outbox_due(T0 + timedelta(seconds=61))] == ["cmd-late"]
    store.outbox_done(["cmd-late", "cmd-never-there"])
    store.outbox_done([])
    store.outbox_reschedule("cmd-late", T0, 3)  # settled meanwhile: it must not come back
    (early,) = store.outbox_due(T0 + timedelta(seconds=301))
    assert (early.command_id, early.attempts) == ("cmd-early", 1)
    store.outbox_add([OutboxEntry("cmd-early", "cnf-2", b"v2", T0 + timedelta(seconds=900))])
    assert store.outbox_due(T0 + timedelta(seconds=301)) == [], "published again: replaced, due later"


def test_unsettled_commands_are_counted_in_all_and_per_calendar(store: Store) -> None:
    assert store.count_outbox() == 0
    due = T0 + timedelta(seconds=60)
    store.outbox_add(
        [
            OutboxEntry("cmd-1", "cnf-1", b"{}", due, calendar_id=CAL),
            OutboxEntry("cmd-2", "cnf-2", b"{}", due, deferred=True, calendar_id=CAL),
            OutboxEntry("cmd-3", "cnf-3", b"{}", due, calendar_id="bob@example.com"),
            OutboxEntry("cmd-4", "cnf-4", b"{}", due),  # written before entries named their calendar
        ]
    )
    assert (store.count_outbox(), store.count_outbox(CAL), store.count_outbox("bob@example.com")) == (4, 2, 1)
    assert {e.command_id: e.calendar_id for e in store.outbox_due(due + timedelta(seconds=1))} == {
        "cmd-1": CAL, "cmd-2": CAL, "cmd-3": "bob@example.com", "cmd-4": None
    }  # fmt: skip
    store.outbox_done(["cmd-1", "cmd-3"])
    assert (store.count_outbox(), store.count_outbox(CAL), store.count_outbox("bob@example.com")) == (2, 1, 0)


# -- users and grants -------------------------------------------------------------------------------


def grant(user: str = CAL, provider: OAuthProvider = OAuthProvider.GOOGLE, sealed: str = "sealed-1") -> Grant:
    return Grant(
        user=user,
        provider=provider,
        sealed_token=Secret(sealed),
        scopes=("openid", "https://www.googleapis.com/auth/calendar.events"),
        updated_at=T0,
        account_id="vendor-42" if provider is OAuthProvider.VENDOR else None,
        account_email="alice@vendor.example" if provider is OAuthProvider.VENDOR else None,
    )


def test_a_user_is_created_once_and_kept(store: Store) -> None:
    assert store.get_user(CAL) is None
    alice = User(CAL, "example.com", T0)
    assert store.ensure_user(alice) == alice
    assert store.ensure_user(User(CAL, "other.example", T0 + timedelta(days=1), UserStatus.DISABLED)) == alice
    assert store.get_user(CAL) == alice


def test_a_grant_is_stored_as_given_at_version_1(store: Store) -> None:
    assert store.get_grant(CAL, OAuthProvider.GOOGLE) is None
    assert store.put_grant(grant(), expected_version=0)
    assert store.get_grant(CAL, OAuthProvider.GOOGLE) == replace(grant(), version=1)
    assert store.get_grant(CAL, OAuthProvider.VENDOR) is None
    assert store.put_grant(grant(provider=OAuthProvider.VENDOR), expected_version=0)
    vendor = store.get_grant(CAL, OAuthProvider.VENDOR)
    assert vendor is not None
    assert (vendor.account_id, vendor.account_email, vendor.sealed_token) == (
        "vendor-42",
        "alice@vendor.example",
        Secret("sealed-1"),
    )


def test_a_grant_is_replaced_only_against_the_version_read(store: Store) -> None:
    assert store.put_grant(grant(), expected_version=0)
    assert not store.put_grant(grant(sealed="other-first"), expected_version=0), "one already exists"
    assert not store.put_grant(grant(sealed="from-the-future"), expected_version=2)
    successor = replace(grant(sealed="sealed-2"), status=GrantStatus.REVOKED, updated_at=T0 + timedelta(seconds=1))
    assert store.put_grant(replace(successor, version=99), expected_version=1), "the record's own version is ignored"
    assert store.get_grant(CAL, OAuthProvider.GOOGLE) == replace(successor, version=2)
    assert not store.put_grant(grant(sealed="late"), expected_version=1), "the loser changes nothing"
    assert store.get_grant(CAL, OAuthProvider.GOOGLE) == replace(successor, version=2)
    assert not store.put_grant(grant("bob@example.com"), expected_version=1), "a missing grant is version 0"


def test_grants_are_listed_by_user_and_status(store: Store) -> None:
    for user, provider in (("bob@example.com", "vendor"), (CAL, "vendor"), (CAL, "google"), ("carol@x.org", "google")):
        assert store.put_grant(grant(user, OAuthProvider(provider)), expected_version=0)
    revoked = replace(grant(CAL, OAuthProvider.VENDOR), status=GrantStatus.REVOKED)
    assert store.put_grant(revoked, expected_version=1)
    every = [(g.user, g.provider.value) for g in store.list_grants()]
    assert every == [("alice@example.com", "google"), ("alice@example.com", "vendor"),
                     ("bob@example.com", "vendor"), ("carol@x.org", "google")]  # fmt: skip
    assert [(g.user, g.provider.value) for g in store.list_grants(user=CAL)] == every[:2]
    assert [(g.user, g.provider) for g in store.list_grants(status=GrantStatus.REVOKED)] == [
        (CAL, OAuthProvider.VENDOR)
    ]
    assert [g.provider for g in store.list_grants(user=CAL, status=GrantStatus.ACTIVE)] == [OAuthProvider.GOOGLE]
    assert store.list_grants(user="nobody@example.com") == []


def test_grants_are_deleted_one_by_one_or_with_their_user(store: Store) -> None:
    store.ensure_user(User(CAL, "example.com", T0))
    store.ensure_user(User("bob@example.com", None, T0))
    for user, provider in ((CAL, OAuthProvider.GOOGLE), (CAL, OAuthProvider.VENDOR), ("bob@example.com", None)):
        assert store.put_grant(grant(user, provider or OAuthProvider.GOOGLE), expected_version=0)
    assert store.delete_grant(CAL, OAuthProvider.VENDOR)
    assert not store.delete_grant(CAL, OAuthProvider.VENDOR), "already gone"
    assert [g.provider for g in store.list_grants(user=CAL)] == [OAuthProvider.GOOGLE]
    store.forget_user(CAL)
    store.forget_user("nobody@example.com")  # harmless
    assert store.get_user(CAL) is None
    assert store.list_grants(user=CAL) == []
    assert [g.user for g in store.list_grants()] == ["bob@example.com"]
    assert store.get_user("bob@example.com") is not None
    assert store.put_grant(grant(), expected_version=0), "after a forget, a reconnect starts afresh"


def test_odd_user_ids_keep_their_grants_apart(store: Store) -> None:
    odd = ("a/b@example.com", "..", "__x__", "google:alice@example.com", "żółw@example.pl")
    for user in odd:
        assert store.put_grant(grant(user, sealed=f"sealed-{user}"), expected_version=0)
    for user in odd:
        found = store.get_grant(user, OAuthProvider.GOOGLE)
        assert found is not None
        assert (found.user, found.sealed_token.reveal()) == (user, f"sealed-{user}")


def test_two_rotations_from_the_same_version_exactly_one_wins(store: Store) -> None:
    """A rotated refresh token is saved atomically with its successor: of the workers that read
    version 1 and each got a successor, exactly one stores it, and the others learn they lost."""
    assert store.put_grant(grant(), expected_version=0)
    contenders = 6 if isinstance(store, SqliteStore) else 2
    start = threading.Barrier(contenders)
    outcomes: dict[int, bool] = {}

    def rotate(n: int) -> None:
        start.wait()
        outcomes[n] = store.put_grant(grant(sealed=f"successor-{n}"), expected_version=1)

    threads = [threading.Thread(target=rotate, args=(n,)) for n in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (winner,) = [n for n, won in outcomes.items() if won]
    stored = store.get_grant(CAL, OAuthProvider.GOOGLE)
    assert stored is not None
    assert (stored.version, stored.sealed_token) == (2, Secret(f"successor-{winner}"))


def test_users_are_listed_by_email(store: Store) -> None:
    assert store.list_users() == []
    for email in ("carol@x.org", CAL, "bob@example.com"):
        store.ensure_user(User(email, None, T0))
    assert [user.email for user in store.list_users()] == [CAL, "bob@example.com", "carol@x.org"]
    assert store.list_users()[0] == User(CAL, None, T0)


# -- calendars by owner, and forgetting one -------------------------------------------------------


def test_calendars_of_a_subject_are_the_ones_it_owns_exactly(store: Store) -> None:
    for calendar_id, subject in (("team@group", CAL), (CAL, CAL), ("bob@example.com", "bob@example.com")):
        store.claim_calendar(calendar_id, subject)
    store.ensure_calendar("unowned@example.com")
    assert [c.calendar_id for c in store.calendars_of(CAL)] == [CAL, "team@group"]
    assert store.calendars_of("ALICE@example.com") == [], "exactly as stored: callers normalise"
    assert store.calendars_of("nobody@example.com") == []


def test_forgetting_a_calendar_removes_its_state_links_and_channels_only(store: Store) -> None:
    other = "bob@example.com"
    for calendar_id in (CAL, other):
        store.claim_calendar(calendar_id, calendar_id)
        store.add_channel(channel(f"ch-{calendar_id}", 24, calendar_id=calendar_id))
        store.upsert_link(Link(calendar_id, "evt1", f"cnf-{calendar_id}"))
    store.upsert_link(Link(CAL, "evt2", "cnf-2"))
    store.mark_link_deleted(CAL, "evt2")
    store.forget_calendar(CAL)
    store.forget_calendar("never-there@example.com")  # harmless
    assert store.get_calendar(CAL) is None
    assert (store.get_link(CAL, "evt1"), store.get_link(CAL, "evt2")) == (None, None)
    assert store.link_for_conference(f"cnf-{CAL}") is None
    assert (store.get_channel(f"ch-{CAL}"), store.live_channels(CAL)) == (None, [])
    assert store.get_calendar(other) is not None
    assert store.get_link(other, "evt1") == Link(other, "evt1", f"cnf-{other}")
    assert [c.channel_id for c in store.live_channels(other)] == [f"ch-{other}"]


# -- connect flows --------------------------------------------------------------------------------


def flow(flow_id: str = "flow-1", *, expires_in_s: int = 600, verifier: str | None = "pkce-1") -> ConnectFlow:
    return ConnectFlow(
        flow_id=flow_id,
        user=CAL,
        stage=FlowStage.GOOGLE,
        expires_at=T0 + timedelta(seconds=expires_in_s),
        browser="ab" * 32,
        verifier=None if verifier is None else Secret(verifier),
    )


def test_a_flow_starts_once_per_id_at_version_1(store: Store) -> None:
    assert store.get_flow("flow-1") is None
    assert store.start_flow(replace(flow(), version=7))
    assert store.get_flow("flow-1") == replace(flow(), version=1), "the record's own version is ignored"
    assert not store.start_flow(replace(flow(), user="mallory@example.com")), "the id is taken"
    done = replace(flow(), stage=FlowStage.DONE, verifier=None)
    assert store.put_flow(done, expected_version=1)
    assert not store.start_flow(flow()), "a finished flow's id is never started again"
    assert store.get_flow("flow-1") == replace(done, version=2)


def test_a_flow_advances_only_against_the_version_read(store: Store) -> None:
    assert not store.put_flow(flow(), expected_version=0), "put never creates"
    assert store.get_flow("flow-1") is None
    assert store.start_flow(flow())
    vendor = replace(flow(verifier="pkce-2"), stage=FlowStage.VENDOR, expires_at=T0 + timedelta(seconds=900))
    assert store.put_flow(replace(vendor, version=42), expected_version=1)
    assert not store.put_flow(replace(flow(), stage=FlowStage.DONE), expected_version=1), "the loser"
    stored = store.get_flow("flow-1")
    assert stored == replace(vendor, version=2)
    assert stored is not None
    assert stored.verifier is not None
    assert stored.verifier.reveal() == "pkce-2"


def test_racing_starts_of_one_flow_have_one_winner(store: Store) -> None:
    contenders = 4 if isinstance(store, SqliteStore) else 2
    start = threading.Barrier(contenders)
    won: list[bool] = []

    def begin(n: int) -> None:
        start.wait()
        won.append(store.start_flow(replace(flow(), browser=f"browser-{n}")))

    threads = [threading.Thread(target=begin, args=(n,)) for n in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won) == [False] * (contenders - 1) + [True]


def test_purging_flows_removes_only_the_expired(store: Store) -> None:
    for flow_id, seconds in (("old", -60), ("just-expired", -1), ("at-the-cutoff", 0), ("live", 600)):
        assert store.start_flow(flow(flow_id, expires_in_s=seconds, verifier=None))
    assert store.purge_flows(T0) == 2
    assert store.purge_flows(T0) == 0
    for flow_id, kept in (("old", False), ("just-expired", False), ("at-the-cutoff", True), ("live", True)):
        assert (store.get_flow(flow_id) is not None) is kept, flow_id
    kept_flow = store.get_flow("at-the-cutoff")
    assert kept_flow is not None
    assert kept_flow.verifier is None


# -- commands held for an owner's reconnect -------------------------------------------------------


def held(command_id: str, *, seconds: int = 0, owner: str = CAL, data: bytes = b"\x00cmd\xff") -> HeldCommand:
    return HeldCommand(owner, command_id, f"cnf-{command_id}", data, T0 + timedelta(seconds=seconds), "revoked")


def test_holding_a_command_twice_keeps_the_first(store: Store) -> None:
    assert store.hold_command(held("cmd-1"))
    assert not store.hold_command(held("cmd-1", seconds=5, data=b"second"))
    assert store.held_commands(CAL) == [held("cmd-1")], "the first copy, bytes and time as stored"
    assert store.hold_command(held("cmd-1", owner="bob@example.com")), "another owner's is another command"


def test_held_commands_come_back_oldest_first_then_by_id(store: Store) -> None:
    for command_id, seconds in (("cmd-b", 10), ("cmd-c", 0), ("cmd-a", 10), ("cmd-d", 5)):
        assert store.hold_command(held(command_id, seconds=seconds))
    store.hold_command(held("cmd-0", seconds=-5, owner="bob@example.com"))
    assert [h.command_id for h in store.held_commands(CAL)] == ["cmd-c", "cmd-d", "cmd-a", "cmd-b"]
    assert [h.command_id for h in store.held_commands(CAL, limit=3)] == ["cmd-c", "cmd-d", "cmd-a"]
    assert store.held_commands("nobody@example.com") == []


def test_released_commands_are_forgotten_and_counted_no_more(store: Store) -> None:
    for command_id in ("cmd-1", "cmd-2", "cmd-3"):
        store.hold_command(held(command_id))
    store.hold_command(held("cmd-1", owner="bob@example.com"))
    assert (store.count_held(), store.count_held(CAL), store.count_held("bob@example.com")) == (4, 3, 1)
    store.release_held(CAL, ["cmd-1", "cmd-3", "cmd-never-held"])
    store.release_held(CAL, [])
    assert [h.command_id for h in store.held_commands(CAL)] == ["cmd-2"]
    assert [h.command_id for h in store.held_commands("bob@example.com")] == ["cmd-1"], "another owner's stays"
    assert (store.count_held(), store.count_held(CAL), store.count_held("nobody@example.com")) == (2, 1, 0)


# -- backfill jobs ----------------------------------------------------------------------------


def test_calendars_are_paged_in_id_order_after_a_cursor(store: Store) -> None:
    for calendar_id in ("c@example.com", "a@example.com", "b@example.com", "d@example.com"):
        store.ensure_calendar(calendar_id)
    first = store.calendars_after(None, 3)
    assert [c.calendar_id for c in first] == ["a@example.com", "b@example.com", "c@example.com"]
    assert [c.calendar_id for c in store.calendars_after(first[-1].calendar_id, 3)] == ["d@example.com"]
    assert store.calendars_after("d@example.com", 3) == []


def test_a_page_of_links_is_read_at_once_and_only_linked_events_answer(store: Store) -> None:
    for n in range(3):
        store.upsert_link(Link(CAL, f"ev{n}", f"conf-{n}", None, None, LinkState.LIVE))
    links = store.get_links(CAL, ["ev0", "ev2", "nothing"])
    assert sorted(links) == ["ev0", "ev2"]
    assert links["ev2"].conference_id == "conf-2"
    assert store.get_links("bob@example.com", ["ev0"]) == {}


def test_a_backfill_job_is_kept_and_the_newest_comes_first(store: Store) -> None:
    old = BackfillJob("bf-1", "all", T0)
    new = BackfillJob("bf-2", "domain example.com", T0 + timedelta(hours=1), window_days=30)
    store.put_backfill_job(old)
    store.put_backfill_job(new)
    store.put_backfill_job(replace(old, cursor="m@example.com", requested=12, paged_all=True))
    assert store.get_backfill_job("bf-1") == replace(old, cursor="m@example.com", requested=12, paged_all=True)
    assert [job.job_id for job in store.backfill_jobs()] == ["bf-2", "bf-1"]
    assert store.get_backfill_job("bf-3") is None


def test_a_backfilled_calendar_is_claimed_once_and_finishes_once(store: Store) -> None:
    lease = timedelta(minutes=10)
    assert store.request_backfill("bf", [CAL, "bob@example.com"], T0) == [CAL, "bob@example.com"]
    assert store.claim_backfill("bf", CAL, now=T0, until=T0 + lease) is BackfillClaim.CLAIMED
    # A redelivery while the first processor lists it waits; so does the job, which re-requests nothing running.
    assert store.claim_backfill("bf", CAL, now=T0 + timedelta(seconds=5), until=T0 + lease) is BackfillClaim.HELD
    assert store.request_backfill("bf", [CAL, "bob@example.com"], T0) == ["bob@example.com"]
    assert store.finish_backfill(
        BackfillEntry("bf", CAL, BackfillState.DONE, T0, events_read=20, commands=2), held_until=T0 + lease
    )
    assert store.claim_backfill("bf", CAL, now=T0 + timedelta(seconds=6), until=T0 + lease) is BackfillClaim.FINISHED
    assert store.claim_backfill("bf", "carol@example.com", now=T0, until=T0 + lease) is BackfillClaim.UNKNOWN
    assert store.claim_backfill("other", CAL, now=T0, until=T0 + lease) is BackfillClaim.UNKNOWN
    assert store.backfill_progress("bf") == BackfillProgress(requested=1, done=1)


def test_a_crashed_processors_lease_runs_out_and_a_transient_failure_gives_it_back(store: Store) -> None:
    lease = timedelta(minutes=10)
    store.request_backfill("bf", [CAL], T0)
    assert store.claim_backfill("bf", CAL, now=T0, until=T0 + lease) is BackfillClaim.CLAIMED
    later = T0 + lease
    assert store.claim_backfill("bf", CAL, now=later, until=later + lease) is BackfillClaim.CLAIMED
    # The first processor, back after its lease ran out, records nothing over the second's claim.
    assert not store.finish_backfill(BackfillEntry("bf", CAL, BackfillState.DONE, later), held_until=T0 + lease)
    assert store.finish_backfill(BackfillEntry("bf", CAL, BackfillState.REQUESTED, later), held_until=later + lease)
    assert store.backfill_progress("bf") == BackfillProgress(requested=1)
    assert store.claim_backfill("bf", CAL, now=later, until=later + lease) is BackfillClaim.CLAIMED


def test_failed_calendars_are_listed_with_their_cause_and_not_requested_again(store: Store) -> None:
    calendars = [f"user{n}@example.com" for n in range(5)]
    store.request_backfill("bf", calendars, T0)
    until = T0 + timedelta(minutes=1)
    for calendar_id in calendars:
        store.claim_backfill("bf", calendar_id, now=T0, until=until)
    cause = "Calendar answered 403 forbidden: no access to user3@example.com"
    store.finish_backfill(
        BackfillEntry("bf", "user3@example.com", BackfillState.FAILED, T0, cause=cause), held_until=until
    )
    store.finish_backfill(
        BackfillEntry("bf", "user1@example.com", BackfillState.FAILED, T0, cause="gone"), held_until=until
    )
    store.finish_backfill(
        BackfillEntry("bf", "user0@example.com", BackfillState.DONE, T0, events_read=3), held_until=until
    )
    failed = store.backfill_entries("bf", BackfillState.FAILED)
    assert [(entry.calendar_id, entry.cause) for entry in failed] == [
        ("user1@example.com", "gone"),
        ("user3@example.com", cause),
    ]
    assert store.backfill_entries("bf", BackfillState.DONE)[0].events_read == 3
    assert store.backfill_progress("bf") == BackfillProgress(running=2, done=1, failed=2)
    assert store.request_backfill("bf", calendars, T0) == []
    running = store.backfill_entries("bf", BackfillState.RUNNING, limit=1)
    assert [e.calendar_id for e in running] == ["user2@example.com"]
    after = store.backfill_entries("bf", BackfillState.RUNNING, limit=1, after=running[0].calendar_id)
    assert [e.calendar_id for e in after] == ["user4@example.com"]
