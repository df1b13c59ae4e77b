"""Backfill on a 20,000-event sandbox calendar: the summary matches the truth, a dry run
changes nothing, and a killed run resumes without re-sending what it already published."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as google_exceptions
from google.api_core.retry import Retry
from google.cloud import pubsub_v1
from tests_support import RunningCalendar, event_body
from tests_support.cli import confsync_env, run_confsync, start_confsync

from confsync.calendar import GoogleCalendarClient
from confsync.contracts import CommandReason, ConferenceCommand
from confsync.store import Link
from confsync.store.sqlite import SqliteStore
from confsync.transport.memory import MemoryBroker
from processors.backfill import Backfill

CAL = "big@example.com"
EVENTS = 20_000


def seed(calendar: RunningCalendar, store: SqliteStore, count: int = EVENTS) -> None:
    """Half the events carry our conference, with the owning links the add-on made; half are plain."""
    made = datetime.now(UTC)
    for first in range(0, count, 5000):
        events = []
        for n in range(first, min(first + 5000, count)):
            body = {"id": f"ev{n:06d}", **event_body(f"e{n}", day=n % 300)}
            if n % 2 == 0:
                body["conferenceData"] = {
                    "conferenceId": f"cnf_{n}",
                    "conferenceSolution": {"key": {"type": "addOn"}, "name": "My Web Conference"},
                }
                store.add_link(Link(CAL, body["id"], f"cnf_{n}", created_at=made))
            events.append(body)
        calendar.admin("POST", f"/_sandbox/calendars/{CAL}/bulk-insert", {"events": events, "conferenceDataVersion": 1})


@pytest.fixture
def backfill(calendar_sandbox: RunningCalendar, tmp_path: Path) -> Any:
    broker = MemoryBroker(queue_limit=100_000)
    broker.create_topic("commands")
    broker.create_subscription("commands-sub", "commands")
    store = SqliteStore(tmp_path / "state.sqlite")
    client = GoogleCalendarClient(endpoint=calendar_sandbox.api_endpoint)

    def make(**options: Any) -> Backfill:
        return Backfill(store, client, broker, "commands", requests_per_s=1000, **options)

    make.broker, make.store = broker, store  # type: ignore[attr-defined]
    yield make
    client.close()
    store.close()


def published(broker: MemoryBroker) -> list[ConferenceCommand]:
    got = []
    while batch := broker.pull("commands-sub", 10_000, 0.05):
        for ack_id, message in batch:
            broker.ack("commands-sub", ack_id)
            got.append(ConferenceCommand.from_bytes(message.data))
    return got


def test_a_20000_event_backfill_reports_the_truth(calendar_sandbox: RunningCalendar, backfill: Any) -> None:
    store: SqliteStore = backfill.store
    seed(calendar_sandbox, store)
    store.upsert_link(Link(CAL, "gone00000001", "cnf_gone", "fp", datetime.now(UTC)))
    summary = backfill().run([CAL])
    assert (summary.events_read, summary.updates, summary.unchanged, summary.deletes) == (
        EVENTS,
        EVENTS // 2,
        EVENTS // 2,
        0,
    )
    assert summary.reconciled == 1
    commands = published(backfill.broker)
    assert len(commands) == EVENTS // 2 + 1
    assert len({c.command_id for c in commands}) == len(commands)
    assert [c.conference_id for c in commands if c.reason is CommandReason.RECONCILED] == ["cnf_gone"]
    assert store.get_calendar(CAL).sync_token, "incremental sync continues from the backfill"

    again = backfill().run([CAL])
    assert (again.updates, again.unchanged) == (0, EVENTS), "a second backfill finds nothing to do"
    assert published(backfill.broker) == []


def test_a_dry_run_decides_and_changes_nothing(calendar_sandbox: RunningCalendar, backfill: Any) -> None:
    seed(calendar_sandbox, backfill.store, 100)
    links = backfill.store.live_links(CAL)
    summary = backfill(dry_run=True).run([CAL])
    assert (summary.updates, summary.unchanged) == (50, 50)
    assert len(summary.decisions) == 50
    assert {d.action for d in summary.decisions} == {"update"}
    assert published(backfill.broker) == []
    assert backfill.store.live_links(CAL) == links, "links as the add-on left them"
    assert backfill.store.get_calendar(CAL) is None


def test_a_killed_backfill_resumes_without_resending(
    pubsub_emulator_host: str, calendar_sandbox: RunningCalendar, tmp_path: Path
) -> None:
    with closing(SqliteStore(tmp_path / "state.sqlite")) as store:
        seed(calendar_sandbox, store)
    project = f"bf-{uuid.uuid4().hex[:8]}"
    admin, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = admin.topic_path(project, "conference-commands")
    admin.create_topic(name=topic, retry=Retry(timeout=20))
    subscription = subscriber.subscription_path(project, "count")
    subscriber.create_subscription(name=subscription, topic=topic, retry=Retry(timeout=20))
    checkpoint = tmp_path / "backfill.json"
    env = confsync_env(
        store=tmp_path / "state.sqlite",
        PUBSUB_EMULATOR_HOST=pubsub_emulator_host,
        CONFSYNC_PROJECT_ID=project,
        CONFSYNC_CALENDAR_API_ENDPOINT=calendar_sandbox.api_endpoint,
        CONFSYNC_BACKFILL_REQUESTS_PER_S="4",
        CONFSYNC_LOG_LEVEL="warning",
    )
    command = ("backfill", "--calendar", CAL, "--checkpoint", str(checkpoint), "--page-size", "1000", "--json")
    first = start_confsync(*command, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if checkpoint.exists() and json.loads(checkpoint.read_text())[CAL]["counts"]["events_read"] >= 5000:
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=20)
    done_before = json.loads(checkpoint.read_text())[CAL]
    assert not done_before["done"], "killed mid-run"

    second = run_confsync(*command, env=env, timeout=300)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["events_read"] == EVENTS

    ids: Counter[str] = Counter()
    try:
        while True:
            try:
                answer = subscriber.pull(
                    subscription=subscription, max_messages=1000, timeout=3, retry=Retry(timeout=4)
                )
            except google_exceptions.DeadlineExceeded:
                break
            if not answer.received_messages:
                break
            ids.update(ConferenceCommand.from_bytes(m.message.data).command_id for m in answer.received_messages)
            subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in answer.received_messages])
    finally:
        subscriber.close()
        admin.transport.close()
    assert len(ids) == EVENTS // 2, "every conference got its update"
    resent = sum(count - 1 for count in ids.values())
    assert resent <= 1000, f"at most the page in flight at the kill is sent again (was {resent})"


def test_a_backfill_lists_each_calendar_as_its_own_user(calendar_sandbox: RunningCalendar, backfill: Any) -> None:
    seed(calendar_sandbox, backfill.store, count=10)
    backfill.store.ensure_calendar(CAL, subject="alice@example.com")
    client = GoogleCalendarClient(endpoint=calendar_sandbox.api_endpoint)
    asked: list[str | None] = []

    def calendar_for(subject: str | None) -> GoogleCalendarClient:
        asked.append(subject)
        return client

    try:
        summary = backfill(calendar_for=calendar_for).run([CAL])
    finally:
        client.close()
    assert asked == ["alice@example.com"]
    assert summary.events_read == 10


def test_the_backfill_command_uses_the_configured_credentials(
    calendar_sandbox: RunningCalendar, tmp_path: Path
) -> None:
    """As the services do: a calendar whose user has no refresh token is refused by name, never
    listed anonymously (which only a sandbox allows)."""
    store = SqliteStore(tmp_path / "state.sqlite")
    seed(calendar_sandbox, store, count=10)
    store.ensure_calendar(CAL, subject="alice@example.com")
    store.close()
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"bob@example.com": "1//bob-refresh-token"}))
    env = confsync_env(
        store=tmp_path / "state.sqlite",
        CONFSYNC_CALENDAR_API_ENDPOINT=calendar_sandbox.api_endpoint,
        CONFSYNC_CALENDAR_USER_TOKENS_FILE=str(tokens),
        CONFSYNC_OAUTH_CLIENT_ID="client.apps.googleusercontent.com",
        CONFSYNC_OAUTH_CLIENT_SECRET="client-secret",
        CONFSYNC_LOG_LEVEL="warning",
    )
    done = run_confsync("backfill", "--calendar", CAL, "--dry-run", env=env)
    assert done.returncode == 1, done.stdout
    assert "no refresh token for alice@example.com" in done.stderr


def test_a_backfill_deletes_conferences_whose_event_was_never_saved_once_they_are_old(
    calendar_sandbox: RunningCalendar, backfill: Any
) -> None:
    store = backfill.store
    seed(calendar_sandbox, store, count=10)
    now = datetime.now(UTC)
    # a plain event: the add-on added a conference to it two days ago, and the user discarded the edit
    items = calendar_sandbox.service().events().list(calendarId=CAL).execute()["items"]
    plain = next(item for item in items if "conferenceData" not in item)
    saw = datetime.fromisoformat(plain["updated"].replace("Z", "+00:00"))
    store.upsert_link(Link(CAL, plain["id"], "cnf_discarded_edit", None, saw, created_at=now - timedelta(days=2)))
    store.upsert_link(Link(CAL, "gone", "cnf_gone", "fp", now - timedelta(days=3)))  # confirmed, event deleted
    store.upsert_link(Link(CAL, "discarded", "cnf_orphan", None, None, created_at=now - timedelta(days=2)))
    store.upsert_link(Link(CAL, "editing", "cnf_editing", None, now, created_at=now - timedelta(minutes=5)))

    dry = backfill(dry_run=True).run([CAL])
    assert (dry.reconciled, dry.orphans) == (2, 2)
    assert {d.event_id: d.why for d in dry.decisions if d.action == "delete"} == {
        "gone": "event no longer in Calendar",
        "discarded": "never saved on its event",
        plain["id"]: "the add-on's conference was never saved on the event",
    }
    assert published(backfill.broker) == [], "a dry run publishes nothing"

    summary = backfill().run([CAL])
    assert (summary.reconciled, summary.orphans) == (2, 2)
    deletes = {c.conference_id: c for c in published(backfill.broker) if c.kind.value == "delete"}
    assert set(deletes) == {"cnf_gone", "cnf_orphan", "cnf_discarded_edit"}
    assert deletes["cnf_orphan"].event_updated == now - timedelta(days=2)
    assert store.get_link(CAL, "editing").state.value == "live", "the user may still save it"
    assert store.get_link(CAL, "discarded").state.value == "deleted"
