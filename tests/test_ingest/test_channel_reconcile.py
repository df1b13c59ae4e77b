"""Every active calendar ends each reconciliation pass with exactly one live channel: a failed
watch is tried again, surplus channels are stopped, racing opens make one channel, and
renewal works per calendar. Against the calendar sandbox over HTTP and a SQLite store."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from tests_support import RunningCalendar, Webhook, event_body

from confsync.calendar import GoogleCalendarClient
from confsync.errors import TransientError
from confsync.provider import HttpConferenceProvider
from confsync.rfc3339 import utc_now
from confsync.serving import ServedApp
from confsync.settings import Secret, Settings
from confsync.store import PENDING_RESOURCE_ID, CalendarStatus, ChannelRecord, Link
from confsync.store.sqlite import SqliteStore
from confsync.transport.memory import MemoryBroker
from ingest.app import IngestParts, ingest_routes
from ingest.channels import ChannelBusy, ChannelManager
from ingest.lag import LagLoop, LagRepair
from ingest.webhook import WebhookStats

CAL = "alice@example.com"
WATCH = "/events/watch$"


class Clock:
    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "state.sqlite")
    yield store
    store.close()


@pytest.fixture
def client(calendar_sandbox: RunningCalendar) -> Iterator[GoogleCalendarClient]:
    calendar_sandbox.service().events().insert(calendarId=CAL, body=event_body("x")).execute()
    client = GoogleCalendarClient(endpoint=calendar_sandbox.api_endpoint)
    yield client
    client.close()


def manager(
    store: SqliteStore, client: GoogleCalendarClient, webhook: Webhook, clock: Clock | None = None, ttl_s: int = 3600
) -> ChannelManager:
    return ChannelManager(store, client, webhook_url=webhook.url, ttl_s=ttl_s, clock=clock or utc_now)


def after_a_failed_watch(calendar_sandbox: RunningCalendar, channels: ChannelManager) -> ChannelManager:
    """The add-on's ensure for CAL, whose watch Calendar answered with a 503."""
    calendar_sandbox.admin("POST", "/_sandbox/faults", {"method": "POST", "path": WATCH, "status": 503, "count": 1})
    with pytest.raises(TransientError):
        channels.ensure(CAL)
    return channels


def changes_broker() -> MemoryBroker:
    """The calendar-changes topic, and the channel-work topic with ingest's subscription."""
    broker = MemoryBroker()
    broker.create_topic("changes")
    broker.create_subscription(Settings().sub_channel_work, Settings().topic_channel_work)
    return broker


def google_live(calendar_sandbox: RunningCalendar) -> set[str]:
    return {c["id"] for c in calendar_sandbox.admin("GET", "/_sandbox/channels") if c["state"] == "live"}


def test_a_failed_watch_is_tried_again_by_the_next_pass(
    calendar_sandbox: RunningCalendar, store: SqliteStore, client: GoogleCalendarClient, webhook: Webhook
) -> None:
    """The add-on's watch failed once: the calendar is not left unwatched for good."""
    channels = after_a_failed_watch(calendar_sandbox, manager(store, client, webhook))
    assert google_live(calendar_sandbox) == set()

    report = channels.renew(timedelta(0))  # the lag loop's pass: repairs only

    assert report.renewed == [CAL]
    (live,) = store.live_channels(CAL)
    assert live.resource_id != PENDING_RESOURCE_ID
    assert google_live(calendar_sandbox) == {live.channel_id}
    assert channels.renew(timedelta(0)).renewed == [], "a calendar that is watched is left alone"


def test_surplus_channels_of_one_calendar_are_stopped_by_a_pass(
    calendar_sandbox: RunningCalendar, store: SqliteStore, client: GoogleCalendarClient, webhook: Webhook
) -> None:
    short = manager(store, client, webhook, ttl_s=3600).ensure(CAL)
    # a second live channel, as a crash between opening a new channel and stopping the old leaves
    answer = client.watch(CAL, channel_id="second", address=webhook.url, token="t2", ttl_s=7200)
    store.add_channel(ChannelRecord("second", CAL, answer.resource_id, Secret("t2"), answer.expiration))

    report = manager(store, client, webhook).renew(timedelta(minutes=90))

    assert report.renewed == [], "the longer-lived channel already covers the window"
    assert report.stopped == [short.channel_id]
    assert [c.channel_id for c in store.live_channels(CAL)] == ["second"]
    assert google_live(calendar_sandbox) == {"second"}


