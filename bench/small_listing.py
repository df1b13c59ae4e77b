"""CPU of the processor's commonest Calendar call: an incremental-sized listing of one event,
through ``GoogleCalendarClient`` (google-api-python-client) against the Calendar sandbox.

The sandbox runs as its own process, so the figure is the client's CPU alone: what a
processor pays per notification before it classifies anything.

    .venv/bin/python bench/small_listing.py [--listings 1000]

Issue 24 (cost per change) compares it side by side between commits.
"""

from __future__ import annotations

import argparse
import json
import time

import httpx
from sandboxes import calendar_sandbox_process

from confsync.calendar import GoogleCalendarClient

CALENDAR = "small@example.com"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listings", type=int, default=1000)
    args = parser.parse_args()
    with calendar_sandbox_process() as base:
        event = {
            "id": "evt00001",
            "summary": "Planning",
            "start": {"dateTime": "2026-12-01T09:00:00Z"},
            "end": {"dateTime": "2026-12-01T10:00:00Z"},
        }
        seeded = httpx.post(f"{base}/_sandbox/calendars/{CALENDAR}/bulk-insert", json={"events": [event]}, timeout=30)
        seeded.raise_for_status()
        client = GoogleCalendarClient(endpoint=f"{base}/calendar/v3/")
        try:
            for _ in range(50):  # warm: the thread's service is built on its first call
                client.list_events(CALENDAR)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(args.listings):
                client.list_events(CALENDAR)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        finally:
            client.close()
    figures = {
        "benchmark": "small_listing",
        "listings": args.listings,
        "client_cpu_ms_per_listing": round(1000 * cpu / args.listings, 3),
        "wall_ms_per_listing": round(1000 * wall / args.listings, 3),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
