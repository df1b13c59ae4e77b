"""Push notifications: real HTTP POSTs to each watch channel's address, as Calendar sends them.

Each notification is an empty-bodied POST with Google's headers
(https://developers.google.com/calendar/api/guides/push#receiving-notifications):
X-Goog-Channel-ID, X-Goog-Channel-Token (when the channel has one), X-Goog-Channel-Expiration
(RFC 1123), X-Goog-Resource-ID, X-Goog-Resource-URI, X-Goog-Resource-State (``sync`` first,
then ``exists``) and X-Goog-Message-Number. Delivery never blocks a write: writes enqueue,
one task per channel sends first attempts in message-number order, and a failed delivery
(connection error, timeout, 429 or 5xx) is retried in the background with exponential
backoff until ``max_elapsed_s``, without holding up later messages. A stopped or expired
channel gets nothing more, retries included. Any 2xx counts as delivered; other 4xx answers
are final.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import httpx
import structlog

from confsync.tls import tls_context
from sandbox.calendar.model import CalendarModel, Notification

__all__ = ["Notifier", "RetryPolicy"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial_s: float = 0.5
    max_delay_s: float = 8.0
    max_elapsed_s: float = 60.0
    timeout_s: float = 5.0


class Notifier:
    """Delivers a model's notifications from the server's event loop."""

    def __init__(self, model: CalendarModel, policy: RetryPolicy | None = None) -> None:
        self._model = model
        self._policy = policy or RetryPolicy()
        self._queues: dict[str, asyncio.Queue[Notification]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self.duplicates = False  # deliver every notification twice, as Google may

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self._policy.timeout_s, verify=tls_context())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._queues.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def enqueue(self, notifications: list[Notification]) -> None:
        for notification in notifications:
            queue = self._queues.get(notification.channel_id)
            if queue is None:
                queue = self._queues[notification.channel_id] = asyncio.Queue()
                self._spawn(self._drain(queue))
            queue.put_nowait(notification)

    def forget(self) -> None:
        """Drop every queued notification (a reset): running tasks stop at their next check."""
        for queue in self._queues.values():
            while not queue.empty():
                queue.get_nowait()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, queue: asyncio.Queue[Notification]) -> None:
        while True:
            notification = await queue.get()
            delivered, retryable = await self._attempt(notification, 1)
            if not delivered and retryable:
                self._spawn(self._retry(notification))
            elif delivered and self.duplicates:
                await self._attempt(notification, 2)

    async def _retry(self, notification: Notification) -> None:
        deadline = time.monotonic() + self._policy.max_elapsed_s
        delay = self._policy.initial_s
        attempt = 1
        while time.monotonic() + delay <= deadline:
            await asyncio.sleep(delay)
            attempt += 1
            delivered, retryable = await self._attempt(notification, attempt)
            if delivered or not retryable:
                return
            delay = min(delay * 2, self._policy.max_delay_s)
        self._model.record_delivery(notification.channel_id, notification.message_number, gave_up=True)

    async def _attempt(self, notification: Notification, attempt: int) -> tuple[bool, bool]:
        """One POST; returns (delivered, worth retrying)."""
        if not self._model.is_deliverable(notification.channel_id) or self._client is None:
            self._model.record_delivery(notification.channel_id, notification.message_number, error="channel closed")
            return False, False
        status: int | None = None
        error: str | None = None
        try:
            answer = await self._client.post(notification.address, headers=_headers(notification), content=b"")
            status = answer.status_code
        except httpx.HTTPError as err:
            error = f"{type(err).__name__}: {err}"
        delivered = status is not None and 200 <= status < 300
        retryable = status is None or status == 429 or status >= 500
        self._model.record_delivery(
            notification.channel_id,
            notification.message_number,
            status=status,
            attempts=attempt,
            delivered=delivered,
            error=error,
        )
        log.info(
            "notification",
            channel_id=notification.channel_id,
            message_number=notification.message_number,
            resource_state=notification.state,
            status=status,
            attempt=attempt,
            error=error,
        )
        return delivered, retryable


def _headers(notification: Notification) -> dict[str, str]:
    headers = {
        "X-Goog-Channel-ID": notification.channel_id,
        "X-Goog-Channel-Expiration": formatdate(notification.expiration_ms / 1000, usegmt=True),
        "X-Goog-Resource-ID": notification.resource_id,
        "X-Goog-Resource-URI": notification.resource_uri,
        "X-Goog-Resource-State": notification.state,
        "X-Goog-Message-Number": str(notification.message_number),
        "Content-Length": "0",
    }
    if notification.token is not None:
        headers["X-Goog-Channel-Token"] = notification.token
    return headers
