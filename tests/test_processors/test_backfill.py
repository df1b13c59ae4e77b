"""Backfill on a 20,000-event sandbox calendar: the summary matches the truth, a dry run
changes nothing; a job fans out to the processors, one calendar per request, a failing calendar
fails alone, and a killed job resumes without any calendar listed twice."""

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
from urllib.parse import unquote

import pytest
from tests_support import PROVIDER_KEY, RunningCalendar, RunningProvider, event_body
from tests_support.cli import confsync_env, run_confsync, start_confsync

from confsync.calendar import GoogleCalendarClient
from confsync.contracts import CalendarChanged, CommandReason, ConferenceCommand
from confsync.settings import Settings
from confsync.store import BackfillEntry, BackfillJob, BackfillState, Link
from confsync.store.sqlite import SqliteStore
from confsync.transport.memory import MemoryBroker
from processors.backfill import Backfill, FanOut, Selection
from stack.root import Stack

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


def fan_out_world(calendar: RunningCalendar, store_path: Path, count: int) -> list[str]:
    """``count`` calendars of 3 events each, in the store; the fourth answers 403 ``forbidden``."""
    calendars = [f"c{n:02d}@example.com" for n in range(count)]
    with closing(SqliteStore(store_path)) as store:
        for calendar_id in calendars:
            events = [{"id": f"evt{n:04d}", **event_body(f"{calendar_id} {n}", day=n)} for n in range(3)]
            calendar.admin("POST", f"/_sandbox/calendars/{calendar_id}/bulk-insert", {"events": events})
            store.ensure_calendar(calendar_id)
        # A conference whose event is gone: the full listing's reconciliation deletes it.
        store.upsert_link(Link(calendars[0], "gone", "cnf_gone", "fp", datetime.now(UTC)))
    rule = {"method": "GET", "path": "c03(@|%40)example\\.com/events", "status": 403, "reason": "forbidden"}
    calendar.admin("POST", "/_sandbox/faults", rule)
    return calendars


def listings(calendar: RunningCalendar) -> Counter[str]:
    """Full listings (events.list) per calendar, from the sandbox's journal."""
    counted: Counter[str] = Counter()
    for entry in calendar.journal():
        path = unquote(entry["path"])
        if entry["method"] == "GET" and path.endswith("/events") and "/calendars/" in path:
            counted[path.split("/calendars/")[1].removesuffix("/events")] += 1
    return counted


