"""What both Pub/Sub workers (streaming pull in ``subscriber``, unary Pull in ``unary``) share:
turning a delivered Pub/Sub message into our ``Message``, and naming a subscription."""

from __future__ import annotations

from typing import Any

from confsync.settings import Settings
from confsync.transport.base import Message

__all__ = ["delivered", "subscription_path"]


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
