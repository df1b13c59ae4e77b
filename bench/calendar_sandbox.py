"""How fast the Calendar sandbox serves a full listing to google-api-python-client.

Starts `confsync sandbox calendar` as its own process, seeds one calendar with N events through
the admin bulk-insert route, then lists them all with maxResults=2500 through the real client
(one process each, as in the pipeline) and prints one JSON object of figures.

    .venv/bin/python bench/calendar_sandbox.py [--events 100000] [--runs 3]

Target (issue 3): >= 20,000 events/s listed on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import httplib2
import httpx
from google.auth.credentials import AnonymousCredentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build

from confsync.serving import free_port

CALENDAR = "bench@example.com"
TARGET = 20_000


def event(i: int) -> dict[str, object]:
    day, hour = 1 + i % 28, 8 + i % 10
    return {
        "summary": f"Meeting {i}",
        "description": "Weekly planning with the whole team." * 2,
        "start": {"dateTime": f"2026-12-{day:02d}T{hour:02d}:00:00+01:00", "timeZone": "Europe/Warsaw"},
        "end": {"dateTime": f"2026-12-{day:02d}T{hour:02d}:30:00+01:00", "timeZone": "Europe/Warsaw"},
        "attendees": [{"email": f"user{i % 97}@example.com"}, {"email": "team@example.com"}],
        "conferenceData": {
            "conferenceId": f"conf-{i}",
            "conferenceSolution": {"key": {"type": "addOn"}, "name": "My Web Conference"},
            "entryPoints": [{"entryPointType": "video", "uri": f"https://conf.example.com/{i}"}],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CONFSYNC_LOG_LEVEL": "warning"}
    server = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "stack.cli", "sandbox", "calendar", "--port", str(port)], env=env
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(f"{base}/_sandbox/calendars", json={"id": CALENDAR}, timeout=2).raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        started = time.perf_counter()
        for first in range(0, args.events, 10_000):
            batch = [event(i) for i in range(first, min(first + 10_000, args.events))]
            httpx.post(
                f"{base}/_sandbox/calendars/{CALENDAR}/bulk-insert",
                json={"events": batch, "conferenceDataVersion": 1},
                timeout=300,
            ).raise_for_status()
        seed_s = time.perf_counter() - started

        http = AuthorizedHttp(AnonymousCredentials(), http=httplib2.Http(timeout=120))
        service = build(
            "calendar", "v3", http=http, static_discovery=True, client_options={"api_endpoint": f"{base}/calendar/v3/"}
        )
        timings = []
        for _ in range(args.runs):
            started = time.perf_counter()
            listed, pages, page_token = 0, 0, None
            while True:
                extra = {"pageToken": page_token} if page_token else {}
                page = service.events().list(calendarId=CALENDAR, maxResults=2500, **extra).execute()
                listed += len(page["items"])
                pages += 1
                page_token = page.get("nextPageToken")
                if page_token is None:
                    break
            timings.append(time.perf_counter() - started)
            if listed != args.events:
                raise SystemExit(f"listed {listed} events, expected {args.events}")
        service.close()
    finally:
        server.terminate()
        server.wait(timeout=20)

    best, median = min(timings), statistics.median(timings)
    print(
        json.dumps(
            {
                "benchmark": "calendar_sandbox_full_listing",
                "events": args.events,
                "pages": pages,
                "max_results": 2500,
                "runs": args.runs,
                "seconds_median": round(median, 3),
                "events_per_s_median": round(args.events / median),
                "events_per_s_best": round(args.events / best),
                "target_events_per_s": TARGET,
                "meets_target": args.events / median >= TARGET,
                "seed_seconds": round(seed_s, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