def test_the_embedded_default_fans_a_backfill_out_in_process_and_one_failing_calendar_fails_alone(
    calendar_sandbox: RunningCalendar, provider_sandbox: RunningProvider, tmp_path: Path
) -> None:
    calendars = fan_out_world(calendar_sandbox, tmp_path / "state.sqlite", 6)
    limited = {"path": "c01(@|%40)example\\.com/events$", "status": 403, "reason": "rateLimitExceeded", "count": 2}
    calendar_sandbox.admin("POST", "/_sandbox/faults", limited)
    env = confsync_env(
        store=tmp_path / "state.sqlite",
        CONFSYNC_CALENDAR_API_ENDPOINT=calendar_sandbox.api_endpoint,
        CONFSYNC_PROVIDER_URL=provider_sandbox.url,
        CONFSYNC_PROVIDER_API_KEY=PROVIDER_KEY,
        CONFSYNC_TRANSPORT="memory",
        CONFSYNC_DELETE_GRACE_S="0",
        CONFSYNC_RETRY_INITIAL_S="0.05",
        CONFSYNC_LOG_LEVEL="warning",
    )
    done = run_confsync("backfill", "--all", "--json", env=env, timeout=120)
    assert done.returncode == 1, "a failed calendar fails the waited-for job"
    report = json.loads(done.stdout)
    assert (report["done"], report["failed"], report["pending"]) == (5, 1, 0)
    (failure,) = report["failures"]
    assert failure["calendar_id"] == "c03@example.com"
    assert "403" in failure["cause"]
    assert "lost access" in failure["cause"]
    # Each calendar listed once; c01's page asked again after each of its two rate-limit refusals.
    assert listings(calendar_sandbox) == {**dict.fromkeys(calendars, 1), "c01@example.com": 3}
    deletes = [e for e in provider_sandbox.journal() if e["method"] == "DELETE"]
    assert [e["path"].rsplit("/", 1)[1] for e in deletes] == ["cnf_gone"]

    status = run_confsync("backfill", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert f"backfill {report['job_id']} (all)" in status.stdout
    assert "5 done, 1 failed, 0 pending" in status.stdout
    assert "failed  c03@example.com  lost access" in status.stdout


@pytest.mark.pubsub
def test_a_killed_backfill_job_resumes_and_no_calendar_is_listed_twice(
    pubsub_emulator_host: str, calendar_sandbox: RunningCalendar, tmp_path: Path
) -> None:
    calendars = fan_out_world(calendar_sandbox, tmp_path / "state.sqlite", 24)
    env = confsync_env(
        store=tmp_path / "state.sqlite",
        PUBSUB_EMULATOR_HOST=pubsub_emulator_host,
        CONFSYNC_TRANSPORT="pubsub",
        CONFSYNC_PROJECT_ID=f"bf-{uuid.uuid4().hex[:8]}",
        CONFSYNC_CALENDAR_API_ENDPOINT=calendar_sandbox.api_endpoint,
        CONFSYNC_LOG_LEVEL="warning",
    )
    assert run_confsync("pubsub", "bootstrap", env=env).returncode == 0
    first = start_confsync("backfill", "--all", "--rate", "4", env=env)
    store = SqliteStore(tmp_path / "state.sqlite")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(job.requested >= 8 for job in store.backfill_jobs()):
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=20)
    (killed,) = store.backfill_jobs()
    assert not killed.paged_all, "killed midway"

    second = run_confsync("backfill", "--all", "--rate", "100", "--json", env=env, timeout=120)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["job_id"] == killed.job_id, "the same job, resumed"

    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("CONFSYNC_")})
    with Stack(settings, store=store) as stack:
        worker = stack.transport.worker(
            settings.sub_calendar_changes, stack.worker, settings.topic_calendar_changes_dead
        )
        try:
            while time.monotonic() < deadline + 60 and store.backfill_progress(killed.job_id).pending:
                time.sleep(0.1)
        finally:
            worker.stop(10)
    progress = store.backfill_progress(killed.job_id)
    assert (progress.done, progress.failed, progress.pending) == (23, 1, 0)
    assert listings(calendar_sandbox) == dict.fromkeys(calendars, 1), "no calendar listed twice"
    store.close()


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


def test_a_paged_job_run_again_requests_only_what_is_pending_and_held_by_no_one(tmp_path: Path) -> None:
    """A request dead-lettered, or a claim whose processor died, is published again; a calendar
    done, failed or being listed under a live claim is not."""
    now = datetime.now(UTC)
    broker = MemoryBroker(queue_limit=100)
    broker.create_topic("changes")
    broker.create_subscription("changes-sub", "changes")
    with closing(SqliteStore(tmp_path / "state.sqlite")) as store:
        job = BackfillJob("bf-1", "all", now, cursor="e@example.com", requested=5, paged_all=True)
        store.put_backfill_job(job)
        store.request_backfill("bf-1", ["a@example.com", "b@example.com", "c@example.com", "d@example.com"], now)
        store.claim_backfill("bf-1", "b@example.com", now=now, until=now + timedelta(minutes=10))  # being listed
        store.claim_backfill("bf-1", "c@example.com", now=now - timedelta(hours=1), until=now - timedelta(minutes=1))
        store.claim_backfill("bf-1", "d@example.com", now=now, until=now + timedelta(minutes=10))
        store.finish_backfill(
            BackfillEntry("bf-1", "d@example.com", BackfillState.DONE, now), held_until=now + timedelta(minutes=10)
        )
        fan_out = FanOut(store, broker, "changes", per_s=1000)
        assert fan_out.job(Selection(), None, job_id=None, new=False) != job, "a job that paged to its end: a new one"
        assert fan_out.job(Selection(), None, job_id="bf-1", new=False) == job, "resumed by its id"
        again = fan_out.run(job, Selection())
        assert again.requested == 7
        requests = [CalendarChanged.from_bytes(message.data) for _, message in broker.pull("changes-sub", 10, 0.1)]
    assert sorted(r.calendar_id for r in requests) == ["a@example.com", "c@example.com"]
    assert {r.job_id for r in requests} == {"bf-1"}
