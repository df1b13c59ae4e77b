"""A full resync of one calendar, side by side: ``confsync backfill --dry-run`` against gcal_sync
(Home Assistant's Calendar sync library: aiohttp and pydantic) fully syncing the same calendar
from the same Calendar sandbox.

One sandbox process (``--require-auth``: every call carries a bearer token the sandbox checks as
Google would) holds one user's calendar of ``--events`` events: timed, with guests, one in 20 a
weekly series, one in 3 carrying our conference as the add-on writes it, with the owning link the
add-on made. confsync has synced it once (a real backfill, so the links hold their fingerprints),
then one in 10 of our events changed. Both sides then run in this process, interleaved (ours,
peer, ours, peer, ...), after one warm-up run each, each keeping its connections between runs:

- ours: what ``confsync backfill --dry-run --calendar ID`` runs once its stack is open
  (``stack.cli.backfill.dry_run``): the selection, then ``Stack.backfill(dry_run=True).run(ids)``,
  listing through google-api-python-client with the calendar owner's delegated credentials and
  classifying every event against its link; the decisions are not printed;
- peer: ``CalendarEventSyncManager(GoogleCalendarService(auth)).run()`` into an in-memory store,
  the auth returning an access token the sandbox issued to the same user, after the same
  ``gc.freeze()`` ours makes (so neither side's collector walks what the other left).

Prints one JSON object: each side's events/s (median and every run), the ratio of the medians,
the CPU of this process and of the sandbox per event, and the host's fixed-loop time. Each run of
each side must have seen every event, and ours must have made the expected decisions.

    .venv/bin/python bench/full_resync.py [--events 3000] [--runs 7]

Target (issue 24): ours at least 2x the peer's events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import google.auth.transport.requests
import httpx
from gcal_sync.api import GoogleCalendarService
from gcal_sync.auth import AbstractAuth
from gcal_sync.const import EVENT_SYNC, ITEMS
from gcal_sync.store import InMemoryCalendarStore
from gcal_sync.sync import CalendarEventSyncManager
from google.oauth2 import service_account
from host import fixed_loop_ms
from proc import cpu_seconds, descendants
from sandboxes import calendar_sandbox_process

from confsync.calendar import CALENDAR_SCOPES
from confsync.logs import configure_logging
from confsync.settings import Settings
from confsync.store import Link
from confsync.transport.memory import MemoryBroker
from processors.backfill import Backfill, Selection
from stack.cli.backfill import dry_run
from stack.root import Stack

USER = "resync@example.com"  # the calendar is this user's primary
DOMAIN = "example.com"
WRITE_SCOPE = "https://www.googleapis.com/auth/calendar.events"  # seeding only
TARGET_RATIO = 2.0


def event(n: int, *, plain: bool = False) -> dict[str, Any]:
    """The n-th event: timed over a year, 1-6 guests; a weekly series one in 20; our conference one
    in 3 (``plain``: a title and times only, and our conference)."""
    day, hour = n % 365, 8 + n % 9
    month, mday = 1 + day // 31 % 12, 1 + day % 28
    body: dict[str, Any] = {
        "id": f"evt{n:06d}",
        "summary": f"Meeting {n}",
        "description": "Agenda: status, risks, next steps. " * (1 + n % 4),
        "location": f"Room {n % 40}",
        "start": {"dateTime": f"2027-{month:02d}-{mday:02d}T{hour:02d}:00:00+01:00", "timeZone": "Europe/Warsaw"},
        "end": {"dateTime": f"2027-{month:02d}-{mday:02d}T{hour:02d}:45:00+01:00", "timeZone": "Europe/Warsaw"},
        "attendees": [{"email": f"user{(n + k) % 97}@example.com"} for k in range(1 + n % 6)],
        "reminders": {"useDefault": True},
    }
    if plain:
        body = {key: body[key] for key in ("id", "summary", "start", "end")}
    elif n % 20 == 0:
        body["recurrence"] = ["RRULE:FREQ=WEEKLY;COUNT=12"]
    if n % 3 == 0:
        body["conferenceData"] = {  # what addon/CreateConf.gs builds
            "conferenceId": f"cnf_{n:06d}",
            "conferenceSolution": {
                "key": {"type": "addOn"},
                "name": "My Web Conference",
                "iconUri": "https://conf.example.com/icon.png",
            },
            "entryPoints": [
                {
                    "entryPointType": "video",
                    "uri": f"https://conf.example.com/j/{n}",
                    "label": f"conf.example.com/j/{n}",
                }
            ],
            "parameters": {"addOnParameters": {"parameters": {"adminEmail": USER}}},
            "notes": "Join from the link.",
        }
    return body


@dataclass
class Runs:
    """One side's runs: seconds, this process's CPU seconds and the sandbox's, per run."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    sandbox_cpu: list[float] = field(default_factory=list)

    def figures(self, events: int) -> dict[str, Any]:
        rates = [events / wall for wall in self.wall]
        return {
            "events_per_s_median": round(statistics.median(rates)),
            "events_per_s_runs": [round(rate) for rate in rates],
            "cpu_us_per_event_median": round(1e6 * statistics.median(self.cpu) / events, 1),
            "cpu_us_per_event_runs": [round(1e6 * cpu / events, 1) for cpu in self.cpu],
            "sandbox_cpu_us_per_event_median": round(1e6 * statistics.median(self.sandbox_cpu) / events, 1),
        }


