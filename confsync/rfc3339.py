"""RFC 3339 timestamps as Google Calendar writes them (``2026-11-24T18:09:47.123Z``).

Calendar's ``updated`` field is the version of an event; confsync compares versions as
aware UTC datetimes and writes them back with millisecond precision, as Google does, so a
value read from Calendar survives a round trip through our messages unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["format_rfc3339", "parse_rfc3339", "utc_now"]


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset into an aware UTC datetime.

    Raises ``ValueError`` for anything else, including naive timestamps.
    """
    if not isinstance(text, str) or "T" not in text.upper():
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"timestamp has no UTC offset: {text!r}")
    try:
        return value.astimezone(UTC)
    except OverflowError as err:  # 9999-12-31T23:59:59-23:59 is past datetime.max in UTC
        raise ValueError(f"timestamp out of range: {text!r}") from err


def format_rfc3339(value: datetime) -> str:
    """Format an aware datetime in UTC with milliseconds (microseconds when they matter)."""
    if value.tzinfo is None:
        raise ValueError("refusing to format a naive datetime")
    value = value.astimezone(UTC)
    spec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)
