"""Sync-lag repair: a calendar notified but not synced since gets a fresh CalendarChanged."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from starlette.applications import Starlette
from structlog.testing import capture_logs
from tests_support.cli import confsync_env, run_confsync

from confsync.contracts import CalendarChanged, CommandKind, CommandReason, ConferenceCommand, Source
from confsync.provider import HttpConferenceProvider
from confsync.serving import ServedApp
from confsync.settings import Secret, Settings
from confsync.store import OutboxEntry
from confsync.store.sqlite import SqliteStore
from confsync.transport.base import Message
from confsync.transport.memory import MemoryBroker
from ingest.app import IngestParts, ingest_routes
from ingest.channels import ChannelManager
from ingest.lag import LagLoop, LagRepair, Unsettled
from ingest.webhook import WebhookStats
from processors.worker import CalendarWorker

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
TOPIC, SUB = "calendar-changes", "calendar-changes-processor"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def broker() -> MemoryBroker:
    memory = MemoryBroker()
    memory.create_topic(TOPIC)
    memory.create_subscription(SUB, TOPIC)
    return memory


def announced(memory: MemoryBroker) -> list[CalendarChanged]:
    changes = []
    for ack_id, message in memory.pull(SUB, 100, 0.05):
        changes.append(CalendarChanged.from_bytes(message.data))
        memory.ack(SUB, ack_id)
    return changes


def lagging_store(tmp_path: Path) -> SqliteStore:
    """alice: synced, then notified (a lost message); bob: synced after his notification."""
    store = SqliteStore(tmp_path / "state.sqlite")
    for calendar_id in ("alice@example.com", "bob@example.com"):
        store.ensure_calendar(calendar_id)
    assert store.save_sync_token("alice@example.com", "t1", expected_version=0, at=T0)
    store.record_notification("alice@example.com", "ch-a", 7, T0 + timedelta(seconds=1))
    store.record_notification("bob@example.com", "ch-b", 3, T0 + timedelta(seconds=1))
    assert store.save_sync_token("bob@example.com", "t1", expected_version=0, at=T0 + timedelta(seconds=2))
    return store


def test_a_calendar_left_behind_is_reannounced_once_per_window_until_a_sync_covers_it(tmp_path: Path) -> None:
    store, memory, clock = lagging_store(tmp_path), broker(), Clock(T0 + timedelta(seconds=30))
    repair = LagRepair(store, memory, TOPIC, older_than=timedelta(seconds=60), clock=clock)
    assert repair.run_once().lagging == 0, "30 s behind is not yet lag"
    assert announced(memory) == []

    clock.now = T0 + timedelta(seconds=62)
    report = repair.run_once()
    assert (report.lagging, report.republished, report.oldest_lag_s) == (1, ["alice@example.com"], 61.0)
    (change,) = announced(memory)
    assert (change.calendar_id, change.source, change.received_at) == ("alice@example.com", Source.REPAIR, clock.now)
    state = store.get_calendar("alice@example.com")
    assert not CalendarWorker._covered(change, state), "the processor must list for it, not coalesce it away"

    clock.now += timedelta(seconds=30)
    assert repair.run_once().republished == [], "announced 30 s ago: its message is still on its way"
    clock.now += timedelta(seconds=31)
    assert repair.run_once().republished == ["alice@example.com"], "still behind a window later: again"
    announced(memory)

    assert store.save_sync_token("alice@example.com", "t2", expected_version=1, at=clock.now)
    clock.now += timedelta(seconds=120)
    assert repair.run_once().lagging == 0
    assert announced(memory) == []
    store.close()


def test_a_calendar_quiet_past_the_poll_interval_is_listed_anyway_once_per_interval(tmp_path: Path) -> None:
    """No notification at all (its channel went silent): only the poll finds it."""
    store, memory, clock = SqliteStore(tmp_path / "state.sqlite"), broker(), Clock(T0 + timedelta(hours=1))
    store.ensure_calendar("alice@example.com")
    assert store.save_sync_token("alice@example.com", "t1", expected_version=0, at=T0)
    repair = LagRepair(store, memory, TOPIC, poll_after=timedelta(hours=6), clock=clock)
    assert repair.run_once().polled == 0, "an hour quiet is not yet suspicious"
    clock.now = T0 + timedelta(hours=6, seconds=1)
    report = repair.run_once()
    assert (report.polled, report.lagging) == (1, 0)
    (change,) = announced(memory)
    assert (change.calendar_id, change.source) == ("alice@example.com", Source.POLL)
    assert not CalendarWorker._covered(change, store.get_calendar("alice@example.com")), "it must be listed"
    clock.now += timedelta(minutes=1)
    assert repair.run_once().polled == 0, "polled a minute ago: its listing is on its way"
    assert store.save_sync_token("alice@example.com", "t2", expected_version=1, at=clock.now)
    clock.now += timedelta(hours=1)
    assert repair.run_once().polled == 0, "listed since"
    assert LagRepair(store, memory, TOPIC, clock=clock).run_once().polled == 0, "no poll interval: never"
    store.close()


def test_a_dry_run_reports_and_publishes_nothing(tmp_path: Path) -> None:
    store, memory = lagging_store(tmp_path), broker()
    repair = LagRepair(store, memory, TOPIC, clock=Clock(T0 + timedelta(hours=1)))
    assert repair.run_once(dry_run=True).republished == ["alice@example.com"]
    assert announced(memory) == []
    assert repair.run_once().republished == ["alice@example.com"], "a dry run does not count as announced"
    store.close()


def test_the_loop_repairs_in_the_background_and_stops(tmp_path: Path) -> None:
    store, memory = lagging_store(tmp_path), broker()
    loop = LagLoop(LagRepair(store, memory, TOPIC, older_than=timedelta(seconds=1)), interval_s=0.05).start()
    deadline = time.monotonic() + 10
    changes: list[CalendarChanged] = []
    while not changes and time.monotonic() < deadline:
        changes = announced(memory)
    assert loop.stop(5), "the loop thread ends on stop"
    assert [change.calendar_id for change in changes] == ["alice@example.com"]
    store.close()


class FailsOnce:
    """A publisher whose first call fails with a bug-like error (not a confsync error)."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.failed = False

    def publish(
        self, topic: str, data: bytes, *, ordering_key: str = "", attributes: Mapping[str, str] | None = None
    ) -> str:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a bug in a background step")
        return self.broker.publish(topic, data, ordering_key=ordering_key, attributes=attributes)

    def publish_many(self, topic: str, messages: list[tuple[bytes, str, Mapping[str, str]]]) -> list[str]:
        return [self.publish(topic, data, ordering_key=key, attributes=attrs) for data, key, attrs in messages]