def timed(runs: Runs, sandbox_pid: int, one: Callable[[], None]) -> None:
    wall, cpu, served = time.perf_counter(), time.process_time(), cpu_seconds(sandbox_pid)
    one()
    runs.wall.append(time.perf_counter() - wall)
    runs.cpu.append(time.process_time() - cpu)
    runs.sandbox_cpu.append(cpu_seconds(sandbox_pid) - served)


class _Token(AbstractAuth):
    """gcal_sync's auth: the user's access token (Home Assistant's refreshes it; one lasts the bench)."""

    def __init__(self, session: aiohttp.ClientSession, host: str, token: str) -> None:
        super().__init__(session, host)
        self._token = token

    async def async_get_access_token(self) -> str:
        return self._token


async def peer_sync(session: aiohttp.ClientSession, base: str, token: str) -> int:
    """gcal_sync's full sync of the calendar into a new in-memory store; how many events it holds."""
    store = InMemoryCalendarStore()
    api = GoogleCalendarService(_Token(session, f"{base}/calendar/v3", token))
    await CalendarEventSyncManager(api, calendar_id=USER, store=store).run()
    data = await store.async_load() or {}
    return len(data[EVENT_SYNC][USER][ITEMS])


def delegation(base: str, tmp: Path) -> tuple[Path, str, str]:
    """A service account delegated for the user's domain (its key file) and the access tokens it
    gets for the user: confsync's read-only scopes, and a writer's for seeding."""
    with httpx.Client(base_url=base, timeout=30) as admin:
        admin.post("/_sandbox/users", json={"email": USER}).raise_for_status()
        key = admin.post("/_sandbox/service-accounts", json={"name": "confsync"}).json()
        grant = {"client_id": key["client_id"], "domain": DOMAIN, "scopes": [*CALENDAR_SCOPES, WRITE_SCOPE]}
        admin.post("/_sandbox/domain-wide-delegation", json=grant).raise_for_status()
    key_file = tmp / "service-account.json"
    key_file.write_text(json.dumps(key), encoding="utf-8")
    tokens = []
    for scopes in (CALENDAR_SCOPES, (WRITE_SCOPE,)):
        credentials = service_account.Credentials.from_service_account_info(key, scopes=list(scopes))  # type: ignore[no-untyped-call]
        as_user = credentials.with_subject(USER)
        as_user.refresh(google.auth.transport.requests.Request())
        tokens.append(str(as_user.token))
    return key_file, tokens[0], tokens[1]


