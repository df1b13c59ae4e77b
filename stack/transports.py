"""How a role's messages travel: Pub/Sub (the emulator or Google) or in-process queues.

``CONFSYNC_TRANSPORT`` picks one; ``stack.root.Stack.transport`` builds it. The in-process
transport's queues live in one process, so only ``confsync serve all`` can use it.
"""

from __future__ import annotations

from typing import Protocol

from confsync.ports import Publisher
from confsync.settings import Settings
from confsync.transport.base import DeadLetter, Handler
from confsync.transport.memory import MemoryBroker, MemoryWorker
from confsync.transport.pubsub import LazyPubSubPublisher, PubSubUnaryWorker, PubSubWorker, PullOptions, open_publisher
from confsync.transport.runner import Stoppable
from confsync.transport.topology import topology

__all__ = ["MemoryTransport", "PubSubTransport", "Transport", "open_transport"]

# Handlers per in-process subscription: as many as a Pub/Sub worker's two streams run, since a
# processor waits out a calendar's minimum sync interval in its handler and fewer queue behind it.
_MEMORY_HANDLERS = 20


class Transport(Protocol):
    publisher: Publisher

    def worker(self, subscription: str, handler: Handler, dead_topic: str) -> Stoppable:
        """Start pulling ``subscription`` into ``handler``; what it gives up on goes to ``dead_topic``."""
        ...

    def connect(self) -> None:
        """Fail now, with ConfigError, if there is nothing to connect with (a service's start)."""
        ...

    def check(self, timeout_s: float) -> None:
        """Raise if the transport cannot be reached within ``timeout_s`` (readiness)."""
        ...

    def close(self) -> None: ...


class PubSubTransport:
    def __init__(self, settings: Settings) -> None:
        self._pull = PullOptions.from_settings(settings)
        self._worker_kind = PubSubUnaryWorker if settings.pubsub_pull == "unary" else PubSubWorker
        self._check_topic = settings.topic_calendar_changes
        # Connects on first publish: a command that never publishes needs no Google credentials.
        self._publisher = LazyPubSubPublisher(lambda: open_publisher(settings))
        self.publisher: Publisher = self._publisher

    def worker(self, subscription: str, handler: Handler, dead_topic: str) -> Stoppable:
        dead = DeadLetter(self.publisher, dead_topic, subscription)
        return self._worker_kind(self._pull, subscription, handler, dead_letter=dead).start()

    def connect(self) -> None:
        self._publisher.connect()

    def check(self, timeout_s: float) -> None:
        self._publisher.check(self._check_topic, timeout_s=timeout_s)

    def close(self) -> None:
        self._publisher.close()


class MemoryTransport:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        plan = topology(settings)
        worker_spec = plan.subscription(settings.sub_conference_commands)
        self._broker = MemoryBroker(  # redelivery paced like the Pub/Sub subscriptions' retry policy
            queue_limit=settings.memory_queue_limit,
            backoff_s=worker_spec.min_backoff_s or 0,  # None: no retry policy, back at once
            max_backoff_s=worker_spec.max_backoff_s or 0,
        )
        for topic in plan.topics:
            self._broker.create_topic(topic)
        for spec in plan.subscriptions:
            self._broker.create_subscription(spec.name, spec.topic)
        self.publisher: Publisher = self._broker

    def worker(self, subscription: str, handler: Handler, dead_topic: str) -> Stoppable:
        dead = DeadLetter(self._broker, dead_topic, subscription)
        max_attempts = self._settings.pubsub_max_delivery_attempts
        return MemoryWorker(
            self._broker,
            subscription,
            handler,
            dead_letter=dead,
            max_attempts=max_attempts,
            concurrency=_MEMORY_HANDLERS,
        ).start()

    def held(self, subscription: str) -> int:
        """Messages not yet acknowledged on ``subscription`` (on a holding one: its dead letters)."""
        return self._broker.backlog(subscription)

    def connect(self) -> None:
        """In-process queues need nothing to connect with."""

    def check(self, timeout_s: float) -> None:
        """In-process queues are always reachable."""

    def close(self) -> None:
        """Nothing to close: the queues go with the process."""


def open_transport(settings: Settings) -> Transport:
    return MemoryTransport(settings) if settings.transport == "memory" else PubSubTransport(settings)
