"""One harness per transport, so the same tests run on the Pub/Sub emulator and in memory."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from google.api_core import exceptions as google_exceptions
from google.api_core.retry import Retry
from google.cloud import pubsub_v1
from google.pubsub_v1.types import DeadLetterPolicy
from tests_support.transport import MAX_ATTEMPTS, Harness, Recorder, Worker

from confsync.settings import Settings
from confsync.transport.base import DeadLetter, Handler, Message
from confsync.transport.memory import MemoryBroker, MemoryWorker
from confsync.transport.pubsub import PubSubPublisher, PubSubUnaryWorker, PubSubWorker, PullOptions

PROJECT = "confsync-test"


@pytest.fixture(
    params=[
        "memory",
        pytest.param("pubsub", marks=pytest.mark.pubsub),
        pytest.param("pubsub-unary", marks=pytest.mark.pubsub),
    ]
)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    maker = _memory if request.param == "memory" else _pubsub
    yield from maker(request)


def _memory(_request: pytest.FixtureRequest) -> Iterator[Harness]:
    broker = MemoryBroker(backoff_s=0.01, max_backoff_s=0.05)
    broker.create_topic("work")
    broker.create_topic("dead")
    broker.create_subscription("work-sub", "work")
    broker.create_subscription("dead-sub", "dead")
    dead = DeadLetter(broker, "dead", "work-sub")

    def start(handler: Handler) -> Worker:
        return MemoryWorker(broker, "work-sub", handler, dead_letter=dead, max_attempts=MAX_ATTEMPTS).start()

    def dead_letters(count: int, timeout: float) -> list[Message]:
        got: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            for ack_id, message in broker.pull("dead-sub", count, 0.1):
                broker.ack("dead-sub", ack_id)
                got.append(message)
        return got

    def drain(timeout: float) -> list[bytes]:
        got = broker.pull("work-sub", 100, timeout)
        for ack_id, _ in got:
            broker.ack("work-sub", ack_id)
        return [message.data for _, message in got]

    harness = Harness(
        "memory",
        lambda data, key, attrs: broker.publish("work", data, ordering_key=key, attributes=attrs),
        start,
        dead_letters,
        drain,
    )
    yield harness
    for worker in harness.workers:
        worker.stop(5)


def _pubsub(request: pytest.FixtureRequest) -> Iterator[Harness]:
    request.getfixturevalue("pubsub_emulator_host")
    settings = Settings(
        project_id=PROJECT,
        pubsub_max_delivery_attempts=MAX_ATTEMPTS,
        pubsub_timeout_s=20,
        shutdown_deadline_s=10,
        pubsub_streams=1,
    )
    suffix = uuid.uuid4().hex[:10]
    topic, dead, sub, dead_sub = f"work-{suffix}", f"dead-{suffix}", f"work-sub-{suffix}", f"dead-sub-{suffix}"
    admin_pub, admin_sub = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    retry = Retry(timeout=20)
    for name in (topic, dead):
        admin_pub.create_topic(name=admin_pub.topic_path(PROJECT, name), retry=retry, timeout=20)
    admin_sub.create_subscription(
        request={
            "name": admin_sub.subscription_path(PROJECT, sub),
            "topic": admin_pub.topic_path(PROJECT, topic),
            "enable_message_ordering": True,
            "ack_deadline_seconds": 10,
            "dead_letter_policy": DeadLetterPolicy(
                dead_letter_topic=admin_pub.topic_path(PROJECT, dead), max_delivery_attempts=MAX_ATTEMPTS
            ),
        },
        retry=retry,
        timeout=20,
    )
    admin_sub.create_subscription(
        request={"name": admin_sub.subscription_path(PROJECT, dead_sub), "topic": admin_pub.topic_path(PROJECT, dead)},
        retry=retry,
        timeout=20,
    )
    publisher = PubSubPublisher.from_settings(settings)
    dead_letter = DeadLetter(publisher, dead, sub)

    kind = PubSubUnaryWorker if request.param == "pubsub-unary" else PubSubWorker
    options = PullOptions.from_settings(settings)

    def start(handler: Handler) -> Worker:
        return kind(options, sub, handler, dead_letter=dead_letter).start()

    def dead_letters(count: int, timeout: float) -> list[Message]:
        got: list[Message] = []
        deadline = time.monotonic() + timeout
        path = admin_sub.subscription_path(PROJECT, dead_sub)
        while len(got) < count and time.monotonic() < deadline:
            try:
                answer = admin_sub.pull(subscription=path, max_messages=count, timeout=2, retry=Retry(timeout=3))
            except google_exceptions.DeadlineExceeded:
                continue
            got.extend(
                Message(item.message.data, dict(item.message.attributes), item.message.message_id)
                for item in answer.received_messages
            )
            if answer.received_messages:
                admin_sub.acknowledge(subscription=path, ack_ids=[i.ack_id for i in answer.received_messages])
        return got

    def drain(timeout: float) -> list[bytes]:
        path = admin_sub.subscription_path(PROJECT, sub)
        try:
            answer = admin_sub.pull(
                subscription=path, max_messages=100, timeout=timeout, retry=Retry(timeout=timeout + 1)
            )
        except google_exceptions.DeadlineExceeded:
            return []
        if answer.received_messages:
            admin_sub.acknowledge(subscription=path, ack_ids=[i.ack_id for i in answer.received_messages])
        return [item.message.data for item in answer.received_messages]

    harness = Harness(
        request.param,
        lambda data, key, attrs: publisher.publish(topic, data, ordering_key=key, attributes=attrs),
        start,
        dead_letters,
        drain,
    )
    yield harness
    for worker in harness.workers:
        worker.stop(5)
    publisher.close()
    admin_sub.close()
    admin_pub.transport.close()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
