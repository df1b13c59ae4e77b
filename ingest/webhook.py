"""``POST /notifications``: Calendar's push notifications, turned into CalendarChanged messages.

Calendar sends headers only (https://developers.google.com/calendar/api/guides/push):
X-Goog-Channel-ID, -Token, -Expiration, X-Goog-Resource-ID, -URI, -State, X-Goog-Message-Number.

- Missing or malformed headers -> 400 with the reason.
- Unknown or stopped channel -> 200 (so Google stops retrying), nothing published, counted.
- Token (compared in constant time) or resource id not matching the channel -> 401, nothing
  published, a warning naming the channel (never the token). A channel still waiting for
  events.watch's answer has no resource id yet (ingest/channels.py records it first, because
  Google's ``sync`` message can arrive before that answer): its token alone admits it.
- Otherwise (``sync``, ``exists``, ``not_exists``) publish CalendarChanged with ordering key =
  calendar id, remember when it arrived, 200. If publishing fails -> 503, nothing
  remembered, so Google's retry publishes it. A calendar notified again within
  ``CONFSYNC_NOTIFY_FOLD_S`` of a publish has its notification folded into the next one
  (ingest/fold.py): remembered, then 200, and published when the fold closes. So a 200 means
  published, or remembered where lag repair (ingest/lag.py) finds it if this process dies first.

Each notification is handled in a span (confsync/tracing.py) that continues the request's trace
(``traceparent``, or Cloud Run's ``X-Cloud-Trace-Context``) or begins one; a malformed header
just means a new trace. The CalendarChanged carries it on in its ``traceparent`` attribute, so
the listing it causes and the provider calls that follow are in the same trace.

The message number is carried and recorded, never a reason to drop a notification: anyone
holding a channel's token could send a huge one. A repeat is published again and costs little:
the processor acknowledges a notification older than the calendar's last completed sync
without calling Google.
"""

from __future__ import annotations

import hmac
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from confsync.contracts import CalendarChanged, ResourceState, Source
from confsync.errors import ConfsyncError
from confsync.ports import Publisher, Store
from confsync.rfc3339 import utc_now
from confsync.store import PENDING_RESOURCE_ID, ChannelRecord
from confsync.tracing import SpanKind, span
from ingest.fold import NotificationFold

__all__ = ["WebhookStats", "webhook_route"]

log = structlog.get_logger(__name__)

MAX_BODY = 64 * 1024
_T = TypeVar("_T")
_MAX_HEADER = 1024
_MESSAGE_NUMBER = re.compile(r"[0-9]{1,18}")  # ASCII only: str.isdigit() also admits '²'


@dataclass
class WebhookStats:
    """What the webhook did, by outcome (published, duplicate, unknown_channel, ...)."""

    counts: Counter[str] = field(default_factory=Counter)


class _Refused(Exception):
    def __init__(self, status: int, reason: str, outcome: str) -> None:
        super().__init__(reason)
        self.status, self.reason, self.outcome = status, reason, outcome


@dataclass(frozen=True, slots=True)
class _Notification:
    channel_id: str
    token: str | None
    resource_id: str
    resource_state: ResourceState
    message_number: int


def webhook_route(  # noqa: PLR0913 - everything the webhook needs, named
    store: Store,
    publisher: Publisher,
    *,
    topic: str,
    stats: WebhookStats | None = None,
    clock: Callable[[], datetime] = utc_now,
    path: str = "/notifications",
    fold: NotificationFold | None = None,
) -> Route:
    counts = (stats or WebhookStats()).counts
    sending = fold or NotificationFold(publisher, topic, window_s=0)

    async def off_loop(work: Callable[..., _T], *args: object) -> _T:
        """Local stores answer in microseconds: call them here; network stores from a thread."""
        return work(*args) if store.local else await run_in_threadpool(work, *args)

    def admit(notification: _Notification) -> ChannelRecord:
        """The channel this notification is for, if it is genuine; else _Refused."""
        channel = store.get_channel(notification.channel_id)
        if channel is None or channel.state.value != "live":
            raise _Refused(200, "unknown or stopped channel", "unknown_channel")
        structlog.contextvars.bind_contextvars(calendar_id=channel.calendar_id)
        if notification.token is None or not hmac.compare_digest(
            notification.token.encode(), channel.token.reveal().encode()
        ):
            raise _Refused(401, "channel token does not match", "bad_token")
        if channel.resource_id not in (PENDING_RESOURCE_ID, notification.resource_id):
            raise _Refused(401, "resource id does not match the channel", "bad_resource")
        return channel

    async def handle(notification: _Notification) -> str:
        channel = await off_loop(admit, notification)
        received = clock()
        change = CalendarChanged(
            calendar_id=channel.calendar_id,
            source=Source.PUSH,
            received_at=received,
            channel_id=channel.channel_id,
            resource_state=notification.resource_state,
            message_number=notification.message_number,
        )
        try:
            published = await sending.send(change)
        except (ConfsyncError, TimeoutError) as err:
            raise _Refused(503, f"could not publish: {err}", "publish_failed") from err
        # Before the answer, folded or not: lag repair re-announces what a crash kept from Pub/Sub.
        await off_loop(
            store.record_notification, channel.calendar_id, channel.channel_id, notification.message_number, received
        )
        return "published" if published else "folded"

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        channel_id = request.headers.get("x-goog-channel-id", "")[:_MAX_HEADER]
        with (
            span(f"POST {path}", parent=request.headers, kind=SpanKind.SERVER),
            structlog.contextvars.bound_contextvars(channel_id=channel_id or None),
        ):
            try:
                await _drain(request)
                notification = _parse(request)
                outcome = await handle(notification)
                response = Response(status_code=200)
            except _Refused as refused:
                outcome = refused.outcome
                response = (
                    Response(status_code=200)
                    if refused.status == 200
                    else JSONResponse({"error": refused.reason}, status_code=refused.status)
                )
                level = log.warning if refused.status in (401, 503) else log.info
                level("notification refused", channel_id=channel_id, reason=refused.reason, status=refused.status)
            counts[outcome] += 1
            log.info(
                "notification",
                outcome=outcome,
                status=response.status_code,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            return response

    return Route(path, endpoint, methods=["POST"])


def _parse(request: Request) -> _Notification:
    headers = request.headers

    def required(name: str) -> str:
        value = headers.get(name)
        if not value:
            raise _Refused(400, f"missing header {name}", "bad_request")
        if len(value) > _MAX_HEADER:
            raise _Refused(400, f"header {name} is too long", "bad_request")
        return value

    channel_id = required("X-Goog-Channel-ID")
    resource_id = required("X-Goog-Resource-ID")
    state_text = required("X-Goog-Resource-State")
    number_text = required("X-Goog-Message-Number")
    try:
        resource_state = ResourceState(state_text)
    except ValueError as err:
        raise _Refused(400, f"unknown X-Goog-Resource-State {state_text!r}", "bad_request") from err
    if not _MESSAGE_NUMBER.fullmatch(number_text):
        raise _Refused(400, "X-Goog-Message-Number is not a number", "bad_request")
    token = headers.get("X-Goog-Channel-Token")
    return _Notification(channel_id, token, resource_id, resource_state, int(number_text))


async def _drain(request: Request) -> None:
    """Calendar's notifications have no body; read (and drop) at most MAX_BODY of one."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _Refused(413, "notification body too large", "bad_request")
