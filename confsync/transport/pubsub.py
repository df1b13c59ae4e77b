"""Google Cloud Pub/Sub (or its emulator): an ordered publisher and a streaming-pull worker.

- ``PubSubPublisher`` sends what concurrent callers publish to a topic as one Publish
  request at a time (many ordering keys per request, each key's order kept), batched per
  Settings, every call bounded by ``pubsub_timeout_s`` (never the client's 600 s default).
  ``publish`` returns once Pub/Sub holds the message. A failed request pauses its ordering
  keys, as google-cloud-pubsub's publisher does; the caller resumes them before raising
  ``TransientError``, so the next attempt can go through.
- ``PubSubWorker`` runs ``pubsub_streams`` streaming pulls on one subscription with flow
  control, hands each message to the handler through ``confsync.transport.base.process``
  (ack / nack / dead-letter with the reason), and on ``stop`` stops pulling, waits for
  in-flight handlers up to a deadline, then cancels.
- ``bootstrap`` creates the topology's topics and subscriptions if they are missing and
  reports what it created or found; running it twice changes nothing.

Emulator notes (DEVELOPERS brief): it drops a message after its last delivery attempt instead
of forwarding it, so the worker dead-letters on the last attempt itself; it reorders after a
nack; idempotency downstream, not delivery order, is what makes the pipeline correct. A
worker killed while holding messages costs each of them about two delivery attempts, and some
messages that were on (or published towards) a killed worker's streams were not delivered
again for over nine minutes (bench/chaos.py). The store's traces of such work (a notification
no sync covered, an unsettled outbox command) let ingest/lag.py publish it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import structlog
from google.api_core import exceptions as google_exceptions
from google.api_core.retry import Retry
from google.auth import exceptions as google_auth_exceptions
from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # the package ships no stub for this re-export
from google.protobuf import duration_pb2
from google.pubsub_v1.services.publisher import PublisherClient as GapicPublisherClient
from google.pubsub_v1.types import DeadLetterPolicy, ExpirationPolicy, PubsubMessage, RetryPolicy

from confsync.errors import ConfigError, TransientError
from confsync.settings import Settings
from confsync.transport.base import DeadLetter, Handler, Message, Outcome, process
from confsync.transport.topology import SubscriptionSpec, Topology

__all__ = [
    "BootstrapReport",
    "LazyPubSubPublisher",
    "PubSubPublisher",
    "PubSubWorker",
    "bootstrap",
    "open_publisher",
]

log = structlog.get_logger(__name__)

_MAX_REQUEST_BYTES = 9 * 1024 * 1024  # Pub/Sub refuses a Publish request over 10 MB


def delivered(pubsub_message: Any, delivery_attempt: int | None) -> Message:
    """Our Message from a Pub/Sub one: the streaming client's, or a Pull answer's ``.message``
    (whose attempt count sits beside it, 0 where the subscription has no dead-letter policy)."""
    return Message(
        data=bytes(pubsub_message.data),
        attributes=dict(pubsub_message.attributes),
        message_id=str(pubsub_message.message_id),
        ordering_key=str(pubsub_message.ordering_key or ""),
        delivery_attempt=delivery_attempt or None,
        publish_time=pubsub_message.publish_time,
    )


def subscription_path(settings: Settings, subscription: str) -> str:
    """``projects/P/subscriptions/S`` for a short name (in Settings' project); a full path as is."""
    if subscription.startswith("projects/"):
        return subscription
    return f"projects/{settings.project_id}/subscriptions/{subscription}"


class PubSubWorker:
    """Streaming pull on one subscription, with the shared ack/nack/dead-letter rules."""

    def __init__(
        self,
        settings: Settings,
        subscription: str,
        handler: Handler,
        *,
        dead_letter: DeadLetter,
        streams: int | None = None,
    ) -> None:
        self._settings = settings
        self._handler = handler
        self._dead_letter = dead_letter
        self._streams = streams or settings.pubsub_streams
        self._client = pubsub_v1.SubscriberClient()
        self._path = subscription_path(settings, subscription)
        self._futures: list[Any] = []
        self._in_flight = 0
        self._idle = threading.Condition()

    def start(self) -> PubSubWorker:
        flow = pubsub_v1.types.FlowControl(
            max_messages=self._settings.pubsub_flow_max_messages,
            max_bytes=self._settings.pubsub_flow_max_bytes,
            max_duration_per_lease_extension=self._settings.pubsub_lease_extension_s,
        )
        for _ in range(self._streams):
            self._futures.append(
                self._client.subscribe(
                    self._path, callback=self._on_message, flow_control=flow, await_callbacks_on_shutdown=True
                )
            )
        log.info("worker started", subscription=self._path, transport="pubsub", streams=self._streams)
        return self

    def _on_message(self, received: Any) -> None:
        with self._idle:
            self._in_flight += 1
        try:
            message = delivered(received, received.delivery_attempt)
            outcome = process(
                message,
                self._handler,
                dead_letter=self._dead_letter,
                max_attempts=self._settings.pubsub_max_delivery_attempts,
            )
            if outcome is Outcome.NACK:
                received.nack()
            else:
                received.ack()
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def stop(self, deadline_s: float | None = None) -> bool:
        """Stop pulling; wait for in-flight handlers up to the deadline; True if all finished."""
        deadline_s = self._settings.shutdown_deadline_s if deadline_s is None else deadline_s
        end = time.monotonic() + deadline_s
        for future in self._futures:
            future.cancel()  # stop pulling; messages not yet started are nacked by the client
        finished = True
        for future in self._futures:
            try:
                future.result(timeout=max(0.0, end - time.monotonic()))
            except FutureTimeout:
                finished = False
            except Exception:
                log.debug("stream ended with an error during shutdown", exc_info=True)
        with self._idle:
            while self._in_flight and time.monotonic() < end:
                self._idle.wait(max(0.0, end - time.monotonic()))
            finished = finished and not self._in_flight
        self._client.close()
        log.info("worker stopped", subscription=self._path, transport="pubsub", clean=finished)
        return finished


@dataclass
class _Pending:
    """One message on its way; a thread caller waits on ``done``, an event-loop caller awaits ``future``."""

    data: bytes
    ordering_key: str
    attributes: Mapping[str, str]
    done: threading.Event | None = None
    future: asyncio.Future[str] | None = None
    message_id: str | None = None
    error: Exception | None = None

    @property
    def size(self) -> int:
        """Roughly what the message adds to a Publish request, in bytes."""
        extra = sum(len(key) + len(value) for key, value in self.attributes.items())
        return len(self.data) + len(self.ordering_key) + extra + 16


def _finish(items: list[_Pending]) -> None:
    """Wake every caller of ``items``: thread callers at once, each event loop with one call."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
    for item in items:
        if item.done is not None:
            item.done.set()
        if item.future is not None:
            by_loop.setdefault(item.future.get_loop(), []).append(item)
    for loop, waiting in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody awaits any more
            loop.call_soon_threadsafe(_resolve, waiting)


def _resolve(items: list[_Pending]) -> None:
    for item in items:
        future = item.future
        if future is None or future.done():
            continue
        if item.error is not None:
            future.set_exception(TransientError(f"publish failed: {item.error}"))
        else:
            future.set_result(str(item.message_id))


class PubSubPublisher:
    """``confsync.ports.Publisher`` over Pub/Sub's Publish RPC: one request per batch, order per key kept.

    Callers (webhook requests, processors, dead-lettering workers) publish concurrently. What
    they publish to a topic within ``pubsub_publish_max_latency_s`` of an idle moment, up to
    ``pubsub_publish_max_messages`` (Pub/Sub takes at most 1,000) and 9 MiB, goes out as one
    Publish request, whatever its ordering keys; messages that arrive while a request is in
    flight go in the next one at once. A topic's requests never overlap, so messages with one
    ordering key reach Pub/Sub in the order they were published (Pub/Sub keeps the order of
    one key's messages within a request). google-cloud-pubsub's own publisher sends one
    request per key instead: with 200 keys, a third of this throughput at three times the CPU
    per message (bench/transport.py).

    A failed request fails every caller in it and pauses its ordering keys, as
    google-cloud-pubsub does: the key's messages still queued fail with it, and so does any
    published for the key until it is resumed, so none overtakes the failed one. The caller
    that saw the failure resumes the key before its ``TransientError`` is raised, so its retry
    (a nack, a 503 to Google) can go through.
    """

    def __init__(self, settings: Settings) -> None:
        self._project = settings.project_id
        self._timeout_s = settings.pubsub_timeout_s
        self._retry = Retry(timeout=settings.pubsub_timeout_s)
        self._client = pubsub_v1.PublisherClient()  # for its channel: it honours PUBSUB_EMULATOR_HOST
        self._max_messages = settings.pubsub_publish_max_messages
        self._max_latency_s = settings.pubsub_publish_max_latency_s
        self._queues: dict[str, list[_Pending]] = {}
        self._paused: dict[str, set[str]] = {}
        self._senders: dict[str, threading.Thread] = {}
        self._lock = threading.Condition()
        self._closed = False

    def topic_path(self, topic: str) -> str:
        return topic if topic.startswith("projects/") else self._client.topic_path(self._project, topic)

    def publish(
        self, topic: str, data: bytes, *, ordering_key: str = "", attributes: Mapping[str, str] | None = None
    ) -> str:
        return self.publish_many(topic, [(data, ordering_key, attributes or {})])[0]

    def publish_many(self, topic: str, messages: list[tuple[bytes, str, Mapping[str, str]]]) -> list[str]:
        """Publish a batch and wait for all of it; message ids in order."""
        path = self.topic_path(topic)
        pending = [
            self._enqueue(path, _Pending(data, key, dict(attrs), done=threading.Event()))
            for data, key, attrs in messages
        ]
        deadline = time.monotonic() + self._timeout_s + 5
        for item in pending:
            if item.done is not None and not item.done.wait(max(0.0, deadline - time.monotonic())):
                item.error = item.error or TimeoutError(f"no answer within {self._timeout_s + 5:.0f} s")
        failed = [item for item in pending if item.error is not None]
        if failed:
            self._resume(path, {item.ordering_key for item in failed})
            error = failed[0].error
            raise TransientError(f"publish to {topic} failed: {type(error).__name__}: {error}") from error
        return [str(item.message_id) for item in pending]

    async def apublish(
        self, topic: str, data: bytes, *, ordering_key: str = "", attributes: Mapping[str, str] | None = None
    ) -> str:
        """``publish`` for an event loop: awaits Pub/Sub's answer without holding a thread."""
        path = self.topic_path(topic)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._enqueue(path, _Pending(data, ordering_key, dict(attributes or {}), future=future))
        try:
            async with asyncio.timeout(self._timeout_s + 5):
                return await future
        except (TransientError, TimeoutError):
            self._resume(path, {ordering_key})
            raise

    def check(self, topic: str, *, timeout_s: float) -> None:
        """Raise TransientError unless Pub/Sub answers for ``topic`` within ``timeout_s`` (readiness)."""
        try:
            self._client.get_topic(topic=self.topic_path(topic), retry=Retry(timeout=timeout_s), timeout=timeout_s)
        except google_exceptions.GoogleAPIError as err:
            raise TransientError(f"Pub/Sub did not answer for {topic}: {type(err).__name__}: {err}") from err

    def close(self) -> None:
        """Send what is queued, then stop the senders and close the channel."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        for sender in list(self._senders.values()):
            sender.join(timeout=self._timeout_s)
        self._client.transport.close()

    # -- the sender: one thread per topic -----------------------------------------------------

    def _enqueue(self, path: str, pending: _Pending) -> _Pending:
        with self._lock:
            if self._closed:
                raise TransientError("publisher is closed")
            if pending.ordering_key and pending.ordering_key in self._paused.get(path, ()):
                pending.error = _paused(pending.ordering_key)
                _finish([pending])
                return pending
            self._queues.setdefault(path, []).append(pending)
            if path not in self._senders:
                sender = threading.Thread(target=self._send_loop, args=(path,), name=f"publish-{path}", daemon=True)
                self._senders[path] = sender
                sender.start()
            self._lock.notify_all()
        return pending

    def _resume(self, path: str, keys: set[str]) -> None:
        with self._lock:
            self._paused.get(path, set()).difference_update(keys)

    def _send_loop(self, path: str) -> None:
        waited = True  # the first message of an idle topic waits for others to join it
        while True:
            with self._lock:
                while not self._queues.get(path) and not self._closed:
                    self._lock.wait(1.0)
                    waited = True
                if self._closed and not self._queues.get(path):
                    return
            if waited:
                time.sleep(self._max_latency_s)
            with self._lock:
                batch = self._take(path)
            self._send(path, batch)
            waited = False  # what queued meanwhile has waited a whole request already: send it now

    def _take(self, path: str) -> list[_Pending]:
        """The next batch of ``path``'s queue, within Pub/Sub's limits (call with the lock held)."""
        queue = self._queues[path]
        count = size = 0
        for item in queue[: self._max_messages]:
            item_size = item.size
            if count and size + item_size > _MAX_REQUEST_BYTES:
                break
            count, size = count + 1, size + item_size
        batch, self._queues[path] = queue[:count], queue[count:]
        return batch

    def _send(self, path: str, batch: list[_Pending]) -> None:
        if not batch:
            return
        messages = [
            PubsubMessage(data=item.data, ordering_key=item.ordering_key, attributes=dict(item.attributes))
            for item in batch
        ]
        try:
            # The generated client's Publish RPC, called on the handwritten client (which shares
            # its emulator-aware channel): one request carrying the whole batch.
            answer = GapicPublisherClient.publish(
                self._client, topic=path, messages=messages, retry=self._retry, timeout=self._timeout_s
            )
            for item, message_id in zip(batch, answer.message_ids, strict=True):
                item.message_id = message_id
        except Exception as err:  # noqa: BLE001 - every caller of the batch gets the failure
            for item in batch:
                item.error = err
            batch += self._pause(path, {item.ordering_key for item in batch if item.ordering_key})
        _finish(batch)

    def _pause(self, path: str, keys: set[str]) -> list[_Pending]:
        """Pause ``keys``; their messages still queued fail now (returned, to be finished)."""
        with self._lock:
            self._paused.setdefault(path, set()).update(keys)
            queue = self._queues.get(path, [])
            failed = [item for item in queue if item.ordering_key in keys]
            self._queues[path] = [item for item in queue if item.ordering_key not in keys]
        for item in failed:
            item.error = _paused(item.ordering_key)
        return failed


def _paused(key: str) -> TransientError:
    return TransientError(f"ordering key {key!r} is paused: an earlier message for it failed to publish")


def open_publisher(settings: Settings) -> PubSubPublisher:
    """A PubSubPublisher, or ConfigError when there are no credentials to reach Pub/Sub with."""
    try:
        return PubSubPublisher(settings)
    except google_auth_exceptions.DefaultCredentialsError as err:
        raise ConfigError(
            "no credentials for Pub/Sub: set PUBSUB_EMULATOR_HOST or Application Default Credentials"
        ) from err


class LazyPubSubPublisher:
    """A PubSubPublisher built on first publish: commands that may never publish (or run where
    Pub/Sub is not configured) do not need Google credentials just to start."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._real: PubSubPublisher | None = None

    def publish(
        self, topic: str, data: bytes, *, ordering_key: str = "", attributes: Mapping[str, str] | None = None
    ) -> str:
        return self._ready().publish(topic, data, ordering_key=ordering_key, attributes=attributes)

    def publish_many(self, topic: str, messages: list[tuple[bytes, str, Mapping[str, str]]]) -> list[str]:
        return self._ready().publish_many(topic, messages)

    def _ready(self) -> PubSubPublisher:
        if self._real is None:
            self._real = open_publisher(self._settings)
        return self._real

    def close(self) -> None:
        if self._real is not None:
            self._real.close()


# -- bootstrap --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BootstrapReport:
    created: tuple[str, ...]
    found: tuple[str, ...]


def bootstrap(settings: Settings, topology: Topology, *, push_endpoint: str | None = None) -> BootstrapReport:
    """Create every topic and subscription of ``topology`` that is missing; never change one.

    With ``push_endpoint`` the worker subscriptions push to ``{push_endpoint}/pubsub/{topic}``
    (OIDC-authenticated when ``push_service_account`` is set) instead of waiting to be pulled.
    """
    retry = Retry(timeout=settings.pubsub_timeout_s)
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    created: list[str] = []
    found: list[str] = []
    try:
        for topic in topology.topics:
            path = publisher.topic_path(settings.project_id, topic)
            try:
                publisher.create_topic(name=path, retry=retry, timeout=settings.pubsub_timeout_s)
                created.append(f"topic {topic}")
            except google_exceptions.AlreadyExists:
                found.append(f"topic {topic}")
        for spec in topology.subscriptions:
            request = _subscription_request(settings, spec, publisher, subscriber, push_endpoint)
            try:
                subscriber.create_subscription(request=request, retry=retry, timeout=settings.pubsub_timeout_s)
                created.append(f"subscription {spec.name}")
            except google_exceptions.AlreadyExists:
                found.append(f"subscription {spec.name}")
    finally:
        subscriber.close()
        publisher.transport.close()
    return BootstrapReport(tuple(created), tuple(found))


def _subscription_request(
    settings: Settings,
    spec: SubscriptionSpec,
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    push_endpoint: str | None,
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "name": subscriber.subscription_path(settings.project_id, spec.name),
        "topic": publisher.topic_path(settings.project_id, spec.topic),
        "ack_deadline_seconds": spec.ack_deadline_s,
        "enable_message_ordering": spec.ordered,
        "message_retention_duration": duration_pb2.Duration(seconds=spec.retention_s),
        "expiration_policy": ExpirationPolicy(),  # no ttl: never expires (topology.SubscriptionSpec)
    }
    if spec.min_backoff_s is not None and spec.max_backoff_s is not None:
        request["retry_policy"] = RetryPolicy(
            minimum_backoff=duration_pb2.Duration(seconds=spec.min_backoff_s),
            maximum_backoff=duration_pb2.Duration(seconds=spec.max_backoff_s),
        )
    if spec.dead_letter_topic is not None:
        request["dead_letter_policy"] = DeadLetterPolicy(
            dead_letter_topic=publisher.topic_path(settings.project_id, spec.dead_letter_topic),
            max_delivery_attempts=spec.max_delivery_attempts,
        )
        if push_endpoint:
            push: dict[str, Any] = {"push_endpoint": f"{push_endpoint.rstrip('/')}/pubsub/{spec.topic}"}
            if settings.push_service_account:
                push["oidc_token"] = {
                    "service_account_email": settings.push_service_account,
                    "audience": settings.push_audience or push_endpoint,
                }
            request["push_config"] = push
    return request
