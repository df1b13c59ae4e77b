"""What both Pub/Sub workers (streaming pull in ``subscriber``, unary Pull in ``unary``) share:
the values they pull with (``PullOptions``), naming a subscription, turning a delivered Pub/Sub
message into our ``Message``, and settling it (``PullWorker``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Self

from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # the package ships no stub for this re-export
from google.protobuf.timestamp_pb2 import Timestamp

from confsync.settings import Settings
from confsync.transport.base import DeadLetter, Handler, Message, Outcome, process

__all__ = ["PullOptions", "PullWorker", "delivered", "subscription_path"]


@dataclass(frozen=True, slots=True)
class PullOptions:
    """How a worker pulls one subscription: ``streams`` pullers, at most ``flow_max_messages``
    (and ``flow_max_bytes``) held at once, leases extended by ``lease_extension_s``, dead-lettered
    on attempt ``max_delivery_attempts``; ``stop`` waits ``shutdown_deadline_s`` by default and
    each ack or lease call ``timeout_s``."""

    project_id: str
    streams: int
    flow_max_messages: int
    flow_max_bytes: int
    lease_extension_s: int
    max_delivery_attempts: int
    shutdown_deadline_s: float
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            project_id=settings.project_id,
            streams=settings.pubsub_streams,
            flow_max_messages=settings.pubsub_flow_max_messages,
            flow_max_bytes=settings.pubsub_flow_max_bytes,
            lease_extension_s=settings.pubsub_lease_extension_s,
            max_delivery_attempts=settings.pubsub_max_delivery_attempts,
            shutdown_deadline_s=settings.shutdown_deadline_s,
            timeout_s=settings.pubsub_timeout_s,
        )


def delivered(pubsub_message: Any, delivery_attempt: int | None) -> Message:
    """Our Message from a Pub/Sub one: the streaming client's, or a Pull answer's ``.message``
    (whose attempt count sits beside it, 0 where the subscription has no dead-letter policy)."""
    published = pubsub_message.publish_time
    if isinstance(published, Timestamp):  # a raw protobuf answer's (the unary worker skips proto-plus)
        published = published.ToDatetime(tzinfo=UTC)
    return Message(
        data=bytes(pubsub_message.data),
        attributes=dict(pubsub_message.attributes),
        message_id=str(pubsub_message.message_id),
        ordering_key=str(pubsub_message.ordering_key or ""),
        delivery_attempt=delivery_attempt or None,
        publish_time=published,
    )


def subscription_path(project_id: str, subscription: str) -> str:
    """``projects/P/subscriptions/S`` for a short name (in ``project_id``); a full path as is."""
    if subscription.startswith("projects/"):
        return subscription
    return f"projects/{project_id}/subscriptions/{subscription}"


class PullWorker:
    """The part of a worker both pull styles share: its subscription, client and handler, and
    the one way a delivered message is settled (``confsync.transport.base.process``)."""

    def __init__(self, options: PullOptions, subscription: str, handler: Handler, *, dead_letter: DeadLetter) -> None:
        self._options = options
        self._handler = handler
        self._dead_letter = dead_letter
        self._client = pubsub_v1.SubscriberClient()
        self._path = subscription_path(options.project_id, subscription)

    def _process(self, pubsub_message: Any, delivery_attempt: int | None) -> Outcome:
        return process(
            delivered(pubsub_message, delivery_attempt),
            self._handler,
            dead_letter=self._dead_letter,
            max_attempts=self._options.max_delivery_attempts,
        )

    def _stop_by(self, deadline_s: float | None) -> float:
        """The monotonic time ``stop`` gives up at: ``deadline_s`` from now, else the options' deadline."""
        return time.monotonic() + (self._options.shutdown_deadline_s if deadline_s is None else deadline_s)
