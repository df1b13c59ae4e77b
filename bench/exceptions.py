"""What one changed occurrence of a series costs the processor: keeping the series' exceptions
in its link (what confsync does) against asking Calendar's events.instances each time.

A weekly series of N occurrences with our conference lives in the Calendar sandbox (its own
process); one occurrence after another is cancelled. Per change, both ways read the series
itself (events.get: the payload needs it either way), then:

- ``store``: read the series' link, merge the occurrence, write the link (SQLite, as the
  embedded default);
- ``instances``: list the series' instances with deleted ones (events.instances, every page)
  and pick out the exceptions.

Prints one JSON object: per N, the median milliseconds of each way and Calendar requests per
change.

    .venv/bin/python bench/exceptions.py [--occurrences 10 104 520] [--changes 9]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from sandboxes import calendar_sandbox_process

from confsync.calendar import GoogleCalendarClient, parse_event
from confsync.contracts import Occurrence
from confsync.logs import configure_logging
from confsync.settings import Settings
from confsync.store import Link
from confsync.store.sqlite import SqliteStore
from processors.classify import exception_of

CALENDAR = "series@example.com"


def series(base: str, occurrences: int) -> str:
    body = {
        "summary": "Weekly",
        "start": {"dateTime": "2027-01-04T09:00:00Z"},
        "end": {"dateTime": "2027-01-04T10:00:00Z"},
        "recurrence": [f"RRULE:FREQ=WEEKLY;COUNT={occurrences}"],
        "conferenceData": {
            "conferenceId": "cnf_weekly",
            "conferenceSolution": {"key": {"type": "addOn"}, "name": "My Web Conference"},
        },
    }
    answer = httpx.post(
        f"{base}/calendar/v3/calendars/{CALENDAR}/events", params={"conferenceDataVersion": 1}, json=body, timeout=30
    )
    answer.raise_for_status()
    return str(answer.json()["id"])


def instances(base: str, series_id: str) -> list[dict[str, Any]]:
    """Every instance of the series, cancelled ones included (all pages)."""
    found: list[dict[str, Any]] = []
    page_token = None
    while True:
        params: dict[str, Any] = {"showDeleted": "true", "maxResults": 250}
        if page_token:
            params["pageToken"] = page_token
        url = f"{base}/calendar/v3/calendars/{CALENDAR}/events/{series_id}/instances"
        page = httpx.get(url, params=params, timeout=30).json()
        found += page.get("items", [])
        page_token = page.get("nextPageToken")
        if not page_token:
            return found


def one_size(base: str, tmp: Path, occurrences: int, changes: int) -> dict[str, object]:
    series_id = series(base, occurrences)
    client = GoogleCalendarClient(endpoint=f"{base}/calendar/v3/")
    store = SqliteStore(tmp / f"links-{occurrences}.sqlite")
    store.add_link(Link(CALENDAR, series_id, "cnf_weekly", "fp"))
    listed = instances(base, series_id)
    store_ms, instances_ms, requests = [], [], []
    for index in range(1, min(changes, occurrences - 1) + 1):
        instance_id = listed[index]["id"]
        httpx.delete(f"{base}/calendar/v3/calendars/{CALENDAR}/events/{instance_id}", timeout=30).raise_for_status()
        tombstone = client.get_event(CALENDAR, instance_id)
        occurrence = exception_of(tombstone)
        assert occurrence is not None  # noqa: S101 - a cancelled instance is an exception

        before = _calendar_requests(base)
        started = time.perf_counter()
        client.get_event(CALENDAR, series_id)
        link = store.get_link(CALENDAR, series_id)
        assert link is not None  # noqa: S101
        merged = {o.key(): o for o in link.exceptions} | {occurrence.key(): occurrence}
        store.upsert_link(replace(link, exceptions=tuple(merged[k] for k in sorted(merged))))
        store_ms.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        client.get_event(CALENDAR, series_id)
        items = instances(base, series_id)
        found: list[Occurrence] = [o for o in (exception_of(parse_event(item)) for item in items) if o is not None]
        instances_ms.append((time.perf_counter() - started) * 1000)
        requests.append(_calendar_requests(base) - before)
        assert len(found) == len(merged), (len(found), len(merged))  # noqa: S101 - both ways agree
    client.close()
    store.close()
    return {
        "occurrences": occurrences,
        "changes": len(store_ms),
        "store_ms": round(statistics.median(store_ms), 2),
        "instances_ms": round(statistics.median(instances_ms), 2),
        "calendar_requests_per_change": {"store": 1, "instances": statistics.median(requests) - 1},
    }


def _calendar_requests(base: str) -> int:
    return len(httpx.get(f"{base}/_sandbox/requests", timeout=60).json())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--occurrences", type=int, nargs="+", default=[10, 104, 520])
    parser.add_argument("--changes", type=int, default=9)
    args = parser.parse_args()
    configure_logging(Settings(log_level="warning", log_format="json"))
    with calendar_sandbox_process() as base, tempfile.TemporaryDirectory() as tmp:
        sizes = [one_size(base, Path(tmp), n, args.changes) for n in args.occurrences]
    print(json.dumps({"benchmark": "series_exceptions", "sizes": sizes}))


if __name__ == "__main__":
    main()
