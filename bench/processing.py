"""Processor figures: events classified per second in a backfill of a 100,000-event calendar,
and Calendar listings per notification under a storm of notifications.

The Calendar sandbox runs as its own process (`confsync sandbox calendar`); the processor
runs here, built by a Stack with a SQLite store and the in-process transport (what the
embedded default uses).

    .venv/bin/python bench/processing.py [--events 100000] [--calendars 50] [--notifications 100]
                                         [--storm-seconds 1]

Targets (issue 8): >= 5,000 events/s in the backfill; <= 0.05 listings per notification.
Listings grow with the storm's length (about one per CONFSYNC_SYNC_MIN_INTERVAL_S per
calendar), so the storm's duration is a parameter, reported with the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sandboxes import calendar_sandbox_process

from confsync.contracts import CalendarChanged, ResourceState, Source
from confsync.logs import configure_logging
from confsync.ports import Store
from confsync.settings import Settings
from confsync.store import Link
from confsync.transport.base import Message
from stack.root import Stack


def seed(base: str, calendar_id: str, count: int, store: Store) -> None:
    """Half the events carry our conference, with the owning link the add-on would have made."""
    made = datetime.now(UTC)
    for first in range(0, count, 10_000):
        events = []
        for n in range(first, min(first + 10_000, count)):
            day, hour = 1 + n % 28, 8 + n % 10
            body: dict[str, object] = {
                "id": f"ev{n:07d}",
                "summary": f"Meeting {n}",
                "start": {"dateTime": f"2026-12-{day:02d}T{hour:02d}:00:00Z"},
                "end": {"dateTime": f"2026-12-{day:02d}T{hour:02d}:30:00Z"},
                "attendees": [{"email": f"user{n % 97}@example.com"}],
            }
            if n % 2 == 0:
                body["conferenceData"] = {
                    "conferenceId": f"cnf_{n}",
                    "conferenceSolution": {"key": {"type": "addOn"}, "name": "My Web Conference"},
                }
                store.add_link(Link(calendar_id, f"ev{n:07d}", f"cnf_{n}", created_at=made))
            events.append(body)
        httpx.post(
            f"{base}/_sandbox/calendars/{calendar_id}/bulk-insert",
            json={"events": events, "conferenceDataVersion": 1},
            timeout=300,
        ).raise_for_status()


def settings(base: str, store: Path, queue_limit: int) -> Settings:
    """The embedded default: a SQLite store and the in-process transport."""
    return Settings(
        transport="memory",
        store_url=f"sqlite:///{store}",
        calendar_api_endpoint=f"{base}/calendar/v3/",
        memory_queue_limit=queue_limit,
        backfill_requests_per_s=1000,
    )


def bench_backfill(base: str, tmp: Path, events: int) -> dict[str, object]:
    with Stack(settings(base, tmp / "backfill.sqlite", events + 10)) as stack:
        seed(base, "big@example.com", events, stack.store)
        job = stack.backfill()
        started = time.perf_counter()
        summary = job.run(["big@example.com"])
        elapsed = time.perf_counter() - started
    return {
        "events": summary.events_read,
        "updates_published": summary.updates,
        "seconds": round(elapsed, 2),
        "events_per_s": round(summary.events_read / elapsed),
    }


def bench_storm(base: str, tmp: Path, calendars: int, notifications: int, spread_s: float) -> dict[str, object]:
    ids = [f"storm{n}@example.com" for n in range(calendars)]
    stack = Stack(settings(base, tmp / "storm.sqlite", calendars * notifications * 2 + 10))
    for calendar_id in ids:
        seed(base, calendar_id, 20, stack.store)
    worker, config = stack.worker, stack.settings  # the production default min interval
    handled = [0]
    lock = threading.Lock()

    def handle(message: Message) -> None:
        worker(message)
        with lock:
            handled[0] += 1

    consumer = stack.transport.worker(config.sub_calendar_changes, handle, config.topic_calendar_changes_dead)
    before = _listings(base)
    started = time.perf_counter()
    total = calendars * notifications
    for number in range(notifications):  # the storm: every calendar notified again and again, over spread_s
        for calendar_id in ids:
            change = CalendarChanged(
                calendar_id=calendar_id,
                source=Source.PUSH,
                received_at=datetime.now(UTC),
                channel_id=f"ch-{calendar_id}",
                resource_state=ResourceState.EXISTS,
                message_number=number,
            )
            stack.publisher.publish(config.topic_calendar_changes, change.to_bytes(), ordering_key=calendar_id)
        time.sleep(spread_s / notifications)
    while handled[0] < total and time.perf_counter() - started < 300:
        time.sleep(0.05)
    consumer.stop(10)
    listings = _listings(base) - before
    stack.close()
    return {
        "calendars": calendars,
        "notifications": total,
        "storm_seconds": spread_s,
        "handled": handled[0],
        "listings": listings,
        "listings_per_notification": round(listings / total, 4),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _listings(base: str) -> int:
    journal = httpx.get(f"{base}/_sandbox/requests", timeout=60).json()
    return sum(1 for entry in journal if entry["method"] == "GET" and entry["path"].endswith("/events"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--calendars", type=int, default=50)
    parser.add_argument("--notifications", type=int, default=100)
    parser.add_argument("--storm-seconds", type=float, default=1.0, help="how long the storm lasts")
    args = parser.parse_args()
    configure_logging(Settings(log_level="warning", log_format="json"))
    with calendar_sandbox_process() as base, tempfile.TemporaryDirectory() as tmp:
        backfill = bench_backfill(base, Path(tmp), args.events)
        storm = bench_storm(base, Path(tmp), args.calendars, args.notifications, args.storm_seconds)
    print(
        json.dumps(
            {
                "benchmark": "processors",
                "backfill": backfill,
                "storm": storm,
                "targets": {"backfill_events_per_s": 5000, "listings_per_notification": 0.05},
                "meets_targets": backfill["events_per_s"] >= 5000  # type: ignore[operator]
                and storm["listings_per_notification"] <= 0.05,  # type: ignore[operator]
            }
        )
    )


if __name__ == "__main__":
    main()
