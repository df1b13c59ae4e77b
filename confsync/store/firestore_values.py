"""Plumbing the Firestore store's modules share: transactions, snapshots and times as Firestore
answers them. No document layout here (that is in firestore.py and firestore_accounts.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.cloud import firestore

__all__ = ["aware", "data_of", "maybe_aware", "transact"]

_T = TypeVar("_T")


def transact(client: firestore.Client, work: Callable[[Any], _T]) -> _T:
    """Run ``work(transaction)`` in a transaction, retried by the client when it contends."""
    transaction = client.transaction(max_attempts=20)
    result: _T = firestore.transactional(work)(transaction)
    return result


def data_of(snapshot: Any) -> dict[str, Any]:
    data: dict[str, Any] = snapshot.to_dict() or {}
    return data


def aware(value: Any) -> datetime:
    """Firestore answers DatetimeWithNanoseconds in UTC; make it a plain aware datetime."""
    moment = datetime.fromisoformat(value.isoformat()) if hasattr(value, "isoformat") else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def maybe_aware(value: Any) -> datetime | None:
    return None if value is None else aware(value)
