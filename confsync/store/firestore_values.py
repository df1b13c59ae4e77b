"""Plumbing the Firestore store's modules share: transactions, snapshots and times as Firestore
answers them. No document layout here (that is in firestore.py and firestore_accounts.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.api_core import exceptions as google_exceptions
from google.cloud import firestore

__all__ = ["BATCH", "aware", "create", "data_of", "delete_in_batches", "maybe_aware", "transact"]

_T = TypeVar("_T")

BATCH = 500  # Firestore's limit of writes in one batch


def transact(client: firestore.Client, work: Callable[[Any], _T]) -> _T:
    """Run ``work(transaction)`` in a transaction, retried by the client when it contends."""
    transaction = client.transaction(max_attempts=20)
    result: _T = firestore.transactional(work)(transaction)
    return result


def create(ref: Any, data: dict[str, Any]) -> bool:
    """Write ``data`` as a new document unless ``ref`` exists; True if created. Atomic, and
    cheaper than a transaction: the write itself carries the precondition."""
    try:
        ref.create(data)
    except google_exceptions.AlreadyExists:
        return False
    return True


def delete_in_batches(client: firestore.Client, refs: Iterable[Any]) -> int:
    """Delete ``refs`` in order, one batched write per ``BATCH``; how many were given."""
    deleted, batch = 0, client.batch()
    for ref in refs:
        batch.delete(ref)
        deleted += 1
        if deleted % BATCH == 0:
            batch.commit()
            batch = client.batch()
    if deleted % BATCH:
        batch.commit()
    return deleted


def data_of(snapshot: Any) -> dict[str, Any]:
    data: dict[str, Any] = snapshot.to_dict() or {}
    return data


def aware(value: Any) -> datetime:
    """Firestore answers DatetimeWithNanoseconds in UTC; make it a plain aware datetime."""
    moment = datetime.fromisoformat(value.isoformat()) if hasattr(value, "isoformat") else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def maybe_aware(value: Any) -> datetime | None:
    return None if value is None else aware(value)
