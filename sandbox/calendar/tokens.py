"""Sync and page tokens: opaque to clients, positions in a calendar's change log to us.

A sync token names the calendar, its epoch (bumped to invalidate every token) and a change
sequence; a page token names the listing's query and where its next page starts. Both carry
the sandbox's nonce, so a token from before a ``reset`` (or from another sandbox) is refused
(https://developers.google.com/calendar/api/guides/sync).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sandbox.calendar.errors import GoogleError, bad_request
from sandbox.calendar.store import CalendarRecord

__all__ = ["SYNC_EXPIRED", "Position", "page_position", "page_token", "short_hash", "sync_token", "token_seq"]

SYNC_EXPIRED = "Sync token is no longer valid, a full sync is required."


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page starts: an entry and an item within it, or an offset into a sorted listing."""

    index: int = 0
    sub: int = 0
    offset: int = 0
    snapshot: int | None = None


def sync_token(nonce: str, calendar: CalendarRecord, seq: int) -> str:
    return _encode({"n": nonce, "c": short_hash(calendar.id), "e": calendar.epoch, "s": seq})


def token_seq(nonce: str, calendar: CalendarRecord, token: str) -> int:
    """The change sequence a sync token names; 410 ``fullSyncRequired`` if it is not valid."""
    data = _decode(token)
    valid = (
        data is not None
        and data.get("n") == nonce
        and data.get("c") == short_hash(calendar.id)
        and data.get("e") == calendar.epoch
        and isinstance(data.get("s"), int)
        and 0 <= data["s"] <= calendar.seq
    )
    if not valid or data is None:
        raise GoogleError(410, "fullSyncRequired", SYNC_EXPIRED, domain="calendar")
    return int(data["s"])


def page_token(nonce: str, calendar: CalendarRecord, fingerprint: str, **position: int | None) -> str:
    return _encode({"n": nonce, "c": short_hash(calendar.id), "q": fingerprint, **position})


def page_position(nonce: str, calendar: CalendarRecord, token: str | None, fingerprint: str) -> Position:
    """Where the page ``token`` asks for starts (the first page without one)."""
    if token is None:
        return Position(0)
    data = _decode(token)
    if data is None or data.get("n") != nonce or data.get("c") != short_hash(calendar.id):
        raise bad_request("Invalid page token value.", location="pageToken")
    if data.get("q") != fingerprint:
        raise bad_request("The page token does not belong to this query.", location="pageToken")
    return Position(
        index=int(data.get("index") or 0),
        sub=int(data.get("sub") or 0),
        offset=int(data.get("offset") or 0),
        snapshot=data.get("snapshot"),
    )


def short_hash(text: str, length: int = 12) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _encode(data: dict[str, Any]) -> str:
    compact = {key: value for key, value in data.items() if value is not None}
    return base64.urlsafe_b64encode(json.dumps(compact, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(token: str) -> dict[str, Any] | None:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError):
        return None
    return data if isinstance(data, dict) else None
