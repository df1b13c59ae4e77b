"""The conferencing sandbox's wire models: the request and response bodies the OpenAPI spec shows.

Strict (unknown keys refused), with RFC 3339 timestamps that carry an offset and Calendar's
``{"dateTime", "timeZone"}`` / ``{"date"}`` event times.
"""

from __future__ import annotations

import re
from datetime import date as datetime_date
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

__all__ = [
    "ConferenceView",
    "CreateConference",
    "CreatedConference",
    "ErrorBody",
    "PatchConference",
    "errors",
]

_TEXT = 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _rfc3339(value: object) -> datetime:
    """Only an RFC 3339 string with an offset (pydantic alone would also take a number)."""
    if not isinstance(value, str):
        raise ValueError("an RFC 3339 date-time string is required")  # noqa: TRY004 - pydantic turns only ValueError into a 422
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip().replace("z", "Z"))  # keep microseconds
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None or "T" not in text.upper():
        raise ValueError("an RFC 3339 date-time with a UTC offset is required")
    return parsed


def _calendar_date(value: object) -> datetime_date:
    if not isinstance(value, str) or len(value) != len("YYYY-MM-DD"):
        raise ValueError("a YYYY-MM-DD date string is required")
    return datetime_date.fromisoformat(value)


Timestamp = Annotated[datetime, BeforeValidator(_rfc3339), WithJsonSchema({"type": "string", "format": "date-time"})]
CalendarDate = Annotated[
    datetime_date, BeforeValidator(_calendar_date), WithJsonSchema({"type": "string", "format": "date"})
]


class TimedEventTime(_Strict):
    """A moment, shaped like Calendar's ``{"dateTime", "timeZone"}``."""

    dateTime: Timestamp  # noqa: N815 - Calendar's field names
    timeZone: str | None = Field(default=None, max_length=64)  # noqa: N815


class AllDayEventTime(_Strict):
    """An all-day date, shaped like Calendar's ``{"date"}``."""

    date: CalendarDate


EventTime = TimedEventTime | AllDayEventTime


class CancelledOccurrence(_Strict):
    """An occurrence of a series that was cancelled."""

    original_start: EventTime
    status: Literal["cancelled"]


class MovedOccurrence(_Strict):
    """An occurrence of a series that was moved to ``start``-``end``."""

    original_start: EventTime
    status: Literal["moved"]
    start: EventTime
    end: EventTime


Occurrence = Annotated[CancelledOccurrence | MovedOccurrence, Field(discriminator="status")]


Emails = Annotated[list[Annotated[str, Field(min_length=3, max_length=320)]], Field(max_length=2000)]


class CreateConference(_Strict):
    calendar_id: str = Field(min_length=1, max_length=_TEXT)
    event_id: str = Field(min_length=1, max_length=_TEXT)
    request_id: str = Field(min_length=1, max_length=_TEXT)
    summary: str | None = Field(default=None, max_length=65536)
    start: EventTime | None = None
    end: EventTime | None = None
    attendees: Emails = Field(default_factory=list)
    organizer: str | None = Field(default=None, max_length=320)


class PatchConference(_Strict):
    event_updated: Timestamp
    summary: str | None = Field(default=None, max_length=65536)
    start: EventTime | None = None
    end: EventTime | None = None
    attendees: Emails | None = None
    organizer: str | None = Field(default=None, max_length=320)
    recurrence: Annotated[list[Annotated[str, Field(max_length=_TEXT)]], Field(max_length=100)] | None = None
    html_link: str | None = Field(default=None, max_length=4096)
    exceptions: Annotated[list[Occurrence], Field(max_length=1000)] | None = None


class CreatedConference(BaseModel):
    id: str
    video_uri: str
    passcode: str
    phone_number: str
    phone_pin: str
    admin_email: str
    legal_notice: str
    version: int


class ConferenceView(CreatedConference):
    owner: str | None = Field(default=None, description="The user's account it is in; null: the app's own.")
    calendar_id: str
    event_id: str
    summary: str | None = None
    start: dict[str, str] | None = None
    end: dict[str, str] | None = None
    attendees: list[str] = []
    organizer: str | None = None
    recurrence: list[str] | None = None
    html_link: str | None = None
    exceptions: list[dict[str, Any]] | None = None
    state: str
    updated_at: str
    last_event_updated: str | None = None


class ErrorDetail(BaseModel):
    code: str
    message: str
    retryable: bool
    authentication_url: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in (400, 401, 422, 429, 503, *codes)}
