"""The ingest service wired to real parts: the calendar and provider sandboxes over HTTP, a
SQLite store, and the Pub/Sub emulator (published messages are read back from a subscription)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.api_core import exceptions as google_exceptions
from google.api_core.retry import Retry
from google.cloud import pubsub_v1
from tests_support import FAST_RETRY, PROVIDER_KEY, RunningCalendar, RunningProvider

from confsync.contracts import CalendarChanged
from confsync.ports import Store
from confsync.serving import ServedApp, free_port
from confsync.settings import Secret, Settings
from confsync.tls import tls_context
from ingest.channels import ChannelManager
from ingest.webhook import WebhookStats
from sandbox.calendar import create_app as create_calendar_app
from sandbox.calendar.server import build_sandbox as build_calendar
from sandbox.provider import create_app as create_provider_app
from sandbox.provider.server import build_sandbox as build_provider
from stack.roles import Role
from stack.root import Stack
from stack.services import build_service

PROJECT = "confsync-test"
DEV_TOKEN = "dev-token-for-tests"


@dataclass
class Ingest:
    url: str
    settings: Settings
    store: Store
    channels: ChannelManager
    stats: WebhookStats
    calendar: RunningCalendar
    provider: RunningProvider
    subscriber: Any
    subscription: str
    served: ServedApp | None = None  # the webhook's server: a test may stop it (the service's shutdown)

    def published(self, expected: int, timeout: float | None = None) -> list[CalendarChanged]:
        """What reached the calendar-changes topic (read, acked); waits until ``expected`` came."""
        return [change for change, _ in self.received(expected, timeout)]

    def received(self, expected: int, timeout: float | None = None) -> list[tuple[CalendarChanged, dict[str, str]]]:
        """``published``, each with its message's attributes."""
        # The webhook answers once Pub/Sub holds its message: expecting none, a short look is enough.
        timeout = timeout if timeout is not None else (3.0 if expected else 0.5)
        got: list[tuple[CalendarChanged, dict[str, str]]] = []
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
            got += [
                (CalendarChanged.from_bytes(item.message.data), dict(item.message.attributes))
                for item in answer.received_messages
            ]
            self.subscriber.acknowledge(
                subscription=self.subscription, ack_ids=[item.ack_id for item in answer.received_messages]
            )
        return got

    def notify(self, **headers: str) -> httpx.Response:
        return httpx.post(f"{self.url}/notifications", headers=headers, timeout=10, verify=tls_context())


@pytest.fixture
def ingest(pubsub_emulator_host: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Ingest]:
    """Settings overrides come as ``indirect`` parameters; notifications are not folded unless
    a test asks (``notify_fold_s``): most tests count what each notification publishes."""
    overrides: dict[str, Any] = {"notify_fold_s": 0, **getattr(request, "param", {})}
    suffix = uuid.uuid4().hex[:8]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        project_id=PROJECT,
        local_mode=True,
        dev_token=Secret(DEV_TOKEN),
        topic_calendar_changes=f"changes-{suffix}",
        topic_channel_work=f"channel-work-{suffix}",
        sub_channel_work=f"channel-work-ingest-{suffix}",
        webhook_url=f"{url}/notifications",
        pubsub_timeout_s=5,
        store_url=f"sqlite:///{tmp_path / 'state.sqlite'}",
        provider_api_key=Secret(PROVIDER_KEY),
        lag_repair_interval_s=0,
        channel_ttl_s=3600,
        **overrides,
    )
    admin_pub, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = admin_pub.topic_path(PROJECT, settings.topic_calendar_changes)
    admin_pub.create_topic(name=topic, retry=Retry(timeout=20))
    subscription = subscriber.subscription_path(PROJECT, f"changes-sub-{suffix}")
    subscriber.create_subscription(name=subscription, topic=topic, retry=Retry(timeout=20))
    work = admin_pub.topic_path(PROJECT, settings.topic_channel_work)  # what ingest fans out to itself
    admin_pub.create_topic(name=work, retry=Retry(timeout=20))
    work_sub = subscriber.subscription_path(PROJECT, settings.sub_channel_work)
    subscriber.create_subscription(name=work_sub, topic=work, retry=Retry(timeout=20))

    calendar_sandbox = build_calendar()
    calendar_sandbox.retry = FAST_RETRY
    provider_served = ServedApp(create_provider_app(build_provider(api_key=PROVIDER_KEY))).start()
    calendar_served = ServedApp(create_calendar_app(calendar_sandbox)).start()
    settings = replace(
        settings, calendar_api_endpoint=f"{calendar_served.url}/calendar/v3/", provider_url=provider_served.url
    )
    stack = Stack(settings)
    service = build_service(settings, Role.INGEST, stack=stack)  # as `confsync serve ingest` builds it
    served = ServedApp(service.app, port=port).start()
    running_calendar = RunningCalendar(calendar_sandbox, calendar_served.url)
    try:
        yield Ingest(
            url, settings, stack.store, stack.channels, stack.webhook_stats, running_calendar,
            RunningProvider(provider_served.url), subscriber, subscription, served,
        )  # fmt: skip
    finally:
        served.stop()
        service.stop(5)
        running_calendar.close()
        calendar_served.stop()
        provider_served.stop()
        subscriber.close()
        admin_pub.transport.close()