def test_the_loop_survives_an_unexpected_error_and_repairs_on_the_next_tick(tmp_path: Path) -> None:
    store, memory = lagging_store(tmp_path), broker()
    publisher = FailsOnce(memory)
    repair = LagRepair(store, publisher, TOPIC, older_than=timedelta(seconds=1))
    with capture_logs() as logs:
        loop = LagLoop(repair, interval_s=0.05).start()
        deadline = time.monotonic() + 10
        changes: list[CalendarChanged] = []
        while not changes and time.monotonic() < deadline:
            changes = announced(memory)
        assert loop.stop(5)
    assert publisher.failed
    assert [change.calendar_id for change in changes] == ["alice@example.com"], "the next tick did the work"
    (failure,) = [entry for entry in logs if entry["log_level"] == "error"]
    assert failure["step"] == "lag repair"
    assert failure["exc_info"] is True, "the traceback is logged"
    store.close()


def command_in_outbox(store: SqliteStore) -> ConferenceCommand:
    command = ConferenceCommand.create(
        kind=CommandKind.DELETE,
        conference_id="cnf_1",
        calendar_id="alice@example.com",
        event_id="e1",
        event_updated=T0,
        reason=CommandReason.CANCELLED,
        fingerprint="fp",
    )
    store.outbox_add([OutboxEntry(command.command_id, command.conference_id, command.to_bytes(), T0)])
    return command