def test_renewal_opens_one_channel_per_calendar_not_one_per_expiring_channel(
    calendar_sandbox: RunningCalendar, store: SqliteStore, client: GoogleCalendarClient, webhook: Webhook
) -> None:
    first = manager(store, client, webhook).ensure(CAL)
    answer = client.watch(CAL, channel_id="twin", address=webhook.url, token="t2", ttl_s=3600)
    store.add_channel(ChannelRecord("twin", CAL, answer.resource_id, Secret("t2"), answer.expiration))

    report = manager(store, client, webhook).renew(timedelta(hours=2))

    assert report.renewed == [CAL]
    assert sorted(report.stopped) == sorted([first.channel_id, "twin"])
    (live,) = store.live_channels(CAL)
    assert google_live(calendar_sandbox) == {live.channel_id}


def test_two_instances_ensuring_one_calendar_at_once_open_one_channel(
    calendar_sandbox: RunningCalendar, store: SqliteStore, client: GoogleCalendarClient, webhook: Webhook
) -> None:
    """Two ingest instances (two add-on calls for one calendar) race: one channel at Google."""
    calendar_sandbox.admin("POST", "/_sandbox/faults", {"method": "POST", "path": WATCH, "latency_ms": 300})
    instances = [manager(store, client, webhook), manager(store, client, webhook)]
    start = threading.Barrier(len(instances))
    outcomes: list[object] = []

    def ensure(channels: ChannelManager) -> None:
        start.wait()
        try:
            outcomes.append(channels.ensure(CAL).channel_id)
        except ChannelBusy as busy:
            outcomes.append(busy)

    threads = [threading.Thread(target=ensure, args=(channels,)) for channels in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    (live,) = store.live_channels(CAL)
    assert google_live(calendar_sandbox) == {live.channel_id}
    assert live.channel_id in outcomes
    assert all(outcome == live.channel_id or isinstance(outcome, ChannelBusy) for outcome in outcomes)


def test_an_opener_that_died_mid_watch_is_replaced_once_its_lease_runs_out(
    calendar_sandbox: RunningCalendar, store: SqliteStore, client: GoogleCalendarClient, webhook: Webhook
) -> None:
    clock = Clock()
    # what an instance killed between recording its pending channel and watch's answer leaves
    store.add_channel(ChannelRecord("orphan", CAL, PENDING_RESOURCE_ID, Secret("t"), clock.now + timedelta(minutes=2)))
    channels = manager(store, client, webhook, clock)
    assert channels.renew(timedelta(0)).renewed == [], "still within its opener's lease"

    clock.now += timedelta(minutes=3)
    report = channels.renew(timedelta(0))

    assert report.renewed == [CAL]
    assert report.stopped == ["orphan"]
    (live,) = store.live_channels(CAL)
    assert live.resource_id != PENDING_RESOURCE_ID
    assert google_live(calendar_sandbox) == {live.channel_id}


def test_a_calendar_that_is_no_longer_active_loses_its_channels(
    calendar_sandbox: RunningCalendar, store: SqliteStore, client: GoogleCalendarClient, webhook: Webhook
) -> None:
    channels = manager(store, client, webhook)
    channel = channels.ensure(CAL)
    store.set_calendar_status(CAL, CalendarStatus.DISCONNECTED, "credentials refused")

    report = channels.renew(timedelta(hours=2))

    assert (report.renewed, report.stopped) == ([], [channel.channel_id])
    assert store.live_channels(CAL) == []
    assert google_live(calendar_sandbox) == set()


def test_the_lag_loop_tries_a_failed_watch_again(
    calendar_sandbox: RunningCalendar, store: SqliteStore, client: GoogleCalendarClient, webhook: Webhook
) -> None:
    channels = after_a_failed_watch(calendar_sandbox, manager(store, client, webhook))
    broker = changes_broker()
    loop = LagLoop(LagRepair(store, broker, "changes"), 60, channels=partial(channels.renew, timedelta(0)))

    loop.tick()

    (live,) = store.live_channels(CAL)
    assert google_live(calendar_sandbox) == {live.channel_id}


def test_the_schedulers_repair_tick_tries_a_failed_watch_again(
    calendar_sandbox: RunningCalendar, store: SqliteStore, client: GoogleCalendarClient, webhook: Webhook
) -> None:
    """On Cloud Run the in-process loop is off and Cloud Scheduler calls /tasks/repair-lag."""
    channels = after_a_failed_watch(calendar_sandbox, manager(store, client, webhook))
    broker = changes_broker()
    provider = HttpConferenceProvider("http://127.0.0.1:9", Secret("unused"))
    lag = LagRepair(store, broker, "changes")
    parts = IngestParts(Settings(local_mode=True), store, broker, provider, channels, WebhookStats(), lag=lag)
    with ServedApp(Starlette(routes=ingest_routes(parts))) as served:
        answer = httpx.post(f"{served.url}/tasks/repair-lag", timeout=30)
    assert answer.status_code == 200
    assert answer.json()["channels_due"] == {"calendars": 1, "more": False}, "fanned out, one work item"
    fanout = parts.channel_fanout()
    for _, message in broker.pull(Settings().sub_channel_work, 10, timeout_s=1):
        fanout(message)  # what the channel-work subscription hands ingest
    (live,) = store.live_channels(CAL)
    assert google_live(calendar_sandbox) == {live.channel_id}
    provider.close()


def test_a_failed_calendar_keeps_its_channel_for_the_backfill_that_brings_it_back(
    calendar_sandbox: RunningCalendar, store: SqliteStore, client: GoogleCalendarClient, webhook: Webhook
) -> None:
    """Nothing reopens a channel for a calendar that has none: a failed calendar stays watched."""
    channels = manager(store, client, webhook)
    channels.ensure(CAL)
    store.set_calendar_status(CAL, CalendarStatus.FAILED, "400 invalid")

    report = channels.renew(timedelta(hours=2))

    assert (report.renewed, len(report.stopped)) == ([CAL], 1)
    (live,) = store.live_channels(CAL)
    assert google_live(calendar_sandbox) == {live.channel_id}


def test_a_sweep_watches_active_calendars_with_links_that_no_channel_points_to(
    calendar_sandbox: RunningCalendar, store: SqliteStore, client: GoogleCalendarClient, webhook: Webhook
) -> None:
    """What the old failed-watch path left behind: a link, and its channel recorded stopped."""
    store.ensure_calendar(CAL)
    store.upsert_link(Link(CAL, "evt1", "cnf_1"))
    store.ensure_calendar("idle@example.com")  # no links: nothing to follow there
    channels = manager(store, client, webhook)
    assert channels.renew(timedelta(hours=2)).renewed == [], "no channel record: the regular pass cannot see it"

    report = channels.watch_unwatched()

    assert report.renewed == [CAL]
    (live,) = store.live_channels(CAL)
    assert google_live(calendar_sandbox) == {live.channel_id}
    assert store.live_channels("idle@example.com") == []
    assert channels.watch_unwatched().renewed == [], "watched now"


def test_an_opener_whose_lease_ran_out_mid_watch_does_not_revive_its_replaced_channel(
    calendar_sandbox: RunningCalendar, store: SqliteStore, client: GoogleCalendarClient, webhook: Webhook
) -> None:
    """A watch slower than the lease: another instance takes over and opens the channel; the
    slow one, when its answer comes, stops what it opened instead of writing it back live."""
    calendar_sandbox.admin(
        "POST", "/_sandbox/faults", {"method": "POST", "path": WATCH, "latency_ms": 1500, "count": 1}
    )
    slow = manager(store, client, webhook)
    later = Clock()
    later.now += timedelta(minutes=3)  # past the slow one's lease, as this instance sees it
    outcome: list[object] = []

    def open_slowly() -> None:
        try:
            outcome.append(slow.ensure(CAL))
        except ChannelBusy as busy:
            outcome.append(busy)

    opener = threading.Thread(target=open_slowly)
    opener.start()
    wait_until_pending(store)
    report = manager(store, client, webhook, later).renew(timedelta(0))
    opener.join()

    assert report.renewed == [CAL]
    assert isinstance(outcome[0], ChannelBusy)
    (live,) = store.live_channels(CAL)
    assert google_live(calendar_sandbox) == {live.channel_id}


def wait_until_pending(store: SqliteStore) -> None:
    deadline = time.monotonic() + 5
    while not store.live_channels(CAL):
        assert time.monotonic() < deadline, "the slow opener never recorded its channel"
        time.sleep(0.01)
