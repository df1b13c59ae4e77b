"""The processor served both ways: `confsync serve processor` pulling from the emulator (and
draining on SIGTERM), and the push route driven over HTTP."""

from __future__ import annotations

import base64
import signal
import time
import uuid
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from google.api_core import exceptions as google_exceptions
from google.api_core.retry import Retry
from google.cloud import pubsub_v1
from starlette.applications import Starlette
from tests_support import RunningCalendar, addon_link, event_body
from tests_support.cli import confsync_env, run_confsync, start_confsync

from confsync.calendar import GoogleCalendarClient
from confsync.contracts import CalendarChanged, CommandKind, ConferenceCommand, Source
from confsync.serving import ServedApp
from confsync.settings import Settings
from confsync.store.sqlite import SqliteStore
from confsync.transport.memory import MemoryBroker
from processors.app import processor_push_route
from processors.pacing import ListingPace
from processors.worker import CalendarWorker

CAL = "alice@example.com"


def our_event(calendar: RunningCalendar, conference_id: str) -> dict[str, Any]:
    body = {
        **event_body("Planning"),
        "conferenceData": {
            "conferenceId": conference_id,
            "conferenceSolution": {"key": {"type": "addOn"}, "name": "My Web Conference"},
        },
    }
    return calendar.service().events().insert(calendarId=CAL, body=body, conferenceDataVersion=1).execute()


def test_the_push_route_syncs_and_publishes(calendar_sandbox: RunningCalendar, tmp_path: Path) -> None:
    event = our_event(calendar_sandbox, "cnf_push")
    broker = MemoryBroker()
    for topic in ("conference-commands", "calendar-changes-dead"):
        broker.create_topic(topic)
    broker.create_subscription("commands", "conference-commands")
    store = SqliteStore(tmp_path / "s.sqlite")
    addon_link(store, CAL, event)
    client = GoogleCalendarClient(endpoint=calendar_sandbox.api_endpoint)
    worker = CalendarWorker(store, client, broker, "conference-commands", pace=ListingPace(0, 0))
    app = Starlette(routes=[processor_push_route(worker, Settings(local_mode=True), broker)])  # as serve mounts it
    change = CalendarChanged(calendar_id=CAL, source=Source.MANUAL, received_at=datetime.now(UTC))
    envelope = {"message": {"data": base64.b64encode(change.to_bytes()).decode(), "messageId": "1"}}
    with ServedApp(app) as served:
        answer = httpx.post(f"{served.url}/pubsub/calendar-changes", json=envelope, timeout=30)
        poison = {"message": {"data": base64.b64encode(b"nonsense").decode(), "messageId": "2"}}
        assert httpx.post(f"{served.url}/pubsub/calendar-changes", json=poison, timeout=30).status_code == 204
    assert answer.status_code == 204
    ((ack_id, message),) = broker.pull("commands", 10, 1.0)
    broker.ack("commands", ack_id)
    command = ConferenceCommand.from_bytes(message.data)
    assert (command.conference_id, command.kind) == ("cnf_push", CommandKind.UPDATE)
    assert message.ordering_key == "cnf_push"
    client.close()
    store.close()


def test_serve_processor_pulls_from_pubsub_and_drains_on_sigterm(
    pubsub_emulator_host: str, calendar_sandbox: RunningCalendar, tmp_path: Path
) -> None:
    with closing(SqliteStore(tmp_path / "state.sqlite")) as store:
        addon_link(store, CAL, our_event(calendar_sandbox, "cnf_pull"))
    project = f"proc-{uuid.uuid4().hex[:8]}"
    env = confsync_env(
        store=tmp_path / "state.sqlite",
        PUBSUB_EMULATOR_HOST=pubsub_emulator_host,
        CONFSYNC_PROJECT_ID=project,
        CONFSYNC_CALENDAR_API_ENDPOINT=calendar_sandbox.api_endpoint,
        CONFSYNC_LOG_FORMAT="json",
    )
    boot = run_confsync("pubsub", "bootstrap", env=env)
    assert boot.returncode == 0, boot.stderr
    server = start_confsync("serve", "processor", env=env)
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    try:
        change = CalendarChanged(calendar_id=CAL, source=Source.MANUAL, received_at=datetime.now(UTC))
        publisher.publish(publisher.topic_path(project, "calendar-changes"), change.to_bytes()).result(timeout=20)
        commands_sub = subscriber.subscription_path(project, "conference-commands-publisher")
        command = None
        deadline = time.monotonic() + 30
        while command is None and time.monotonic() < deadline:
            try:
                answer = subscriber.pull(subscription=commands_sub, max_messages=10, timeout=3, retry=Retry(timeout=4))
            except google_exceptions.DeadlineExceeded:
                continue
            for item in answer.received_messages:
                command = ConferenceCommand.from_bytes(item.message.data)
        assert command is not None, "a command reached conference-commands"
        assert command.conference_id == "cnf_pull"
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
        assert server.returncode == 0, err
        assert "all workers stopped" in err
    finally:
        if server.poll() is None:
            server.kill()
        subscriber.close()
        publisher.transport.close()