def test_an_unsettled_command_is_republished_up_to_the_cap_then_dead_lettered_with_its_cause(tmp_path: Path) -> None:
    store, memory, clock = SqliteStore(tmp_path / "state.sqlite"), broker(), Clock(T0 + timedelta(seconds=1))
    for topic in ("commands", "commands-dead"):
        memory.create_subscription(f"{topic}-sub", topic)
    command = command_in_outbox(store)
    repair = LagRepair(store, memory, TOPIC, "commands", "commands-dead", max_republishes=2, clock=clock)
    copies: list[Message] = []
    reports = []
    with capture_logs() as logs:
        for _ in range(8):  # hours of ticks: far more than the doubling delays of two copies
            reports.append(repair.run_once())
            for ack_id, message in memory.pull("commands-sub", 10, 0.01):
                memory.ack("commands-sub", ack_id)  # delivered, then lost: never settled
                copies.append(message)
            clock.now += timedelta(minutes=30)
    assert [message.data for message in copies] == [command.to_bytes()] * 2, "two copies, then no more"
    assert sum(r.commands_republished for r in reports) == 2
    assert sum(r.commands_dead_lettered for r in reports) == 1
    counted = [e["republishes"] for e in logs if e["event"] == "command republished"]
    assert counted == [1, 2], "each copy is counted in the logs"

    ((_, letter),) = memory.pull("commands-dead-sub", 10, 0.01)
    assert letter.data == command.to_bytes(), "the command itself, ready for `confsync deadletter replay`"
    assert letter.attributes["dead_letter_error"] == Unsettled.__name__
    assert "after 2 republishes" in letter.attributes["dead_letter_reason"]
    assert letter.attributes["dead_letter_attempts"] == "2"
    (given_up,) = [e for e in logs if e["log_level"] == "error"]
    assert given_up["command_id"] == command.command_id
    assert store.outbox_due(clock.now + timedelta(days=30)) == [], "settled: it left the outbox"
    store.close()


def test_the_cap_is_a_setting_and_a_dry_run_reports_what_would_be_dead_lettered(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.sqlite")
    command = command_in_outbox(store)
    store.outbox_reschedule(command.command_id, T0, 3)
    store.close()
    env = confsync_env(store=tmp_path / "state.sqlite")
    for cap, expected in (("3", (0, 1)), ("4", (1, 0))):
        result = run_confsync("repair-lag", "--dry-run", "--json", env={**env, "CONFSYNC_OUTBOX_MAX_REPUBLISHES": cap})
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert (report["commands_republished"], report["commands_dead_lettered"]) == expected, cap
    assert Settings().outbox_max_republishes == 10


def test_the_scheduler_route_runs_it(tmp_path: Path) -> None:
    store, memory = lagging_store(tmp_path), broker()
    parts = IngestParts(
        Settings(local_mode=True),
        store,
        memory,
        HttpConferenceProvider("http://127.0.0.1:9", Secret("unused")),
        ChannelManager(store, None, webhook_url="https://x.example/n", ttl_s=3600),  # type: ignore[arg-type]
        WebhookStats(),
        lag=LagRepair(store, memory, TOPIC, older_than=timedelta(seconds=1)),
    )
    with ServedApp(Starlette(routes=ingest_routes(parts))) as served:
        dry = httpx.post(f"{served.url}/tasks/repair-lag", params={"dry_run": "1"}, timeout=10)
        assert dry.status_code == 200
        assert dry.json()["republished"] == ["alice@example.com"]
        assert announced(memory) == []
        assert httpx.post(f"{served.url}/tasks/repair-lag", timeout=10).json()["lagging"] == 1
    assert [change.calendar_id for change in announced(memory)] == ["alice@example.com"]
    store.close()


def test_the_cli_reports_lagging_calendars(tmp_path: Path) -> None:
    lagging_store(tmp_path).close()
    env = confsync_env(store=tmp_path / "state.sqlite")
    args = ("repair-lag", "--older-than", "60s", "--dry-run")
    result = run_confsync(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["lagging"], report["republished"]) == (1, ["alice@example.com"])
    text = run_confsync(*args, env=env).stdout
    assert text.startswith("1 calendar(s) lagging (oldest "), text
    assert "would re-announce 1" in text
