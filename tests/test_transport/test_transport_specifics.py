"""What only one transport promises: Pub/Sub's ordered publishing recovers from a failure,
streaming pull respects flow control; the in-process broker pushes back when it is full."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from google.api_core import exceptions as google_exceptions
from google.api_core.retry import Retry
from google.cloud import pubsub_v1
from tests_support.transport import wait_until

from confsync.errors import NotFound, TransientError
from confsync.settings import Settings
from confsync.transport.base import DeadLetter, Message
from confsync.transport.memory import MemoryBroker
from confsync.transport.pubsub import PubSubPublisher, PubSubUnaryWorker, PubSubWorker, PullOptions

PROJECT = "confsync-test"


def test_an_ordering_key_works_again_after_a_failed_publish(pubsub_emulator_host: str) -> None:
    settings = Settings(project_id=PROJECT, pubsub_timeout_s=3)
    publisher = PubSubPublisher.from_settings(settings)
    admin = pubsub_v1.PublisherClient()
    topic = f"late-{uuid.uuid4().hex[:8]}"
    try:
        with pytest.raises(TransientError, match="publish to"):
            publisher.publish(topic, b"too early", ordering_key="cal-1")  # the topic does not exist yet
        admin.create_topic(name=admin.topic_path(PROJECT, topic), retry=Retry(timeout=10))
        assert publisher.publish(topic, b"now", ordering_key="cal-1"), "the key was resumed, not left paused"
    finally:
        publisher.close()
        admin.transport.close()


def test_streaming_pull_holds_no_more_than_flow_control_allows(pubsub_emulator_host: str) -> None:
    settings = Settings(project_id=PROJECT, pubsub_flow_max_messages=2, pubsub_timeout_s=20, pubsub_streams=1)
    admin_pub, admin_sub = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    suffix = uuid.uuid4().hex[:8]
    topic, sub = admin_pub.topic_path(PROJECT, f"fc-{suffix}"), admin_sub.subscription_path(PROJECT, f"fc-sub-{suffix}")
    admin_pub.create_topic(name=topic, retry=Retry(timeout=20))
    admin_sub.create_subscription(name=sub, topic=topic, retry=Retry(timeout=20))
    for n in range(12):
        admin_pub.publish(topic, f"m{n}".encode()).result(timeout=20)
    active, peak, done = 0, 0, []
    lock = threading.Lock()

    def slow(message: Message) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1
            done.append(message.data)

    publisher = PubSubPublisher.from_settings(settings)
    dead = DeadLetter(publisher, "unused", sub)
    worker = PubSubWorker(PullOptions.from_settings(settings), sub, slow, dead_letter=dead).start()
    try:
        wait_until(lambda: len(done) >= 12, what="all 12 messages")
    finally:
        worker.stop(5)
        publisher.close()
        admin_sub.close()
        admin_pub.transport.close()
    assert 1 <= peak <= 2


def test_a_full_in_process_broker_pushes_back_instead_of_growing() -> None:
    broker = MemoryBroker(queue_limit=3, publish_timeout_s=0.2)
    broker.create_topic("work")
    broker.create_subscription("work-sub", "work")
    for n in range(3):
        broker.publish("work", f"m{n}".encode())
    with pytest.raises(TransientError, match="back-pressure"):
        broker.publish("work", b"one too many")
    ((ack_id, _),) = broker.pull("work-sub", 1, 1.0)
    broker.ack("work-sub", ack_id)
    assert broker.publish("work", b"room again")
    assert broker.backlog("work-sub") == 3


def test_a_waiting_publisher_is_released_as_soon_as_room_frees_up() -> None:
    broker = MemoryBroker(queue_limit=1, publish_timeout_s=10)
    broker.create_topic("work")
    broker.create_subscription("work-sub", "work")
    broker.publish("work", b"first")
    released = threading.Event()
    threading.Thread(target=lambda: (broker.publish("work", b"second"), released.set())).start()
    assert not released.wait(0.2), "the publisher waits while the broker is full"
    ((ack_id, _),) = broker.pull("work-sub", 1, 1.0)
    broker.ack("work-sub", ack_id)
    assert released.wait(5), "an ack makes room and wakes the publisher"


def test_acks_in_one_call_free_each_key_and_its_room_once() -> None:
    broker = MemoryBroker(queue_limit=4)
    broker.create_topic("work")
    broker.create_subscription("work-sub", "work")
    for key in ("a", "b", "a", "b"):
        broker.publish("work", key.encode(), ordering_key=key)
    first = broker.pull("work-sub", 10, 1.0)
    assert [m.data for _, m in first] == [b"a", b"b"], "one message per key while its key is busy"
    ids = [ack_id for ack_id, _ in first]
    broker.ack_many("work-sub", [*ids, *ids, 999])  # repeated and unknown ids are ignored
    assert broker.backlog("work-sub") == 2
    assert [m.data for _, m in broker.pull("work-sub", 10, 1.0)] == [b"a", b"b"]


def test_a_slow_handlers_ack_is_not_held_back_by_the_rest_of_its_batch() -> None:
    """The worker acks fast handlers once per pulled batch, but a slow one at once: the next
    message of its key goes to another thread while this thread still works on its batch."""
    from confsync.transport.memory import MemoryWorker  # noqa: PLC0415

    broker = MemoryBroker()
    for name in ("work", "dead"):
        broker.create_topic(name)
    broker.create_subscription("work-sub", "work")
    second_a_handled = threading.Event()
    b_saw_it: list[bool] = []

    def handler(message: Message) -> None:
        if message.data == b"a1":
            time.sleep(0.01)  # slow: its ack goes out before b1 runs
        elif message.data == b"b1":
            b_saw_it.append(second_a_handled.wait(5))
        elif message.data == b"a2":
            second_a_handled.set()

    for data, key in ((b"a1", "a"), (b"b1", "b"), (b"a2", "a")):
        broker.publish("work", data, ordering_key=key)
    worker = MemoryWorker(
        broker, "work-sub", handler, dead_letter=DeadLetter(broker, "dead", "work-sub"), concurrency=2, batch=10
    ).start()
    try:
        wait_until(lambda: broker.backlog("work-sub") == 0, timeout=10, what="every message handled")
    finally:
        worker.stop(5)
    assert b_saw_it == [True], "a2 ran while b1 (pulled with a1) was still running"


def test_an_idle_in_process_worker_stops_at_once_and_a_late_message_still_finds_a_waiting_thread() -> None:
    """Idle worker threads wait long (they do not poll), yet a message published while they wait
    is handled, and ``stop`` ends their waits instead of sitting them out."""
    from confsync.transport.memory import _PULL_WAIT_S, MemoryWorker  # noqa: PLC0415

    broker = MemoryBroker()
    for name in ("work", "dead"):
        broker.create_topic(name)
    broker.create_subscription("work-sub", "work")
    handled = threading.Event()
    worker = MemoryWorker(
        broker, "work-sub", lambda _: handled.set(), dead_letter=DeadLetter(broker, "dead", "work-sub"), concurrency=3
    ).start()
    try:
        time.sleep(0.3)  # every thread is waiting in pull by now
        broker.publish("work", b"late", ordering_key="k")
        assert handled.wait(_PULL_WAIT_S / 2), "a waiting thread took the message when it came"
    finally:
        assert worker.stop(deadline_s=_PULL_WAIT_S / 2), "stop ended the idle threads' waits"


def test_publishing_to_an_unknown_topic_in_memory_is_not_found() -> None:
    with pytest.raises(NotFound):
        MemoryBroker().publish("nowhere", b"x")


def test_the_publisher_keeps_each_keys_order_across_concurrent_callers(pubsub_emulator_host: str) -> None:
    settings = Settings(project_id=PROJECT, pubsub_timeout_s=20)
    admin_pub, admin_sub = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    suffix = uuid.uuid4().hex[:8]
    topic = admin_pub.topic_path(PROJECT, f"batch-{suffix}")
    sub = admin_sub.subscription_path(PROJECT, f"batch-sub-{suffix}")
    admin_pub.create_topic(name=topic, retry=Retry(timeout=20))
    admin_sub.create_subscription(
        request={"name": sub, "topic": topic, "enable_message_ordering": True}, retry=Retry(timeout=20)
    )
    publisher = PubSubPublisher.from_settings(settings)

    def publish_key(key: str) -> None:
        for seq in range(15):
            publisher.publish(f"batch-{suffix}", f"{key}:{seq}".encode(), ordering_key=key)

    threads = [threading.Thread(target=publish_key, args=(f"cal-{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    received: list[bytes] = []
    try:
        while len(received) < 90:
            answer = admin_sub.pull(subscription=sub, max_messages=100, timeout=5, retry=Retry(timeout=6))
            received += [item.message.data for item in answer.received_messages]
            admin_sub.acknowledge(subscription=sub, ack_ids=[item.ack_id for item in answer.received_messages])
    finally:
        publisher.close()
        admin_sub.close()
        admin_pub.transport.close()
    for n in range(6):
        order = [int(data.split(b":")[1]) for data in received if data.startswith(f"cal-{n}:".encode())]
        assert order == list(range(15))


def test_a_batch_beyond_one_requests_limits_is_split_and_all_of_it_published(pubsub_emulator_host: str) -> None:
    """2,500 messages (Pub/Sub takes 1,000 a request) reach the subscription, each once; twelve
    of 1 MiB (10 MB a request; the emulator drops a 12 MiB request) are all accepted."""
    settings = Settings(project_id=PROJECT, pubsub_timeout_s=30)
    admin_pub, admin_sub = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    suffix = uuid.uuid4().hex[:8]
    topic, sub = admin_pub.topic_path(PROJECT, f"big-{suffix}"), admin_sub.subscription_path(PROJECT, f"big-{suffix}")
    admin_pub.create_topic(name=topic, retry=Retry(timeout=20))
    admin_sub.create_subscription(name=sub, topic=topic, retry=Retry(timeout=20))
    publisher = PubSubPublisher.from_settings(settings)
    received: set[str] = set()
    try:
        small = publisher.publish_many(f"big-{suffix}", [(f"m{n}".encode(), f"k{n % 7}", {}) for n in range(2500)])
        deadline = time.monotonic() + 60
        while len(received) < 2500 and time.monotonic() < deadline:
            answer = admin_sub.pull(subscription=sub, max_messages=1000, timeout=10, retry=Retry(timeout=12))
            received |= {item.message.message_id for item in answer.received_messages}
            if answer.received_messages:
                admin_sub.acknowledge(subscription=sub, ack_ids=[item.ack_id for item in answer.received_messages])
        large = publisher.publish_many(f"big-{suffix}", [(bytes(2**20), "", {"n": str(n)}) for n in range(12)])
    finally:
        publisher.close()
        admin_sub.close()
        admin_pub.transport.close()
    assert len(set(small)) == 2500
    assert received == set(small)
    assert len(set(large)) == 12


def test_a_failed_publish_fails_its_keys_queued_messages_instead_of_letting_them_overtake(
    pubsub_emulator_host: str,
) -> None:
    """A message for a key, queued while an earlier one for the same key is failing, fails with
    it (as google-cloud-pubsub's ordered publisher does); other keys and later publishes go through."""
    settings = Settings(project_id=PROJECT, pubsub_timeout_s=2)
    admin = pubsub_v1.PublisherClient()
    topic = f"pause-{uuid.uuid4().hex[:8]}"
    admin.create_topic(name=admin.topic_path(PROJECT, topic), retry=Retry(timeout=10))
    publisher = PubSubPublisher.from_settings(settings)
    outcomes: dict[str, str] = {}

    def publish(name: str, data: bytes, key: str) -> None:
        try:
            publisher.publish(topic, data, ordering_key=key)
            outcomes[name] = "published"
        except TransientError:
            outcomes[name] = "failed"

    # 12 MiB in one message: the emulator gives up on the request after the 2 s deadline.
    first = threading.Thread(target=publish, args=("too big", bytes(12 * 2**20), "cal-1"))
    try:
        first.start()
        time.sleep(0.5)  # the big request is in flight: these two wait behind it
        behind = [
            threading.Thread(target=publish, args=("same key behind it", b"later", "cal-1")),
            threading.Thread(target=publish, args=("other key", b"unrelated", "cal-2")),
        ]
        for thread in behind:
            thread.start()
        for thread in [first, *behind]:
            thread.join(30)
        after = publisher.publish(topic, b"retried", ordering_key="cal-1")
    finally:
        publisher.close()
        admin.transport.close()
    assert outcomes == {"too big": "failed", "same key behind it": "failed", "other key": "published"}
    assert after, "the key was resumed once its callers saw the failure"


def test_an_ack_that_gives_up_leaves_the_unary_worker_acknowledging_later_messages(pubsub_emulator_host: str) -> None:
    """Pub/Sub unreachable for longer than an Acknowledge's retry budget loses that batch's acks
    (those messages come back after their deadline), never the worker's acker."""
    settings = Settings(project_id=PROJECT, pubsub_timeout_s=5, pubsub_streams=1)
    admin_pub, admin_sub = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    suffix = uuid.uuid4().hex[:8]
    topic, sub = admin_pub.topic_path(PROJECT, f"ack-{suffix}"), admin_sub.subscription_path(PROJECT, f"ack-{suffix}")
    admin_pub.create_topic(name=topic, retry=Retry(timeout=20))
    admin_sub.create_subscription(name=sub, topic=topic, retry=Retry(timeout=20))
    handled: list[bytes] = []
    publisher = PubSubPublisher.from_settings(settings)
    dead = DeadLetter(publisher, "unused", sub)
    options = PullOptions.from_settings(settings)
    worker = PubSubUnaryWorker(options, sub, lambda m: handled.append(m.data), dead_letter=dead)
    acknowledged: list[int] = []
    real = worker._acknowledge

    def unreachable_once(request: Any, *, timeout: float) -> Any:
        if not acknowledged:
            acknowledged.append(0)
            raise google_exceptions.RetryError("Timeout of 5.0s exceeded", cause=None)
        acknowledged.append(len(request.ack_ids))
        return real(request, timeout=timeout)

    worker._acknowledge = unreachable_once  # type: ignore[method-assign]
    worker.start()
    try:
        admin_pub.publish(topic, b"first").result(timeout=20)
        wait_until(lambda: bool(acknowledged), what="the first ack to fail")
        admin_pub.publish(topic, b"second").result(timeout=20)
        wait_until(lambda: b"second" in handled and sum(acknowledged) >= 1, timeout=10, what="the second message's ack")
    finally:
        worker.stop(5)
        publisher.close()
        admin_sub.close()
        admin_pub.transport.close()
