"""The emulator fixtures are real: one round trip through each emulator with Google's clients."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest
from google.api_core.exceptions import NotFound
from google.api_core.retry import Retry
from google.cloud import firestore, pubsub_v1

from confsync.contracts import CalendarChanged, ResourceState, Source
from confsync.settings import Settings
from stack.emulators import find_jar, pubsub_emulator

PROJECT = "confsync-test"
_RETRY = Retry(timeout=20)


def test_a_calendar_change_survives_a_round_trip_through_the_pubsub_emulator(pubsub_emulator_host: str) -> None:
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    try:
        topic = publisher.topic_path(PROJECT, f"t-{uuid.uuid4().hex}")
        subscription = subscriber.subscription_path(PROJECT, f"s-{uuid.uuid4().hex}")
        publisher.create_topic(name=topic, retry=_RETRY, timeout=20)
        subscriber.create_subscription(name=subscription, topic=topic, retry=_RETRY, timeout=20)
        sent = CalendarChanged(
            calendar_id="alice@example.com",
            source=Source.PUSH,
            received_at=datetime(2026, 11, 24, 18, 0, tzinfo=UTC),
            channel_id="channel-1",
            resource_state=ResourceState.EXISTS,
            message_number=7,
        )
        publisher.publish(topic, sent.to_bytes(), kind="CalendarChanged").result(timeout=20)

        response = subscriber.pull(subscription=subscription, max_messages=10, retry=_RETRY, timeout=20)

        assert len(response.received_messages) == 1
        message = response.received_messages[0].message
        assert CalendarChanged.from_bytes(message.data) == sent
        assert dict(message.attributes) == {"kind": "CalendarChanged"}
        subscriber.acknowledge(
            subscription=subscription, ack_ids=[response.received_messages[0].ack_id], retry=_RETRY, timeout=20
        )
    finally:
        subscriber.close()
        publisher.transport.close()


def test_a_firestore_transaction_commits_in_the_emulator(firestore_emulator_host: str) -> None:
    client = firestore.Client(project=PROJECT)
    try:
        counter = client.collection("counters").document(uuid.uuid4().hex)

        @firestore.transactional  # type: ignore[misc]
        def bump(transaction: firestore.Transaction) -> int:
            snapshot = counter.get(transaction=transaction)
            value = (snapshot.get("value") if snapshot.exists else 0) + 1
            transaction.set(counter, {"value": value})
            return int(value)

        assert bump(client.transaction()) == 1
        assert bump(client.transaction()) == 2
        assert counter.get().get("value") == 2
    finally:
        client.close()


def test_reset_wipes_the_pubsub_emulator(pubsub_emulator_host: str, request: pytest.FixtureRequest) -> None:
    emulator = request.getfixturevalue("_pubsub_process")
    publisher = pubsub_v1.PublisherClient()
    try:
        topic = publisher.topic_path(PROJECT, f"t-{uuid.uuid4().hex}")
        publisher.create_topic(name=topic, retry=_RETRY, timeout=20)
        emulator.reset()
        with pytest.raises(NotFound):
            publisher.get_topic(topic=topic, retry=Retry(timeout=5), timeout=5)
    finally:
        publisher.transport.close()


def test_a_stopped_emulator_process_is_gone() -> None:
    jar = find_jar(Settings.from_env().pubsub_emulator_jar)
    if jar is None:
        pytest.skip("EMULATOR MISSING: Pub/Sub jar not found: this test did NOT run")
    emulator = pubsub_emulator(jar).start()
    pid = emulator.pid
    assert pid is not None
    emulator.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    emulator.stop()  # a second stop is harmless


def test_an_emulator_whose_port_is_taken_starts_on_another(pubsub_emulator_host: str) -> None:
    """Two stacks starting at once can pick the same free port; the loser must not end up
    talking to the winner's emulator (its topics would collide with ours)."""
    jar = find_jar(Settings.from_env().pubsub_emulator_jar)
    assert jar is not None  # the fixture above would have skipped
    taken = int(pubsub_emulator_host.rsplit(":", 1)[1])  # a live emulator answers Ok there
    emulator = pubsub_emulator(jar, port=taken).start()
    try:
        assert emulator.port != taken
        assert emulator.pid is not None
        assert "Address already in use" not in emulator.output()
    finally:
        emulator.stop()


def test_missing_jars_skip_the_emulator_tests_loudly() -> None:
    env = {
        **os.environ,
        "CONFSYNC_PUBSUB_EMULATOR_JAR": "/nonexistent/pubsub-*.jar",
        "CONFSYNC_FIRESTORE_EMULATOR_JAR": "/nonexistent/firestore.jar",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", __file__, "-k", "round_trip or transaction"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    assert "2 skipped" in result.stdout
    assert "EMULATORS MISSING" in result.stdout
    assert "Pub/Sub jar not found at /nonexistent/pubsub-*.jar" in result.stdout


def test_an_emulator_that_dies_at_start_says_how_and_what_it_printed() -> None:
    from confsync.serving import free_port  # noqa: PLC0415
    from stack.emulators import Emulator, EmulatorError  # noqa: PLC0415

    dying = Emulator(
        name="pubsub emulator",
        command=[sys.executable, "-c", "import sys; print('no java here'); sys.exit(3)"],
        port=free_port(),
        reset_request=("POST", "/reset"),
    )
    with pytest.raises(EmulatorError, match=r"exited at start \(code 3\)") as raised:
        dying.start()
    assert "no java here" in str(raised.value)
    assert dying.pid is None
