"""What every transport shares: the received message, the handler contract, and the one
function that turns a handler's outcome into ack, nack or dead-letter.

A handler is ``handle(message) -> None``. Returning means done (ack). Raising
``TransientError`` (or an unexpected exception: a bug may be fixed by the next deploy) means
try again later (nack) until the last allowed delivery, when the message is dead-lettered
instead of being dropped. Raising ``PermanentError`` (``InvalidMessage`` included) means it
will never work: the original bytes and attributes go to the dead-letter topic with the
reason attached, then the message is acked. If that dead-letter publish fails, the message
is nacked: nothing is lost. Only ``decide`` makes this choice.

``process`` runs the handler in a span of the trace the message's ``traceparent`` attribute
names (confsync/tracing.py), so its log lines, and what it publishes, belong to the change
that sent it; a message without one (or with a malformed one) starts a trace of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

import structlog

from confsync.errors import ConfsyncError, PermanentError
from confsync.ports import Publisher
from confsync.rfc3339 import format_rfc3339, utc_now
from confsync.tracing import SpanKind, failed, span

__all__ = ["DeadLetter", "Handler", "Message", "Outcome", "dead_letter_attributes", "decide", "process"]

log = structlog.get_logger(__name__)

_MAX_ATTRIBUTE = 1024  # Pub/Sub's limit on an attribute value, in bytes


@dataclass(frozen=True, slots=True)
class Message:
    """One delivered message, whatever transport brought it."""

    data: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)
    message_id: str = ""
    ordering_key: str = ""
    delivery_attempt: int | None = None  # None where the transport cannot tell
    publish_time: datetime | None = None


Handler = Callable[[Message], None]


class Outcome(Enum):
    ACK = "ack"
    NACK = "nack"
    DEAD_LETTER = "dead_letter"


def decide(error: BaseException | None, *, delivery_attempt: int | None, max_attempts: int) -> Outcome:
    """The one place a handler's result becomes ack, nack or dead-letter."""
    if error is None:
        return Outcome.ACK
    if isinstance(error, PermanentError):
        return Outcome.DEAD_LETTER
    if delivery_attempt is not None and delivery_attempt >= max_attempts:
        return Outcome.DEAD_LETTER
    return Outcome.NACK


def dead_letter_attributes(message: Message, error: BaseException, *, source: str) -> dict[str, str]:
    """The original attributes plus why, where from, when and after how many attempts."""
    attributes = dict(message.attributes)
    details = {
        "dead_letter_reason": str(error) or type(error).__name__,
        "dead_letter_error": type(error).__name__,
        "dead_letter_source": source,
        "dead_letter_message_id": message.message_id,
        "dead_letter_attempts": str(message.delivery_attempt or ""),
        "dead_letter_at": format_rfc3339(utc_now()),
    }
    if isinstance(error, ConfsyncError) and error.status is not None:
        details["dead_letter_status"] = str(error.status)
    if isinstance(error, ConfsyncError) and error.body:
        details["dead_letter_body"] = error.body
    attributes.update({key: _clip(value) for key, value in details.items() if value})
    return attributes


def _clip(value: str) -> str:
    encoded = value.encode("utf-8")
    return value if len(encoded) <= _MAX_ATTRIBUTE else encoded[: _MAX_ATTRIBUTE - 3].decode("utf-8", "ignore") + "..."


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Where a transport sends what cannot be handled."""

    publisher: Publisher
    topic: str
    source: str  # the subscription (or route) the message came from


def process(message: Message, handler: Handler, *, dead_letter: DeadLetter, max_attempts: int) -> Outcome:
    """Run the handler on one message and carry out what ``decide`` says (except ack/nack,
    which the transport does with the returned outcome)."""
    started = time.perf_counter()
    error: BaseException | None = None
    with (
        span(f"handle {dead_letter.source}", parent=message.attributes, kind=SpanKind.CONSUMER) as current,
        structlog.contextvars.bound_contextvars(message_id=message.message_id),
    ):
        try:
            handler(message)
        except Exception as caught:  # noqa: BLE001 - every failure is classified by decide()
            error = caught
        outcome = decide(error, delivery_attempt=message.delivery_attempt, max_attempts=max_attempts)
        if outcome is Outcome.DEAD_LETTER:
            outcome = _dead_letter(message, error, dead_letter)
        _log(message, outcome, error, started)
        if current.is_recording():
            current.set_attributes({"messaging.message.id": message.message_id, "confsync.outcome": outcome.value})
            if error is not None:
                failed(current, error)
    return outcome


def _dead_letter(message: Message, error: BaseException | None, dead_letter: DeadLetter) -> Outcome:
    assert error is not None  # noqa: S101 - decide() dead-letters only failures
    attributes = dead_letter_attributes(message, error, source=dead_letter.source)
    try:
        dead_letter.publisher.publish(dead_letter.topic, message.data, ordering_key="", attributes=attributes)
    except Exception:
        log.exception("dead-letter publish failed; the message will be redelivered", topic=dead_letter.topic)
        return Outcome.NACK
    return Outcome.DEAD_LETTER


def _log(message: Message, outcome: Outcome, error: BaseException | None, started: float) -> None:
    fields = {
        "outcome": outcome.value,
        "delivery_attempt": message.delivery_attempt,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    if error is None:
        log.debug("message handled", **fields)
    elif outcome is Outcome.DEAD_LETTER:
        log.error("message dead-lettered", error=f"{type(error).__name__}: {error}", **fields)
    elif isinstance(error, ConfsyncError):
        log.warning("message will be retried", error=f"{type(error).__name__}: {error}", **fields)
    else:
        log.error("handler failed unexpectedly; will retry", exc_info=error, **fields)
