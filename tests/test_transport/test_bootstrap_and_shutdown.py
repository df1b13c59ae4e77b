"""`confsync pubsub bootstrap` against the emulator, and SIGTERM draining a real worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from google.api_core.retry import Retry
from google.cloud import pubsub_v1
from tests_support.cli import confsync_env, run_confsync

from confsync.settings import Settings
from confsync.transport.base import DeadLetter
from confsync.transport.pubsub import PubSubPublisher, PubSubUnaryWorker, PullOptions
from confsync.transport.topology import topology


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_confsync(*args, env=confsync_env(**env), timeout=120)


def test_bootstrap_creates_everything_once_and_then_changes_nothing(pubsub_emulator_host: str) -> None:
    project = f"boot-{uuid.uuid4().hex[:8]}"
    first = run_cli("pubsub", "bootstrap", CONFSYNC_PROJECT_ID=project, PUBSUB_EMULATOR_HOST=pubsub_emulator_host)
    assert first.returncode == 0, first.stderr
    expected = topology(Settings(project_id=project))
    assert f"{len(expected.topics) + len(expected.subscriptions)} created, 0 already there" in first.stdout
    second = run_cli("pubsub", "bootstrap", CONFSYNC_PROJECT_ID=project, PUBSUB_EMULATOR_HOST=pubsub_emulator_host)
    assert second.returncode == 0, second.stderr
    assert f"0 created, {len(expected.topics) + len(expected.subscriptions)} already there" in second.stdout

    subscriber = pubsub_v1.SubscriberClient()
    try:
        worker = subscriber.get_subscription(
            subscription=subscriber.subscription_path(project, "conference-commands-publisher"), retry=Retry(timeout=10)
        )
        assert worker.enable_message_ordering
        assert worker.dead_letter_policy.dead_letter_topic.endswith("/topics/conference-commands-dead")
        # an overload gets 20 attempts over more than an hour of backoff before any dead letter
        assert worker.dead_letter_policy.max_delivery_attempts == 20
        assert worker.retry_policy.maximum_backoff.total_seconds() == 600
        hold = subscriber.get_subscription(
            subscription=subscriber.subscription_path(project, "conference-commands-dead-hold"), retry=Retry(timeout=10)
        )
        assert hold.topic.endswith("/topics/conference-commands-dead")
    finally:
        subscriber.close()


def test_bootstrap_says_clearly_when_pubsub_is_unreachable() -> None:
    result = run_cli("pubsub", "bootstrap", PUBSUB_EMULATOR_HOST="127.0.0.1:1", CONFSYNC_PUBSUB_TIMEOUT_S="2")
    assert result.returncode == 1
    assert "Pub/Sub refused or did not answer" in result.stderr
    assert "Traceback" not in result.stderr


WORKER = """
import sys, threading, time
from confsync.logs import configure_logging
from confsync.settings import Settings
from confsync.transport.base import DeadLetter
from confsync.transport.pubsub import PubSubPublisher, PubSubUnaryWorker, PubSubWorker, PullOptions
from confsync.transport.runner import run_until_signalled
settings = Settings(project_id=sys.argv[1], log_format="json", shutdown_deadline_s=15, pubsub_lease_extension_s=10)
kind = PubSubUnaryWorker if sys.argv[4] == "unary" else PubSubWorker
configure_logging(settings)
publisher = PubSubPublisher.from_settings(settings)
def slow(message):
    print("started", message.data.decode(), flush=True)
    time.sleep(2)
    print("finished", message.data.decode(), flush=True)
