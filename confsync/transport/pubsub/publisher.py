"""Publishing to Google Cloud Pub/Sub (or its emulator): a batching, ordered publisher.

- ``PubSubPublisher`` sends what concurrent callers publish to a topic as one Publish
  request at a time (many ordering keys per request, each key's order kept), batched by
  ``max_messages`` and ``max_latency_s``, every call bounded by ``timeout_s`` (never the
  client's 600 s default).
  ``publish`` returns once Pub/Sub holds the message. A failed request pauses its ordering
  keys, as google-cloud-pubsub's publisher does; the caller resumes them before raising
  ``TransientError``, so the next attempt can go through.
- Each message carries the trace it was published in, as its ``traceparent`` attribute
  (confsync/tracing.py), taken in the caller's thread, not the sender's.
- ``open_publisher`` builds one from Settings, or raises ``ConfigError`` when there are no
  credentials.
- ``LazyPubSubPublisher`` builds one (with a factory such as ``open_publisher``) on first
  publish, for commands that may never publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Self

from google.api_core import exceptions as google_exceptions
from google.api_core.retry import Retry
from google.auth import exceptions as google_auth_exceptions
from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # the package ships no stub for this re-export

from confsync.errors import ConfigError, TransientError
from confsync.settings import Settings
from confsync.tracing import inject
from confsync.transport.pubsub._rpc import Rpc, publish_request

__all__ = ["LazyPubSubPublisher", "PubSubPublisher", "open_publisher"]

_MAX_REQUEST_BYTES = 9 * 1024 * 1024  # Pub/Sub refuses a Publish request over 10 MB


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
    they publish to a topic within ``max_latency_s`` of an idle moment, up to ``max_messages``
    (Pub/Sub takes at most 1,000) and 9 MiB, goes out as one Publish request, whatever its
    ordering keys; messages that arrive while a request is in flight go in the next one at once.
    A topic's requests never overlap, so messages with one ordering key reach Pub/Sub in the
    order they were published (Pub/Sub keeps the order of one key's messages within a request).
    google-cloud-pubsub's own publisher sends one request per key instead, slower and dearer in
    CPU with many keys (bench/transport.py).

    A failed request fails every caller in it and pauses its ordering keys, as
    google-cloud-pubsub does: the key's messages still queued fail with it, and so does any
    published for the key until it is resumed, so none overtakes the failed one. The caller
    that saw the failure resumes the key before its ``TransientError`` is raised, so its retry
    (a nack, a 503 to Google) can go through.
    """

    def __init__(self, project_id: str, *, timeout_s: float, max_messages: int, max_latency_s: float) -> None:
        self._project = project_id
        self._timeout_s = timeout_s
        self._retry = Retry(timeout=timeout_s)
        self._client = pubsub_v1.PublisherClient()  # for its channel: it honours PUBSUB_EMULATOR_HOST
        self._max_messages = max_messages
        self._max_latency_s = max_latency_s
        self._queues: dict[str, list[_Pending]] = {}
        self._paused: dict[str, set[str]] = {}
        self._senders: dict[str, threading.Thread] = {}
        self._lock = threading.Condition()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            settings.project_id,
            timeout_s=settings.pubsub_timeout_s,
            max_messages=settings.pubsub_publish_max_messages,
            max_latency_s=settings.pubsub_publish_max_latency_s,
        )

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
            self._enqueue(path, _Pending(data, key, inject(attrs), done=threading.Event()))
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
        self._enqueue(path, _Pending(data, ordering_key, inject(attributes), future=future))
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
        rpc = Rpc(self._client.transport.publish, field="topic", resource=path, retry=self._retry)
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
            self._send(path, rpc, batch)
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

    def _send(self, path: str, rpc: Rpc, batch: list[_Pending]) -> None:
        if not batch:
            return
        try:
            # One request carrying the whole batch, on the client's emulator-aware channel.
            request = publish_request(path, [(item.data, item.ordering_key, item.attributes) for item in batch])
            answer = rpc(request, timeout=self._timeout_s)
            for item, message_id in zip(batch, type(answer).pb(answer).message_ids, strict=True):
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
        return PubSubPublisher.from_settings(settings)
    except google_auth_exceptions.DefaultCredentialsError as err:
        raise ConfigError(
            "no credentials for Pub/Sub: set PUBSUB_EMULATOR_HOST or Application Default Credentials"
        ) from err


class LazyPubSubPublisher:
    """A PubSubPublisher built on first use (or ``connect``): commands that may never publish (or
    run where Pub/Sub is not configured) do not need Google credentials just to start."""

    def __init__(self, factory: Callable[[], PubSubPublisher]) -> None:
        self._factory = factory
        self._real: PubSubPublisher | None = None
        self._lock = threading.Lock()  # request threads may publish first at once: one publisher

    def publish(
        self, topic: str, data: bytes, *, ordering_key: str = "", attributes: Mapping[str, str] | None = None
    ) -> str:
        return self._ready().publish(topic, data, ordering_key=ordering_key, attributes=attributes)

    def publish_many(self, topic: str, messages: list[tuple[bytes, str, Mapping[str, str]]]) -> list[str]:
        return self._ready().publish_many(topic, messages)

    async def apublish(
        self, topic: str, data: bytes, *, ordering_key: str = "", attributes: Mapping[str, str] | None = None
    ) -> str:
        return await self._ready().apublish(topic, data, ordering_key=ordering_key, attributes=attributes)

    def check(self, topic: str, *, timeout_s: float) -> None:
        self._ready().check(topic, timeout_s=timeout_s)

    def connect(self) -> None:
        """Build the publisher now: ConfigError at once if there are no credentials."""
        self._ready()

    def _ready(self) -> PubSubPublisher:
        with self._lock:
            if self._real is None:
                self._real = self._factory()
            return self._real

    def close(self) -> None:
        if self._real is not None:
            self._real.close()
