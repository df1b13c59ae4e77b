"""A calendar's notifications folded: at most one CalendarChanged per calendar per ``window_s``.

A calendar in a storm (an import, a script renaming a hundred meetings) is notified ten or twenty
times a second, and the processor lists it at most every 0.5-2 s however many messages it gets
(processors/pacing.py): each message past the first of a listing only costs, a Pub/Sub publish
here and a delivery, a decode and an acknowledgement there. So the first notification of a quiet
calendar is published at once, and those that follow within ``window_s`` are folded into one
CalendarChanged published when the window closes: the newest of them (its ``received_at``,
channel and message number), carrying how many it stands for (``notifications``: the listing
pace counts every one). A window that closes with something folded opens the next; one that
closes empty leaves the calendar quiet again. Only ``exists`` notifications fold: ``sync`` and
``not_exists`` are published as they come.

A folded notification is answered 200 before its message is published: Calendar sends a
channel's notifications one after another, so holding the answer would hold up the channel. It
is not lost if this process dies first: the webhook records every notification before answering
(``Store.record_notification``), and lag repair (ingest/lag.py) re-announces a calendar notified
after its last listing began. A publish that fails when a window closes is logged and left to
lag repair the same way. ``close`` (the service stopping) publishes whatever is folded at once.

``window_s`` is at most the processor's shortest listing interval (stack/services.py holds it
there), so a folded notification reaches the processor before the calendar could be listed
again: folding costs no latency.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import Counter
from dataclasses import dataclass, replace

import structlog
from starlette.concurrency import run_in_threadpool

from confsync.contracts import CalendarChanged, ResourceState, Source
from confsync.ports import AsyncPublisher, Publisher

__all__ = ["NotificationFold"]

log = structlog.get_logger(__name__)


@dataclass
class _Window:
    newest: CalendarChanged | None = None
    count: int = 0
    # The newest folded request's context: its trace goes on with the message.
    context: contextvars.Context | None = None

    def fold(self, change: CalendarChanged) -> None:
        if self.newest is None or change.received_at >= self.newest.received_at:
            self.newest, self.context = change, contextvars.copy_context()
        self.count += 1


class NotificationFold:
    """Publishes the webhook's CalendarChanged messages to ``topic`` (ordering key = calendar id),
    folding a calendar's within ``window_s``; 0 publishes every one as it comes. Runs on one event
    loop, the webhook's."""

    def __init__(self, publisher: Publisher, topic: str, *, window_s: float) -> None:
        self._publisher = publisher
        self._apublish = publisher.apublish if isinstance(publisher, AsyncPublisher) else None
        self._topic = topic
        self._window_s = window_s
        self._windows: dict[str, _Window] = {}
        self._sending: set[asyncio.Task[None]] = set()
        # Folded notifications once their window closed, published or failed (the webhook counts
        # each as it is folded).
        self.counts: Counter[str] = Counter()

    async def send(self, change: CalendarChanged) -> bool:
        """Publish ``change`` now (True), or fold it into its calendar's open window (False)."""
        if self._window_s <= 0 or change.source is not Source.PUSH or change.resource_state is not ResourceState.EXISTS:
            await self._publish(change)
            return True
        window = self._windows.get(change.calendar_id)
        if window is not None:
            window.fold(change)
            return False
        self._open(change.calendar_id)
        await self._publish(change)  # a failure is the caller's 503: Calendar sends it again
        return True

    async def close(self) -> None:
        """Publish what is folded now and fold nothing more (the service is stopping)."""
        self._window_s = 0
        windows, self._windows = self._windows, {}
        for window in windows.values():
            self._send_folded(window)
        await asyncio.gather(*self._sending, return_exceptions=True)

    async def _publish(self, change: CalendarChanged) -> None:
        data, key = change.to_bytes(), change.calendar_id
        if self._apublish is not None:
            await self._apublish(self._topic, data, ordering_key=key)
        else:
            await run_in_threadpool(lambda: self._publisher.publish(self._topic, data, ordering_key=key))

    def _open(self, calendar_id: str) -> None:
        self._windows[calendar_id] = _Window()
        asyncio.get_running_loop().call_later(self._window_s, self._close, calendar_id)

    def _close(self, calendar_id: str) -> None:
        window = self._windows.pop(calendar_id, None)
        if window is None or window.newest is None:
            return  # quiet again (or closed by ``close``)
        self._open(calendar_id)  # the storm goes on: its next notifications fold into the next window
        self._send_folded(window)

    def _send_folded(self, window: _Window) -> None:
        if window.newest is None:
            return
        change = replace(window.newest, notifications=window.count)
        task = asyncio.get_running_loop().create_task(self._publish_folded(change), context=window.context)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _publish_folded(self, change: CalendarChanged) -> None:
        try:
            await self._publish(change)
        except Exception as err:  # noqa: BLE001 - each was recorded: lag repair re-announces the calendar
            self.counts["fold_failed"] += change.notifications
            log.warning(
                "folded notifications not published; lag repair will re-announce the calendar",
                calendar_id=change.calendar_id,
                notifications=change.notifications,
                error=str(err),
            )
        else:
            self.counts["fold_published"] += change.notifications
