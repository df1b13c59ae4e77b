"""Recurring events: expanding a series into instances, and naming instances as Google does.

A series is an event with ``recurrence`` lines (RRULE, EXDATE, RDATE; RFC 5545) expanded with
python-dateutil from its start, in the series' ``timeZone`` when it has one (so a weekly
10:00 meeting stays at 10:00 across DST). An instance's id is ``<seriesId>_<start>`` with the
start in UTC as ``yyyymmddThhmmssZ`` (timed) or ``yyyymmdd`` (all-day), and it carries
``recurringEventId`` and ``originalStartTime``
(https://developers.google.com/calendar/api/guides/recurringevents).

Expansion stops at ``MAX_INSTANCES`` per series and request; Google bounds it too.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rruleset, rrulestr

from sandbox.calendar.errors import GoogleError, bad_request

__all__ = [
    "MAX_INSTANCES",
    "Occurrence",
    "Series",
    "split_instance_id",
]

MAX_INSTANCES = 1000
_INSTANCE_ID = re.compile(r"^(?P<series>.+)_(?P<stamp>\d{8}(T\d{6}Z)?)$")


def split_instance_id(event_id: str) -> tuple[str, str] | None:
    """(series id, start stamp) for an instance id, or None when it is not one."""
    match = _INSTANCE_ID.match(event_id)
    return (match["series"], match["stamp"]) if match else None


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One start of a series: its instance id and the instance's start and end."""

    instance_id: str
    start: datetime  # aware for timed series, naive midnight for all-day ones
    end: datetime
    all_day: bool
    time_zone: str | None

    def original_start(self) -> dict[str, str]:
        return _time_json(self.start, all_day=self.all_day, time_zone=self.time_zone)

    def start_utc(self) -> datetime:
        return self.start.replace(tzinfo=UTC) if self.all_day else self.start.astimezone(UTC)

    def end_utc(self) -> datetime:
        return self.end.replace(tzinfo=UTC) if self.all_day else self.end.astimezone(UTC)


class Series:
    """A recurring event's rule set, ready to enumerate."""

    def __init__(self, master: dict[str, Any]) -> None:
        self.id: str = master["id"]
        self.master = master
        self.all_day = "date" in master["start"]
        self.time_zone: str | None = master["start"].get("timeZone")
        self.start = parse_event_time(master["start"])
        self.duration = parse_event_time(master["end"]) - self.start
        self._rules = _rule_set(master.get("recurrence", []), self.start)

    def occurrences(self, *, after: datetime | None = None, before: datetime | None = None) -> Iterator[Occurrence]:
        """Occurrences that overlap [after, before) in UTC, at most MAX_INSTANCES of them."""
        floor = None if after is None else self._local(after) - self.duration
        source = self._rules if floor is None else self._rules.xafter(floor, inc=True)
        ceiling = None if before is None else self._local(before)
        count = 0
        for start in source:
            if ceiling is not None and start >= ceiling:
                return
            occurrence = self._occurrence(start)
            if after is not None and occurrence.end_utc() <= after:
                continue
            yield occurrence
            count += 1
            if count >= MAX_INSTANCES:
                return

    def occurrence_at(self, stamp: str) -> Occurrence | None:
        """The occurrence an instance id's stamp names, or None when the rule has no such start."""
        start = self._local(_parse_stamp(stamp))
        if self.all_day != ("T" not in stamp):
            return None
        for candidate in self._rules.xafter(start - timedelta(seconds=1), count=1, inc=True):
            if candidate == start:
                return self._occurrence(candidate)
        return None

    def instance(self, occurrence: Occurrence) -> dict[str, Any]:
        """The resource of one unmodified instance, derived from the master."""
        resource = copy.deepcopy(self.master)
        resource.pop("recurrence", None)
        resource["id"] = occurrence.instance_id
        resource["recurringEventId"] = self.id
        resource["originalStartTime"] = occurrence.original_start()
        resource["start"] = _time_json(occurrence.start, all_day=self.all_day, time_zone=self.time_zone)
        resource["end"] = _time_json(occurrence.end, all_day=self.all_day, time_zone=self.time_zone)
        return resource

    def _occurrence(self, start: datetime) -> Occurrence:
        stamp = f"{start:%Y%m%d}" if self.all_day else f"{start.astimezone(UTC):%Y%m%dT%H%M%SZ}"
        return Occurrence(f"{self.id}_{stamp}", start, start + self.duration, self.all_day, self.time_zone)

    def _local(self, value: datetime) -> datetime:
        """A UTC bound in the series' own terms (naive dates for all-day series)."""
        if self.all_day:
            return datetime.combine(value.astimezone(UTC).date(), time())
        return value.astimezone(self.start.tzinfo)


def parse_event_time(value: dict[str, Any]) -> datetime:
    """An event's start/end as a datetime: aware for dateTime, naive midnight for date."""
    if "date" in value:
        return datetime.combine(date.fromisoformat(value["date"]), time())
    parsed = datetime.fromisoformat(value["dateTime"])
    zone = value.get("timeZone")
    if zone:
        tz = _zone(zone)
        return parsed.replace(tzinfo=tz) if parsed.tzinfo is None else parsed.astimezone(tz)
    return parsed


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise bad_request(f"Invalid time zone definition: {name}", reason="timeZoneInvalid") from err


def _rule_set(lines: list[str], start: datetime) -> rruleset:
    try:
        rules = rrulestr("\n".join(lines), dtstart=start, forceset=True, unfold=True)
        next(iter(rules), None)  # some errors (UNTIL vs an aware start) surface only on use
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise bad_request("Invalid recurrence rule.", location="recurrence") from err
    if not isinstance(rules, rruleset):
        raise GoogleError(400, "invalid", "Invalid recurrence rule.")
    return rules


def _parse_stamp(stamp: str) -> datetime:
    if "T" in stamp:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return datetime.strptime(stamp, "%Y%m%d").replace(tzinfo=UTC)


def _time_json(value: datetime, *, all_day: bool, time_zone: str | None) -> dict[str, str]:
    if all_day:
        return {"date": value.date().isoformat()}
    result = {"dateTime": value.isoformat()}
    if time_zone:
        result["timeZone"] = time_zone
    return result
