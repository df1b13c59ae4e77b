"""Channel passes as paged fan-out: a tick publishes one work item per due calendar, a page at a
time, and the channel-work handler renews each calendar once, however often its item comes
(ticks that overlap, redeliveries), under the calendar's lease. Against the calendar sandbox
over HTTP, a SQLite store and the in-process broker."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from tests_support import RunningCalendar, Webhook
from tests_support.transport import wait_until

from confsync.calendar import GoogleCalendarClient
from confsync.contracts import ChannelScan, ChannelSweep, ChannelWork, read_channel_message
from confsync.rfc3339 import utc_now
from confsync.store import Link
from confsync.store.sqlite import SqliteStore
from confsync.transport.base import DeadLetter, Message
from confsync.transport.memory import MemoryBroker, MemoryWorker
from ingest.channels import ChannelBusy, ChannelFanout, ChannelManager

CALENDARS = [f"user{n:02}@example.com" for n in range(12)]
TOPIC, SUB, DEAD = "channel-work", "channel-work-ingest", "channel-work-dead"
WINDOW = timedelta(hours=2)


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
    for calendar_id in CALENDARS:
        calendar_sandbox.admin("POST", "/_sandbox/calendars", {"id": calendar_id})
    client = GoogleCalendarClient(endpoint=calendar_sandbox.api_endpoint)
    yield client
    client.close()


@pytest.fixture
def broker() -> MemoryBroker:
    broker = MemoryBroker(backoff_s=0.02, max_backoff_s=0.2)
    for topic in (TOPIC, DEAD):
        broker.create_topic(topic)
    broker.create_subscription(SUB, TOPIC)
    broker.create_subscription("dead-hold", DEAD)
    return broker


def manager(
    store: SqliteStore, client: GoogleCalendarClient, webhook: Webhook, clock: Clock | None = None
) -> ChannelManager:
    """Renewals ask for a day, so a renewed channel is past the two-hour window."""
    return ChannelManager(store, client, webhook_url=webhook.url, ttl_s=86400, clock=clock or utc_now)


def watched_for_an_hour(store: SqliteStore, client: GoogleCalendarClient, webhook: Webhook) -> dict[str, str]:
    """Every calendar with a channel expiring within the window: {calendar: its channel id}."""
    short = ChannelManager(store, client, webhook_url=webhook.url, ttl_s=3600)
    return {calendar_id: short.ensure(calendar_id).channel_id for calendar_id in CALENDARS}


def watches(calendar_sandbox: RunningCalendar) -> Counter[str]:
    """events.watch calls Calendar received, by calendar."""
    paths = [e["path"] for e in calendar_sandbox.journal() if e["method"] == "POST" and e["path"].endswith("/watch")]
    return Counter(path.split("/calendars/", 1)[1].split("/", 1)[0] for path in paths)


def run_workers(broker: MemoryBroker, fanout: ChannelFanout) -> MemoryWorker:
    dead = DeadLetter(broker, DEAD, SUB)
    return MemoryWorker(broker, SUB, fanout, dead_letter=dead, max_attempts=20, concurrency=4).start()


def queued(broker: MemoryBroker) -> list[ChannelWork | ChannelScan]:
    """What waits on the channel-work subscription (pulled and acknowledged)."""
    taken = broker.pull(SUB, 1000, timeout_s=0.1)
    broker.ack_many(SUB, [ack_id for ack_id, _ in taken])
    return [read_channel_message(message.data) for _, message in taken]


def split(items: list[ChannelWork | ChannelScan]) -> tuple[list[str], list[ChannelScan]]:
    """The calendars of the work items, and the pages."""
    calendars = [item.calendar_id for item in items if isinstance(item, ChannelWork)]
    return calendars, [item for item in items if isinstance(item, ChannelScan)]


def test_a_tick_publishes_one_item_per_due_calendar_and_the_next_page(
    calendar_sandbox: RunningCalendar,
    store: SqliteStore,
    client: GoogleCalendarClient,
    webhook: Webhook,
    broker: MemoryBroker,
) -> None:
    watched_for_an_hour(store, client, webhook)
    fanout = ChannelFanout(manager(store, client, webhook), store, broker, TOPIC, page_size=5)

    page = fanout.start(ChannelSweep.RENEW, WINDOW)

    assert (page.calendars, page.more) == (5, True)
    calendars, (following,) = split(queued(broker))
    assert len(set(calendars)) == 5, "one item per calendar"
    assert fanout.scan(following).calendars == 5
    more, (last,) = split(queued(broker))
    assert fanout.scan(last).calendars == 2
    rest, scans = split(queued(broker))
    assert (len(set(calendars + more + rest)), scans) == (12, []), "12 calendars: pages of 5, 5 and 2, then no more"
    assert sum(watches(calendar_sandbox).values()) == len(CALENDARS), "a tick only publishes: nothing renewed yet"


def test_overlapping_ticks_and_redeliveries_renew_each_calendar_once(
    calendar_sandbox: RunningCalendar,
    store: SqliteStore,
    client: GoogleCalendarClient,
    webhook: Webhook,
    broker: MemoryBroker,
) -> None:
    old = watched_for_an_hour(store, client, webhook)
    fanout = ChannelFanout(manager(store, client, webhook), store, broker, TOPIC, page_size=5)
    worker = run_workers(broker, fanout)
    try:
        start = threading.Barrier(2)

        def tick() -> None:
            start.wait()
            fanout.start(ChannelSweep.RENEW, WINDOW)

        ticks = [threading.Thread(target=tick) for _ in range(2)]
        for thread in ticks:
            thread.start()
        for thread in ticks:
            thread.join()
        wait_until(lambda: broker.backlog(SUB) == 0, what="the channel work to be done")
        # a redelivery of every item, after the renewals
        horizon = utc_now() + WINDOW
        broker.publish_many(TOPIC, [(ChannelWork(c, ChannelSweep.RENEW, horizon).to_bytes(), c, {}) for c in CALENDARS])
        wait_until(lambda: broker.backlog(SUB) == 0, what="the redelivered work to be done")
    finally:
        worker.stop(5)

    assert watches(calendar_sandbox) == Counter(dict.fromkeys(CALENDARS, 2)), "the first watch and one renewal each"
    for calendar_id in CALENDARS:
        (live,) = store.live_channels(calendar_id)
        assert live.channel_id != old[calendar_id]
        assert live.expiration > horizon
    assert broker.backlog("dead-hold") == 0


def test_a_pass_cut_short_leaves_what_is_still_due_to_the_next_tick(
    calendar_sandbox: RunningCalendar,
    store: SqliteStore,
    client: GoogleCalendarClient,
    webhook: Webhook,
    broker: MemoryBroker,
) -> None:
    """The first page's calendars are renewed, then the pass dies (its next page is lost)."""
    watched_for_an_hour(store, client, webhook)
    fanout = ChannelFanout(manager(store, client, webhook), store, broker, TOPIC, page_size=5)
    fanout.start(ChannelSweep.RENEW, WINDOW)
    for item in queued(broker):
        if isinstance(item, ChannelWork):
            fanout(Message(item.to_bytes()))
    assert sum(1 for c in CALENDARS if store.live_channels(c)[0].expiration > utc_now() + WINDOW) == 5

    worker = run_workers(broker, fanout)
    try:
        page = fanout.start(ChannelSweep.RENEW, WINDOW)  # the next tick, from the beginning
        wait_until(lambda: broker.backlog(SUB) == 0, what="the channel work to be done")
    finally:
        worker.stop(5)

    assert page.calendars == 5, "what is still due, not what the cut-short pass renewed"
    assert watches(calendar_sandbox) == Counter(dict.fromkeys(CALENDARS, 2))


