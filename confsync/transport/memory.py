"""The in-process transport: Pub/Sub's semantics without Pub/Sub, for the embedded default.

``MemoryBroker`` holds topics and subscriptions (each subscription gets every message
published to its topic after it was created). It keeps the contract the stages rely on:

- ordering per key: while a message with ordering key K is out (delivered, or waiting to be
  redelivered), no later message with key K is delivered; messages without a key flow freely;
- ack removes a message; nack redelivers it after an exponential backoff, counting delivery
  attempts (``Message.delivery_attempt``), so the worker dead-letters it on the last one;
- bounded memory: ``publish`` waits while the broker holds ``queue_limit`` messages and
  raises ``TransientError`` if no room frees up in time (back-pressure, not growth);
- the trace travels as on Pub/Sub: ``publish`` puts the current trace in the message's
  ``traceparent`` attribute (confsync/tracing.py) and the worker handles it in that trace.

``MemoryWorker`` runs a handler on a subscription with N threads and the shared outcome
rules (``confsync.transport.base``). Messages live in this process only: a crash loses what
was not yet handled, which is why production uses Pub/Sub.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

from confsync.errors import NotFound, TransientError
from confsync.rfc3339 import utc_now
from confsync.tracing import inject
from confsync.transport.base import DeadLetter, Handler, Message, Outcome, process

__all__ = ["MemoryBroker", "MemoryWorker"]

log = structlog.get_logger(__name__)


class _NoRoom(Exception):
    """The queue is full and the caller may not wait here."""


_ACK_AT_ONCE_AFTER_S = 0.001  # a handler slower than this has its ack sent before the next runs
_PULL_WAIT_S = 5.0  # an idle worker thread wakes this seldom: publishes, acks and stop wake it sooner


@dataclass
class _Envelope:
    message: Message
    attempt: int = 0
    ack_id: int = 0


@dataclass
class _Subscription:
    """Per-key queues, so picking the next deliverable message never scans the backlog."""

    name: str
    wake: threading.Condition  # this subscription's pullers wait here (the broker's lock)
    unkeyed: deque[_Envelope] = field(default_factory=deque)
    keyed: dict[str, deque[_Envelope]] = field(default_factory=dict)
    ready_keys: deque[str] = field(default_factory=deque)  # keys with a backlog and nothing out
    busy_keys: set[str] = field(default_factory=set)  # keys with a message out or awaiting retry
    out: dict[int, _Envelope] = field(default_factory=dict)
    retries: list[tuple[float, int, _Envelope]] = field(default_factory=list)
    interrupts: int = 0  # raised by ``MemoryBroker.interrupt``: waiting pulls return empty

    def add(self, envelope: _Envelope) -> None:
        key = envelope.message.ordering_key
        if not key:
            self.unkeyed.append(envelope)
            return
        queue = self.keyed.get(key)
        if queue is None:
            queue = self.keyed[key] = deque()
            if key not in self.busy_keys:
                self.ready_keys.append(key)
        queue.append(envelope)

    def next_fresh(self) -> _Envelope | None:
        """The next never-delivered message whose key is free (keys and unkeyed alternate)."""
        if self.ready_keys and (not self.unkeyed or len(self.out) % 2):
            key = self.ready_keys.popleft()
            queue = self.keyed[key]
            envelope = queue.popleft()
            if not queue:
                del self.keyed[key]
            self.busy_keys.add(key)
            return envelope
        return self.unkeyed.popleft() if self.unkeyed else None

    def release(self, key: str) -> None:
        """A key's message is done: its next message (if any) may go out."""
        if not key:
            return
        self.busy_keys.discard(key)
        if key in self.keyed:
            self.ready_keys.append(key)

    def size(self) -> int:
        backlog = len(self.unkeyed) + sum(len(queue) for queue in self.keyed.values())
        return backlog + len(self.out) + len(self.retries)


