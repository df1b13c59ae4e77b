"""When an event's records expire (confsync/retention.py): RETAIN_DAYS after the event ends, the
last occurrence of a bounded series, or a delete; never for an unbounded series, and never
before the event can have ended in any time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from confsync.contracts import ConferencePayload, EventTime, Occurrence, OccurrenceStatus
from confsync.retention import Retention, event_end

NOW = datetime(2026, 11, 24, 10, tzinfo=UTC)
KEEP = Retention(timedelta(days=90))


def at(start: str, end: str, *rules: str, exceptions: tuple[Occurrence, ...] = ()) -> ConferencePayload:
    def time(value: str) -> EventTime:
        return EventTime(date=value) if len(value) == 10 else EventTime(date_time=value)

    return ConferencePayload(start=time(start), end=time(end), recurrence=rules, exceptions=exceptions)


def test_a_single_event_ends_when_it_ends_in_utc() -> None:
    assert event_end(at("2026-12-01T09:00:00+02:00", "2026-12-01T10:00:00+02:00")) == datetime(
        2026, 12, 1, 8, tzinfo=UTC
    )


def test_an_all_day_event_or_a_time_without_offset_gets_a_days_slack_never_less() -> None:
    assert event_end(at("2026-12-01", "2026-12-02")) == datetime(2026, 12, 3, tzinfo=UTC)
    local = ConferencePayload(
        start=EventTime(date_time="2026-12-01T09:00:00", time_zone="Pacific/Kiritimati"),
        end=EventTime(date_time="2026-12-01T10:00:00", time_zone="Pacific/Kiritimati"),
    )
    assert event_end(local) == datetime(2026, 12, 2, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rule", "ends_by"),
    [
        ("RRULE:FREQ=WEEKLY;UNTIL=20270301T100000Z", datetime(2027, 3, 1, 11, tzinfo=UTC)),
        ("RRULE:FREQ=DAILY;UNTIL=20270110", datetime(2027, 1, 10, 11, tzinfo=UTC)),
        ("RRULE:FREQ=WEEKLY;COUNT=10;BYDAY=MO,WE", datetime(2027, 2, 15, 11, tzinfo=UTC)),
        ("RRULE:FREQ=MONTHLY;COUNT=3;BYDAY=-1FR", datetime(2027, 3, 5, 11, tzinfo=UTC)),
    ],
)
def test_a_bounded_series_ends_no_earlier_than_its_last_occurrence(rule: str, ends_by: datetime) -> None:
    end = event_end(at("2026-12-07T10:00:00Z", "2026-12-07T11:00:00Z", rule))
    assert end is not None
    assert end >= ends_by
    assert end - ends_by < timedelta(days=40), "and not wildly later"


@pytest.mark.parametrize(
    "rule",
    [
        "RRULE:FREQ=WEEKLY",  # unbounded
        "RRULE:FREQ=MONTHLY;BYMONTHDAY=31;COUNT=12",  # skips short months: not bounded without expanding it
        "RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;COUNT=3",
        "RDATE;VALUE=DATE:20300101",
    ],
)
def test_an_unbounded_or_unboundable_series_never_expires(rule: str) -> None:
    series = at("2026-12-07T10:00:00Z", "2026-12-07T11:00:00Z", rule)
    assert event_end(series) is None
    assert KEEP.expiry(series, NOW) is None
    assert not KEEP.ended(series, NOW + timedelta(days=36500))


@pytest.mark.parametrize(
    ("start", "rule"),
    [
        ("2025-01-31T09:00:00Z", "RRULE:FREQ=MONTHLY;COUNT=24"),  # no 31st in most months: they are skipped
        ("2024-02-29T09:00:00Z", "RRULE:FREQ=YEARLY;COUNT=3"),  # only leap years
    ],
)
def test_a_series_whose_start_day_some_periods_lack_is_never_bounded_by_its_count(start: str, rule: str) -> None:
    """RFC 5545 skips the periods without the start's day, so COUNT periods would end it too early."""
    end = start.replace("T09", "T10")
    assert event_end(at(start, end, rule)) is None


def test_a_moved_occurrence_after_the_series_end_keeps_it_longer() -> None:
    moved = Occurrence(
        EventTime(date_time="2027-01-04T10:00:00Z"),
        OccurrenceStatus.MOVED,
        EventTime(date_time="2027-06-01T10:00:00Z"),
        EventTime(date_time="2027-06-01T11:00:00Z"),
    )
    series = at(
        "2026-12-07T10:00:00Z", "2026-12-07T11:00:00Z", "RRULE:FREQ=WEEKLY;UNTIL=20270201T100000Z", exceptions=(moved,)
    )
    assert event_end(series) == datetime(2027, 6, 1, 11, tzinfo=UTC)


def test_records_are_kept_retain_days_after_the_end_or_the_write_whichever_is_later() -> None:
    future = at("2027-01-10T10:00:00Z", "2027-01-10T11:00:00Z")
    past = at("2026-01-10T10:00:00Z", "2026-01-10T11:00:00Z")
    assert KEEP.expiry(future, NOW) == datetime(2027, 1, 10, 11, tzinfo=UTC) + KEEP.keep
    assert KEEP.expiry(past, NOW) == NOW + KEEP.keep, "an edit of a past event counts from the edit"
    assert KEEP.expiry(None, NOW) == NOW + KEEP.keep, "a delete counts from the delete"
    assert KEEP.ended(past, NOW)
    assert not KEEP.ended(future, NOW + timedelta(days=100))
