"""Sync-lag repair: a calendar notified but not synced since gets a fresh CalendarChanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from confsync.contracts import CalendarChanged, Source
from confsync.provider import HttpConferenceProvider
from confsync.serving import ServedApp
from confsync.settings import Secret, Settings
from confsync.store.sqlite import SqliteStore
from confsync.transport.memory import MemoryBroker
from ingest.app import IngestParts, create_ingest_app
from ingest.channels import ChannelManager
from ingest.lag import LagLoop, LagRepair
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
    with ServedApp(create_ingest_app(parts)) as served:
        dry = httpx.post(f"{served.url}/tasks/repair-lag", params={"dry_run": "1"}, timeout=10)
        assert dry.status_code == 200
        assert dry.json()["republished"] == ["alice@example.com"]
        assert announced(memory) == []
        assert httpx.post(f"{served.url}/tasks/repair-lag", timeout=10).json()["lagging"] == 1
    assert [change.calendar_id for change in announced(memory)] == ["alice@example.com"]
    store.close()


def test_the_cli_reports_lagging_calendars(tmp_path: Path) -> None:
    lagging_store(tmp_path).close()
    clean = {key: value for key, value in os.environ.items() if not key.startswith("CONFSYNC_")}
    env = {**clean, "CONFSYNC_STORE_URL": f"sqlite:///{tmp_path / 'state.sqlite'}"}
    command = [sys.executable, "-m", "confsync", "repair-lag", "--older-than", "60s", "--dry-run"]
    result = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["lagging"], report["republished"]) == (1, ["alice@example.com"])
    text = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False).stdout
    assert text.startswith("1 calendar(s) lagging (oldest "), text
    assert "would re-announce 1" in text