class MemoryBroker:
    """Topics and subscriptions in memory; also a ``Publisher`` (``publish`` is durable here)."""

    def __init__(
        self,
        *,
        queue_limit: int = 10_000,
        backoff_s: float = 0.05,
        max_backoff_s: float = 5.0,
        publish_timeout_s: float = 30.0,
    ) -> None:
        self._topics: dict[str, list[_Subscription]] = {}
        self._subscriptions: dict[str, _Subscription] = {}
        self._limit = queue_limit
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._publish_timeout_s = publish_timeout_s
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)  # publishers wait here for room
        self._waiting_for_space = 0  # so an ack skips notify's cost when no publisher waits
        self._ids = itertools.count(1)
        self._held = 0

    def create_topic(self, topic: str) -> None:
        with self._lock:
            self._topics.setdefault(topic, [])

    def create_subscription(self, name: str, topic: str) -> None:
        with self._lock:
            if name in self._subscriptions:
                return
            subscription = _Subscription(name, threading.Condition(self._lock))
            self._subscriptions[name] = subscription
            self._topics.setdefault(topic, []).append(subscription)

    def publish(
        self, topic: str, data: bytes, *, ordering_key: str = "", attributes: Mapping[str, str] | None = None
    ) -> str:
        return self._publish(topic, data, ordering_key, attributes, wait=True)

    async def apublish(
        self, topic: str, data: bytes, *, ordering_key: str = "", attributes: Mapping[str, str] | None = None
    ) -> str:
        """``publish`` from an event loop: at once while there is room (the webhook's common case,
        without a thread hop); from a thread when it must wait for room."""
        try:
            return self._publish(topic, data, ordering_key, attributes, wait=False)
        except _NoRoom:
            call = functools.partial(self.publish, topic, data, ordering_key=ordering_key, attributes=attributes)
            return await asyncio.to_thread(call)

    def _publish(
        self, topic: str, data: bytes, ordering_key: str, attributes: Mapping[str, str] | None, *, wait: bool
    ) -> str:
        deadline = time.monotonic() + self._publish_timeout_s
        carried = inject(attributes)
        with self._lock:
            subscriptions = self._topics.get(topic)
            if subscriptions is None:
                raise NotFound(f"no topic {topic!r}")
            while self._held + len(subscriptions) > self._limit:
                remaining = deadline - time.monotonic()
                if not wait:
                    raise _NoRoom
                if remaining <= 0:
                    raise TransientError(f"in-process queue full ({self._limit} messages): back-pressure")
                self._waiting_for_space += 1
                try:
                    self._space.wait(remaining)
                finally:
                    self._waiting_for_space -= 1
            message_id = str(next(self._ids))
            message = Message(data, carried, message_id, ordering_key, None, utc_now())
            for subscription in subscriptions:
                subscription.add(_Envelope(message))
                self._held += 1
                subscription.wake.notify()
            return message_id

    def publish_many(self, topic: str, messages: list[tuple[bytes, str, Mapping[str, str]]]) -> list[str]:
        return [self.publish(topic, data, ordering_key=key, attributes=attrs) for data, key, attrs in messages]

    def pull(self, subscription: str, max_messages: int, timeout_s: float) -> list[tuple[int, Message]]:
        """Up to ``max_messages`` deliverable messages as (ack id, message); waits up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            state = self._subscriptions[subscription]
            interrupts = state.interrupts
            while True:
                taken = self._take(state, max_messages)
                if taken:
                    return taken
                remaining = deadline - time.monotonic()
                if remaining <= 0 or state.interrupts != interrupts:
                    return []
                next_retry = state.retries[0][0] - time.monotonic() if state.retries else remaining
                state.wake.wait(max(0.001, min(remaining, next_retry)))

    def _take(self, state: _Subscription, max_messages: int) -> list[tuple[int, Message]]:
        taken: list[tuple[int, Message]] = []
        now = time.monotonic()
        while state.retries and state.retries[0][0] <= now and len(taken) < max_messages:
            _, _, envelope = heapq.heappop(state.retries)
            taken.append(self._deliver(state, envelope))  # its key stayed reserved for it
        while len(taken) < max_messages:
            fresh = state.next_fresh()
            if fresh is None:
                break
            taken.append(self._deliver(state, fresh))
        return taken

    def _deliver(self, state: _Subscription, envelope: _Envelope) -> tuple[int, Message]:
        envelope.attempt += 1
        envelope.ack_id = next(self._ids)
        state.out[envelope.ack_id] = envelope
        message = envelope.message
        delivered = Message(
            message.data,
            message.attributes,
            message.message_id,
            message.ordering_key,
            envelope.attempt,
            message.publish_time,
        )
        return envelope.ack_id, delivered

    def interrupt(self, subscription: str) -> None:
        """End the waits of the subscription's pulls now (they return empty): a worker is stopping."""
        with self._lock:
            state = self._subscriptions[subscription]
            state.interrupts += 1
            state.wake.notify_all()

    def ack(self, subscription: str, ack_id: int) -> None:
        self.ack_many(subscription, [ack_id])

    def ack_many(self, subscription: str, ack_ids: list[int]) -> None:
        """Acknowledge several deliveries under one lock (unknown or repeated ids are ignored)."""
        if not ack_ids:
            return
        with self._lock:
            state = self._subscriptions[subscription]
            for ack_id in ack_ids:
                envelope = state.out.pop(ack_id, None)
                if envelope is None:
                    continue
                key = envelope.message.ordering_key
                state.release(key)
                self._held -= 1
                if self._waiting_for_space:
                    self._space.notify()
                if key and key in state.keyed:
                    state.wake.notify()

    def nack(self, subscription: str, ack_id: int) -> None:
        with self._lock:
            state = self._subscriptions[subscription]
            envelope = state.out.pop(ack_id, None)
            if envelope is None:
                return
            delay = min(self._backoff_s * 2 ** (envelope.attempt - 1), self._max_backoff_s)
            heapq.heappush(state.retries, (time.monotonic() + delay, envelope.ack_id, envelope))
            state.wake.notify()

    def backlog(self, subscription: str) -> int:
        """Messages not yet acknowledged on a subscription."""
        with self._lock:
            return self._subscriptions[subscription].size()