dead = DeadLetter(publisher, sys.argv[3], sys.argv[2])
worker = kind(PullOptions.from_settings(settings), sys.argv[2], slow, dead_letter=dead).start()
clean = run_until_signalled([worker], deadline_s=15)
publisher.close()
print("exit clean" if clean else "exit dirty", flush=True)
sys.exit(0 if clean else 3)
"""


@pytest.mark.parametrize("pull", ["streaming", "unary"])
def test_sigterm_finishes_in_flight_work_and_exits_cleanly(pubsub_emulator_host: str, pull: str) -> None:
    project = "confsync-test"
    suffix = uuid.uuid4().hex[:8]
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic, dead = publisher.topic_path(project, f"w-{suffix}"), publisher.topic_path(project, f"d-{suffix}")
    publisher.create_topic(name=topic, retry=Retry(timeout=20))
    publisher.create_topic(name=dead, retry=Retry(timeout=20))
    subscriber.create_subscription(
        name=subscriber.subscription_path(project, f"s-{suffix}"), topic=topic, retry=Retry(timeout=20)
    )
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": pubsub_emulator_host}
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, project, f"s-{suffix}", f"d-{suffix}", pull],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        publisher.publish(topic, b"job-1").result(timeout=20)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "started job-1"
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        subscriber.close()
        publisher.transport.close()
    assert "finished job-1" in out
    assert "exit clean" in out
    assert process.returncode == 0, err
    assert time.monotonic() - started < 15, "no hung threads kept the process alive"
    assert '"message": "signal received, draining"' in err


def test_after_a_unary_worker_is_killed_its_successor_gets_every_new_message_and_the_held_one(
    pubsub_emulator_host: str,
) -> None:
    """The reason the local stack pulls without streams on the emulator (confsync/transport/pubsub/unary.py)."""
    project, suffix = "confsync-test", uuid.uuid4().hex[:8]
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(project, f"w-{suffix}")
    publisher.create_topic(name=topic, retry=Retry(timeout=20))
    subscriber.create_subscription(
        name=subscriber.subscription_path(project, f"s-{suffix}"), topic=topic, retry=Retry(timeout=20)
    )
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": pubsub_emulator_host}
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, project, f"s-{suffix}", f"d-{suffix}", "unary"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    got: list[tuple[str, int | None]] = []
    settings = Settings(project_id=project, pubsub_lease_extension_s=10)
    dead_publisher = PubSubPublisher.from_settings(settings)
    successor = None
    try:
        publisher.publish(topic, b"job-1").result(timeout=20)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "started job-1"
        process.kill()
        process.wait(timeout=10)
        dead = DeadLetter(dead_publisher, f"d-{suffix}", f"s-{suffix}")
        successor = PubSubUnaryWorker(
            PullOptions.from_settings(settings),
            f"s-{suffix}",
            lambda m: got.append((m.data.decode(), m.delivery_attempt)),
            dead_letter=dead,
        ).start()
        for n in range(20):
            publisher.publish(topic, f"new-{n}".encode()).result(timeout=20)
        deadline = time.monotonic() + 45
        while len({data for data, _ in got}) < 21 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        if successor is not None:
            successor.stop(10)
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)  # closes its pipe
        dead_publisher.close()
        subscriber.close()
        publisher.transport.close()
    assert {data for data, _ in got} == {"job-1", *(f"new-{n}" for n in range(20))}


SIGNALLED_ELSEWHERE = """
import signal, sys, threading, time
from confsync.transport.runner import run_until_signalled
class Idle:
    def stop(self, deadline_s):
        return True
def elsewhere():
    time.sleep(0.5)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # to this thread, not the main one
    time.sleep(30)
threading.Thread(target=elsewhere, daemon=True).start()
print("clean" if run_until_signalled([Idle()], deadline_s=5) else "dirty", flush=True)
"""


def test_a_sigterm_the_kernel_hands_to_another_thread_still_drains() -> None:
    """A process-wide signal may land on any thread; the runner must not sleep through it."""
    done = subprocess.run(
        [sys.executable, "-c", SIGNALLED_ELSEWHERE], capture_output=True, text=True, timeout=20, check=False
    )
    assert done.stdout.strip().splitlines()[-1] == "clean", done.stderr
