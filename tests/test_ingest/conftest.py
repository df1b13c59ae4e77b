"""The ingest service wired to real parts: the calendar and provider sandboxes over HTTP, a
SQLite store, and the Pub/Sub emulator (published messages are read back from a subscription)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.api_core import exceptions as google_exceptions
from google.api_core.retry import Retry
from google.cloud import pubsub_v1
from tests_support import FAST_RETRY, PROVIDER_KEY, RunningCalendar, RunningProvider

from confsync.calendar import GoogleCalendarClient
from confsync.contracts import CalendarChanged
from confsync.provider import HttpConferenceProvider
from confsync.serving import ServedApp, free_port
from confsync.settings import Secret, Settings
from confsync.store.sqlite import SqliteStore
from confsync.transport.pubsub import PubSubPublisher
from ingest.app import IngestParts, create_ingest_app
from ingest.channels import ChannelManager
from ingest.webhook import WebhookStats
from sandbox.calendar import create_app as create_calendar_app
from sandbox.calendar.server import build_sandbox as build_calendar
from sandbox.provider import create_app as create_provider_app
from sandbox.provider.server import build_sandbox as build_provider

PROJECT = "confsync-test"
DEV_TOKEN = "dev-token-for-tests"


@dataclass
class Ingest:
    url: str
    settings: Settings
    store: SqliteStore
    channels: ChannelManager
    stats: WebhookStats
    calendar: RunningCalendar
    provider: RunningProvider
    subscriber: Any
    subscription: str

    def published(self, expected: int, timeout: float = 3.0) -> list[CalendarChanged]:
        """What reached the calendar-changes topic (read, acked); waits until ``expected`` came."""
        got: list[CalendarChanged] = []
        attempts = 0
        while len(got) < expected or attempts == 0:
            attempts += 1
            try:
                answer = self.subscriber.pull(
                    subscription=self.subscription, max_messages=100, timeout=timeout, retry=Retry(timeout=timeout + 1)
                )
            except google_exceptions.DeadlineExceeded:
                break
            if not answer.received_messages:
                break
            got += [CalendarChanged.from_bytes(item.message.data) for item in answer.received_messages]
            self.subscriber.acknowledge(
                subscription=self.subscription, ack_ids=[item.ack_id for item in answer.received_messages]
            )
        return got

    def notify(self, **headers: str) -> httpx.Response:
        return httpx.post(f"{self.url}/notifications", headers=headers, timeout=10)


@pytest.fixture
def ingest(pubsub_emulator_host: str, tmp_path: Path) -> Iterator[Ingest]:
    suffix = uuid.uuid4().hex[:8]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        project_id=PROJECT,
        local_mode=True,
        dev_token=Secret(DEV_TOKEN),
        topic_calendar_changes=f"changes-{suffix}",
        webhook_url=f"{url}/notifications",
        pubsub_timeout_s=5,
    )
    admin_pub, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = admin_pub.topic_path(PROJECT, settings.topic_calendar_changes)
    admin_pub.create_topic(name=topic, retry=Retry(timeout=20))
    subscription = subscriber.subscription_path(PROJECT, f"changes-sub-{suffix}")
    subscriber.create_subscription(name=subscription, topic=topic, retry=Retry(timeout=20))

    calendar_sandbox = build_calendar()
    calendar_sandbox.retry = FAST_RETRY
    provider_served = ServedApp(create_provider_app(build_provider(api_key=PROVIDER_KEY))).start()
    calendar_served = ServedApp(create_calendar_app(calendar_sandbox)).start()
    store = SqliteStore(tmp_path / "state.sqlite")
    publisher = PubSubPublisher(settings)  # what the webhook runs with in production
    calendar_client = GoogleCalendarClient(endpoint=f"{calendar_served.url}/calendar/v3/")
    provider = HttpConferenceProvider(provider_served.url, Secret(PROVIDER_KEY), timeout_s=5)
    channels = ChannelManager(
        store, calendar_client, webhook_url=settings.webhook_url or "", ttl_s=3600, publisher=publisher,
        changes_topic=settings.topic_calendar_changes,
    )  # fmt: skip
    stats = WebhookStats()
    app = create_ingest_app(IngestParts(settings, store, publisher, provider, channels, stats))
    served = ServedApp(app, port=port).start()
    running_calendar = RunningCalendar(calendar_sandbox, calendar_served.url)
    try:
        yield Ingest(
            url, settings, store, channels, stats, running_calendar, RunningProvider(provider_served.url),
            subscriber, subscription,
        )  # fmt: skip
    finally:
        served.stop()
        running_calendar.close()
        calendar_client.close()
        provider.close()
        publisher.close()
        store.close()
        calendar_served.stop()
        provider_served.stop()
        subscriber.close()
        admin_pub.transport.close()