class MemoryWorker:
    """Handles one subscription of a MemoryBroker with ``concurrency`` threads."""

    def __init__(  # noqa: PLR0913 - the worker's whole configuration
        self,
        broker: MemoryBroker,
        subscription: str,
        handler: Handler,
        *,
        dead_letter: DeadLetter,
        max_attempts: int = 5,
        concurrency: int = 4,
        batch: int = 10,
    ) -> None:
        self._broker = broker
        self._subscription = subscription
        self._handler = handler
        self._dead_letter = dead_letter
        self._max_attempts = max_attempts
        self._batch = batch
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, name=f"{subscription}-{n}", daemon=True) for n in range(concurrency)
        ]

    def start(self) -> MemoryWorker:
        for thread in self._threads:
            thread.start()
        log.info("worker started", subscription=self._subscription, transport="memory", threads=len(self._threads))
        return self

    def _loop(self) -> None:
        while not self._stopping.is_set():
            done: list[int] = []
            for ack_id, message in self._broker.pull(self._subscription, self._batch, timeout_s=_PULL_WAIT_S):
                if self._stopping.is_set():  # handed out but not started: give it back at once
                    self._broker.nack(self._subscription, ack_id)
                    continue
                started = time.perf_counter()
                outcome = process(
                    message, self._handler, dead_letter=self._dead_letter, max_attempts=self._max_attempts
                )
                if outcome is Outcome.NACK:
                    self._broker.nack(self._subscription, ack_id)
                    continue
                done.append(ack_id)
                # Fast handlers' acks go in one call per batch: one lock round instead of one per
                # message, where 4 threads' acks queued on the broker's lock (2.4x the messages/s
                # in bench/transport.py). After a slow handler they go at once: the next message
                # of its key must not wait for the rest of this batch.
                if time.perf_counter() - started >= _ACK_AT_ONCE_AFTER_S:
                    self._broker.ack_many(self._subscription, done)
                    done = []
            self._broker.ack_many(self._subscription, done)

    def stop(self, deadline_s: float = 20.0) -> bool:
        """Stop pulling, let in-flight handlers finish within ``deadline_s``; True if all did."""
        self._stopping.set()
        self._broker.interrupt(self._subscription)
        end = time.monotonic() + deadline_s
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        finished = not any(thread.is_alive() for thread in self._threads)
        log.info("worker stopped", subscription=self._subscription, transport="memory", clean=finished)
        return finished
