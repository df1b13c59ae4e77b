"""Throughput of each transport with a no-op handler: publish msgs/s and end-to-end msgs/s.

Pub/Sub runs against its emulator, started here from the jar on this machine; messages are
1 KiB with ordering keys spread over 200 "calendars", on an ordered subscription, as in
production. The in-process transport runs the same shape in memory. Prints one JSON object.

confsync's PubSubPublisher sends many ordering keys in one Publish request; the bench reports
the rate for several shapes (``publish_msgs_per_s_by_shape``), and, for comparison,
google-cloud-pubsub's own ordered publisher, which sends one request per key. Publishing is
one publish_many call of every message, as processors and backfill publish their commands;
the webhook's single publishes are measured by bench/ingesting.py.

    .venv/bin/python bench/transport.py [--messages 40000] [--streams 4]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import uuid
from dataclasses import replace

from confsync.logs import configure_logging
from confsync.settings import Settings
from confsync.transport.base import DeadLetter, Message
from confsync.transport.memory import MemoryBroker, MemoryWorker
from stack.emulators import find_jar, pubsub_emulator

PAYLOAD = b"x" * 1024
KEYS = 200


class Counter:
    def __init__(self, target: int) -> None:
        self.count = 0
        self.target = target
        self.done = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, _message: Message) -> None:
        with self._lock:
            self.count += 1
            if self.count >= self.target:
                self.done.set()


def bench_memory(messages: int) -> dict[str, object]:
    broker = MemoryBroker(queue_limit=messages + 10)
    broker.create_topic("work")
    broker.create_topic("dead")
    broker.create_subscription("work-sub", "work")
    started = time.perf_counter()
    for n in range(messages):
        broker.publish("work", PAYLOAD, ordering_key=f"cal-{n % KEYS}")
    publish_s = time.perf_counter() - started
    counter = Counter(messages)
    worker = MemoryWorker(
        broker, "work-sub", counter, dead_letter=DeadLetter(broker, "dead", "work-sub"), concurrency=4, batch=100
    )
    started = time.perf_counter()
    worker.start()
    counter.done.wait(300)
    consume_s = time.perf_counter() - started
    worker.stop(5)
    return {
        "publish_msgs_per_s": round(messages / publish_s),
        "end_to_end_msgs_per_s": round(counter.count / consume_s),
        "handled": counter.count,
    }


def _publish_shape(settings: Settings, topic: str, messages: int, keys: int) -> float:
    from confsync.transport.pubsub import PubSubPublisher  # noqa: PLC0415 - after the emulator host is set

    publisher = PubSubPublisher.from_settings(settings)
    batch = [(PAYLOAD, f"cal-{n % keys}" if keys else "", {}) for n in range(messages)]
    started = time.perf_counter()
    publisher.publish_many(topic, batch)
    elapsed = time.perf_counter() - started
    publisher.close()
    return messages / elapsed


def _publish_per_key_library(settings: Settings, topic: str, messages: int, keys: int) -> float:
    """google-cloud-pubsub's ordered publisher (one request per key and batch), for comparison."""
    from google.cloud import pubsub_v1  # noqa: PLC0415 - after the emulator host is set

    client = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_latency=0.2),
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
    )
    path = client.topic_path(settings.project_id, topic)
    started = time.perf_counter()
    futures = [client.publish(path, PAYLOAD, ordering_key=f"cal-{n % keys}") for n in range(messages)]
    for future in futures:
        future.result(timeout=settings.pubsub_timeout_s)
    elapsed = time.perf_counter() - started
    client.stop()
    client.transport.close()
    return messages / elapsed


def bench_pubsub(messages: int, streams: int) -> dict[str, object]:
    jar = find_jar(Settings.from_env().pubsub_emulator_jar)
    if jar is None:
        return {"skipped": "Pub/Sub emulator jar not found"}
    with pubsub_emulator(jar) as emulator:
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
        from google.api_core.retry import Retry  # noqa: PLC0415 - after the emulator host is set
        from google.cloud import pubsub_v1  # noqa: PLC0415

        from confsync.transport.pubsub import PubSubPublisher, PubSubWorker, PullOptions  # noqa: PLC0415

        admin_pub, admin_sub = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        suffix = uuid.uuid4().hex[:6]
        topic, sub = f"work-{suffix}", f"work-sub-{suffix}"
        for name in (topic, "dead", "shapes"):
            admin_pub.create_topic(name=admin_pub.topic_path("bench", name), retry=Retry(timeout=30))
        admin_sub.create_subscription(
            request={
                "name": admin_sub.subscription_path("bench", sub),
                "topic": admin_pub.topic_path("bench", topic),
                "enable_message_ordering": True,
                "ack_deadline_seconds": 60,
            },
            retry=Retry(timeout=30),
        )
        bulk = Settings(project_id="bench", pubsub_timeout_s=120, pubsub_flow_max_messages=2000)
        shapes = {
            "20 keys": round(_publish_shape(bulk, "shapes", messages // 2, 20)),
            "no ordering key": round(_publish_shape(bulk, "shapes", messages // 2, 0)),
            f"{KEYS} keys, google-cloud-pubsub's ordered publisher (one request per key)": round(
                _publish_per_key_library(bulk, "shapes", messages // 2, KEYS)
            ),
        }
        publish_rate = _publish_shape(bulk, topic, messages, KEYS)  # the backlog the consumers drain
        shapes[f"{KEYS} keys"] = round(publish_rate)

        publisher = PubSubPublisher.from_settings(bulk)
        counter = Counter(messages)
        options = replace(PullOptions.from_settings(bulk), streams=streams)
        worker = PubSubWorker(options, sub, counter, dead_letter=DeadLetter(publisher, "dead", sub))
        started = time.perf_counter()
        worker.start()
        counter.done.wait(600)
        consume_s = time.perf_counter() - started
        worker.stop(10)
        publisher.close()
        admin_sub.close()
        admin_pub.transport.close()
        return {
            "publish_msgs_per_s": round(publish_rate),
            "publish_msgs_per_s_by_shape": shapes,
            "end_to_end_msgs_per_s": round(counter.count / consume_s),
            "handled": counter.count,
            "streams": streams,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--streams", type=int, default=4)
    args = parser.parse_args()
    configure_logging(Settings(log_level="warning", log_format="json"))  # as an entry point would
    memory = bench_memory(args.messages)
    pubsub = bench_pubsub(args.messages, args.streams)
    print(
        json.dumps(
            {
                "benchmark": "transport",
                "messages": args.messages,
                "message_bytes": len(PAYLOAD),
                "ordering_keys": KEYS,
                "in_process": memory,
                "pubsub_emulator": pubsub,
                "targets": {"emulator_publish": 8000, "emulator_consume": 3500, "in_process": 20000},
            }
        )
    )


if __name__ == "__main__":
    main()