def test_a_lease_held_by_a_crashed_worker_holds_off_renewal_until_it_runs_out(
    calendar_sandbox: RunningCalendar, store: SqliteStore, client: GoogleCalendarClient, webhook: Webhook
) -> None:
    clock = Clock()
    channels = manager(store, client, webhook, clock)
    (calendar_id, *_) = CALENDARS
    ChannelManager(store, client, webhook_url=webhook.url, ttl_s=3600).ensure(calendar_id)
    with channels._leased(calendar_id) as held:  # what a worker that crashed mid-renewal leaves
        assert held
        item = ChannelWork(calendar_id, ChannelSweep.RENEW, clock.now + WINDOW)
        with pytest.raises(ChannelBusy):  # a nack: Pub/Sub brings the item back later
            channels.work(item)

        clock.now += timedelta(minutes=3)  # the crashed holder's lease ran out
        assert channels.work(item).renewed == [calendar_id]
    assert watches(calendar_sandbox)[calendar_id] == 2


def test_the_watch_sweep_opens_channels_only_where_links_have_none(
    calendar_sandbox: RunningCalendar,
    store: SqliteStore,
    client: GoogleCalendarClient,
    webhook: Webhook,
    broker: MemoryBroker,
) -> None:
    linked, watched, idle = CALENDARS[:3]
    for calendar_id in (linked, watched, idle):
        store.ensure_calendar(calendar_id)
    for calendar_id in (linked, watched):
        store.upsert_link(Link(calendar_id, "evt1", f"cnf-{calendar_id}"))
    channels = manager(store, client, webhook)
    channels.ensure(watched)
    fanout = ChannelFanout(channels, store, broker, TOPIC, page_size=2)
    worker = run_workers(broker, fanout)
    try:
        fanout.start(ChannelSweep.WATCH)
        wait_until(lambda: broker.backlog(SUB) == 0, what="the sweep to be done")
    finally:
        worker.stop(5)

    assert watches(calendar_sandbox) == Counter({linked: 1, watched: 1}), "every active calendar was looked at once"
    assert len(store.live_channels(linked)) == 1
    assert store.live_channels(idle) == []