def seed(base: str, writer: str, stack: Stack, events: int, *, plain: bool) -> int:
    """The calendar, the add-on's links, one real backfill (links confirmed), then one in 10 of
    our events changed; how many of ours changed."""
    bodies = [event(n, plain=plain) for n in range(events)]
    with httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {writer}"}) as http:
        for first in range(0, events, 1000):
            batch = {"events": bodies[first : first + 1000], "conferenceDataVersion": 1}
            http.post(f"/_sandbox/calendars/{USER}/bulk-insert", json=batch).raise_for_status()
        store = stack.store
        store.ensure_calendar(USER, subject=USER)
        ours = [body for body in bodies if "conferenceData" in body]
        made = datetime.now(UTC)
        for body in ours:  # the owning links the add-on made (ingest/api.py)
            store.add_link(Link(USER, body["id"], body["conferenceData"]["conferenceId"], created_at=made))
        broker = MemoryBroker(queue_limit=100_000)
        broker.create_topic("commands")
        synced = Backfill(store, stack.calendars.for_subject(USER), broker, "commands", requests_per_s=0).run([USER])
        if synced.updates != len(ours):
            raise SystemExit(f"the first backfill updated {synced.updates} conferences, expected {len(ours)}")
        changed = ours[::10]
        for body in changed:
            patch = {"summary": body["summary"] + " (moved)"}
            http.patch(f"/calendar/v3/calendars/{USER}/events/{body['id']}", json=patch).raise_for_status()
    return len(changed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=7, help="runs of each side, interleaved")
    parser.add_argument("--plain", action="store_true", help="events of a title and times only (and our conference)")
    args = parser.parse_args()
    with calendar_sandbox_process("--require-auth") as base, tempfile.TemporaryDirectory() as tmp:
        (sandbox_pid,) = [pid for pid in descendants(os.getpid()) if "sandbox" in _cmdline(pid)]
        key_file, token, writer = delegation(base, Path(tmp))
        settings = Settings(
            store_url=f"sqlite:///{tmp}/state.sqlite",
            transport="memory",
            calendar_api_endpoint=f"{base}/calendar/v3/",
            calendar_service_account_file=str(key_file),
            log_level="info",  # the CLI's default
            log_format="json",
        )
        configure_logging(settings)
        with Stack(settings) as stack, asyncio.Runner() as loop:
            changed = seed(base, writer, stack, args.events, plain=args.plain)
            session = loop.run(_session())
            ours, peer = Runs(), Runs()

            def one_ours() -> None:
                summary = dry_run(stack, Selection(calendar_ids=(USER,)), None)
                seen = (summary.events_read, summary.updates, summary.unchanged, summary.deletes, summary.errors)
                if seen != (args.events, changed, args.events - changed, 0, 0):
                    raise SystemExit(f"dry run saw (events, updates, unchanged, deletes, errors) = {seen}")

            def one_peer() -> None:
                gc.freeze()  # as ours does: start-up's objects out of the collector's full passes
                held = loop.run(peer_sync(session, base, token))
                if held != args.events:
                    raise SystemExit(f"gcal_sync holds {held} events, expected {args.events}")

            one_ours()  # warm: discovery, connections, pydantic's validators
            one_peer()
            for _ in range(args.runs):
                timed(ours, sandbox_pid, one_ours)
                timed(peer, sandbox_pid, one_peer)
            loop.run(session.close())
    mine, theirs = ours.figures(args.events), peer.figures(args.events)
    ratio = mine["events_per_s_median"] / theirs["events_per_s_median"]
    print(
        json.dumps(
            {
                "benchmark": "full_resync",
                "events": args.events,
                "event_shape": "plain" if args.plain else "realistic",
                "changed": changed,
                "runs_each": args.runs,
                "host_fixed_loop_ms": fixed_loop_ms(),
                "confsync_dry_run": mine,
                "gcal_sync": theirs,
                "ratio_of_medians": round(ratio, 2),
                "target_ratio": TARGET_RATIO,
                "meets_target": ratio >= TARGET_RATIO,
            },
            indent=2,
        )
    )


async def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


if __name__ == "__main__":
    main()
