"""How long confsync keeps what it knows about an event: ``CONFSYNC_RETAIN_DAYS`` after it ends.

A link (calendar, event -> conference) and a conference's applied version are kept while a
change to the event can still matter, then expire: ``Retention.expiry`` is the moment, written
with the record as ``expires_at``; SQLite's sweep (``Store.purge_expired``) and Firestore's TTL
policy (infra/terraform/firestore.tf) delete what is past it. The rule:

- an event: ``keep`` after the later of its end and the write (an edit of an event that ended
  last month keeps its records ``keep`` from the edit, so a late copy of an older command still
  finds the version it must lose to);
- a recurring series: ``keep`` after its last occurrence ends (``UNTIL``, or ``COUNT`` where
  its rule is simple enough to bound without expanding it), and never while it is unbounded or
  its rule is one this module cannot bound: a live weekly meeting is never forgotten;
- a deleted conference: ``keep`` after the delete, so a redelivered copy is still a duplicate.

Ends are computed without a time zone database: a time without an offset, or an all-day date,
is given a day's slack, so a record is never removed early, only up to a day late.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from confsync.contracts import ConferencePayload, EventTime

__all__ = ["Retention", "event_end"]

_SLACK = timedelta(days=1)  # the widest UTC offset is 14 h: a day covers any zone
_PERIOD = {"DAILY": timedelta(days=1), "WEEKLY": timedelta(weeks=1), "MONTHLY": timedelta(days=31)}
_PERIOD["YEARLY"] = timedelta(days=366)
# Parts of a COUNT rule that never make its occurrences sparser than one per period (INTERVAL aside).
_DENSE_PARTS = frozenset({"FREQ", "COUNT", "INTERVAL", "WKST"})
_ORDINAL_DAY = re.compile(r"^([+-]?\d+)?(MO|TU|WE|TH|FR|SA|SU)$")


@dataclass(frozen=True, slots=True)
class Retention:
    """Records of an event are kept ``keep`` after it ends (``CONFSYNC_RETAIN_DAYS``)."""

    keep: timedelta

    def expiry(self, payload: ConferencePayload | None, now: datetime) -> datetime | None:
        """When a record written ``now`` for ``payload`` expires: None keeps it (an unbounded
        series); no payload (a delete) counts from ``now``."""
        if payload is None:
            return now + self.keep
        end = event_end(payload)
        return None if end is None else max(end, now) + self.keep

    def ended(self, payload: ConferencePayload, now: datetime) -> bool:
        """The event ended more than ``keep`` before ``now``: its records may be gone."""
        end = event_end(payload)
        return end is not None and end + self.keep <= now


def event_end(payload: ConferencePayload) -> datetime | None:
    """The latest moment the event (every occurrence of a series) can end, or None if never or
    not known (an unbounded series, a rule this cannot bound)."""
    end = _moment(payload.end, end_of_day=True)
    if end is None:
        return None
    if payload.recurrence:
        start = _moment(payload.start, end_of_day=False)
        if start is None:
            return None
        last = _series_end(payload.recurrence, start, end - start)
        if last is None:
            return None
        end = max(end, last)
    moved = [_moment(o.end, end_of_day=True) for o in payload.exceptions if o.end is not None]
    if any(moment is None for moment in moved):
        return None
    return max([end, *(m for m in moved if m is not None)])


def _series_end(lines: tuple[str, ...], start: datetime, duration: timedelta) -> datetime | None:
    last = start
    for line in lines:
        name, _, value = line.partition(":")
        kind = name.split(";")[0].upper()
        if kind == "EXDATE":
            continue  # removes occurrences: never later
        if kind != "RRULE":
            return None  # RDATE, EXRULE: not bounded here
        rule = _rule_last_start(value, start)
        if rule is None:
            return None
        last = max(last, rule)
    return last + duration


def _rule_last_start(rule: str, start: datetime) -> datetime | None:
    """The latest an occurrence of ``rule`` can start, or None (unbounded, or not bounded here)."""
    parts = dict(part.partition("=")[::2] for part in rule.upper().split(";") if part)
    if "UNTIL" in parts:
        return _until(parts["UNTIL"])
    if "COUNT" not in parts or parts.get("FREQ") not in _PERIOD or not _dense(parts, start):
        return None
    try:
        count, interval = int(parts["COUNT"]), int(parts.get("INTERVAL", "1"))
    except ValueError:
        return None
    # One more period than needed covers a first occurrence later in its period than DTSTART.
    return start + _PERIOD[parts["FREQ"]] * (count * max(interval, 1) + 1)


def _dense(parts: dict[str, str], start: datetime) -> bool:
    """At least one occurrence per period: a weekly BYDAY, a monthly day 1-28 or nth weekday."""
    frequency = parts["FREQ"]
    # RFC 5545 skips a period without the start's day: the 29th-31st of a month, 29 February.
    # Judged in UTC with a day's margin, since the rule counts in the event's own time zone.
    if frequency == "MONTHLY" and not {"BYDAY", "BYMONTHDAY"} & parts.keys() and start.day > 27:
        return False
    near_leap_day = (start.month, start.day) in {(2, 28), (2, 29), (3, 1)}
    if frequency == "YEARLY" and not {"BYMONTH", "BYMONTHDAY", "BYDAY"} & parts.keys() and near_leap_day:
        return False
    for name, value in parts.items():
        if name in _DENSE_PARTS:
            continue
        if name == "BYDAY" and frequency in {"WEEKLY", "MONTHLY"} and all(_near(day) for day in value.split(",")):
            continue
        if name == "BYMONTHDAY" and frequency == "MONTHLY" and all(_day_of_month(day) for day in value.split(",")):
            continue
        return False
    return True


def _near(day: str) -> bool:
    match = _ORDINAL_DAY.match(day)
    return match is not None and (match.group(1) is None or 1 <= abs(int(match.group(1))) <= 4)


def _day_of_month(day: str) -> bool:
    return day.isdigit() and 1 <= int(day) <= 28


def _until(value: str) -> datetime | None:
    try:
        if "T" not in value:
            return datetime.combine(date(int(value[:4]), int(value[4:6]), int(value[6:8])), time(), UTC) + _SLACK
        moment = datetime.strptime(value.rstrip("Z"), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return moment if value.endswith("Z") else moment + _SLACK


def _moment(value: EventTime, *, end_of_day: bool) -> datetime | None:
    """An event time in UTC; a date, or a time without an offset, moved by a day's slack
    (later for an end, earlier for a start) so no zone can make it later than said."""
    slack = _SLACK if end_of_day else -_SLACK
    if value.date is not None:
        return datetime.combine(date.fromisoformat(value.date), time(), UTC) + slack
    assert value.date_time is not None  # noqa: S101 - EventTime holds one of the two
    try:
        moment = datetime.fromisoformat(value.date_time)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC) + slack
    return moment.astimezone(UTC)
