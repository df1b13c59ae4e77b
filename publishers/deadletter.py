"""Dead letters of the conference-commands topic: look at them, and replay them once fixed.

They wait on the ``<dead topic>-hold`` subscription (``confsync pubsub bootstrap`` creates
it). ``list`` pulls without consuming (each message is handed straight back) and reports the
reason, the provider's status, the attempts and the age; ``replay`` republishes the chosen
ones to the command topic (ordering key = conference id, the dead-letter attributes removed)
and only then acknowledges them, so a failed replay loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.api_core import exceptions as google_exceptions
from google.api_core.retry import Retry
from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # the package ships no stub for this re-export

from confsync.contracts import ConferenceCommand
from confsync.errors import InvalidMessage
from confsync.ports import Publisher
from confsync.rfc3339 import parse_rfc3339, utc_now
from confsync.settings import Settings

__all__ = ["DeadLetterEntry", "DeadLetters"]


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    message_id: str
    reason: str
    error: str
    status: str | None
    attempts: str | None
    age_s: float | None
    conference_id: str | None
    ack_id: str
    data: bytes
    attributes: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "reason": self.reason,
            "error": self.error,
            "status": self.status,
            "attempts": self.attempts,
            "age_s": None if self.age_s is None else round(self.age_s, 1),
            "conference_id": self.conference_id,
        }


class DeadLetters:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._subscriber = pubsub_v1.SubscriberClient()
        self._path = self._subscriber.subscription_path(
            settings.project_id, f"{settings.topic_conference_commands_dead}-hold"
        )
        self._retry = Retry(timeout=settings.pubsub_timeout_s)

    def _pull(self, limit: int) -> list[DeadLetterEntry]:
        entries: list[DeadLetterEntry] = []
        while len(entries) < limit:
            # A Pull with nothing to give waits out its timeout: once some came, look briefly for more.
            wait_s = 1.0 if entries else 3.0
            try:
                answer = self._subscriber.pull(
                    subscription=self._path,
                    max_messages=min(1000, limit - len(entries)),
                    timeout=wait_s,
                    retry=self._retry,
                )
            except google_exceptions.DeadlineExceeded:
                break
            if not answer.received_messages:
                break
            entries += [_entry(item) for item in answer.received_messages]
        return entries

    def _release(self, entries: list[DeadLetterEntry]) -> None:
        if entries:
            self._subscriber.modify_ack_deadline(
                subscription=self._path, ack_ids=[e.ack_id for e in entries], ack_deadline_seconds=0, retry=self._retry
            )

    def peek(self, limit: int = 1000) -> list[DeadLetterEntry]:
        """Up to ``limit`` dead letters, handed straight back (nothing is consumed)."""
        entries = self._pull(limit)
        self._release(entries)
        return entries

    def replay(
        self, publisher: Publisher, *, ids: set[str] | None, dry_run: bool = False, limit: int = 1000
    ) -> list[DeadLetterEntry]:
        """Republish the chosen dead letters (all when ``ids`` is None); the ones replayed."""
        entries = self._pull(limit)
        chosen = [e for e in entries if ids is None or e.message_id in ids]
        keep = [e for e in entries if e not in chosen]
        if dry_run:
            self._release(entries)
            return chosen
        replayed: list[DeadLetterEntry] = []
        try:
            for entry in chosen:
                original = {k: v for k, v in entry.attributes.items() if not k.startswith("dead_letter_")}
                publisher.publish(
                    self._settings.topic_conference_commands,
                    entry.data,
                    ordering_key=entry.conference_id or "",
                    attributes=original,
                )
                self._subscriber.acknowledge(subscription=self._path, ack_ids=[entry.ack_id], retry=self._retry)
                replayed.append(entry)
        finally:
            self._release(keep + [e for e in chosen if e not in replayed])
        return replayed

    def close(self) -> None:
        self._subscriber.close()


def _entry(item: Any) -> DeadLetterEntry:
    attributes = dict(item.message.attributes)
    data = bytes(item.message.data)
    try:
        conference_id: str | None = ConferenceCommand.from_bytes(data).conference_id
    except InvalidMessage:
        conference_id = None
    return DeadLetterEntry(
        message_id=attributes.get("dead_letter_message_id") or str(item.message.message_id),
        reason=attributes.get("dead_letter_reason", ""),
        error=attributes.get("dead_letter_error", ""),
        status=attributes.get("dead_letter_status"),
        attempts=attributes.get("dead_letter_attempts"),
        age_s=_age(attributes.get("dead_letter_at")),
        conference_id=conference_id,
        ack_id=item.ack_id,
        data=data,
        attributes=attributes,
    )


def _age(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        moment: datetime = parse_rfc3339(stamp)
    except ValueError:
        return None
    return (utc_now() - moment).total_seconds()
