"""Times as the SQLite store keeps them: integer microseconds since the epoch (UTC), so versions
compare exactly and sort as numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["EPOCH", "from_us", "to_us"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored")
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int | None) -> datetime | None:
    return None if value is None else EPOCH + timedelta(microseconds=value)
