"""Chaos run: random changes across many calendars while both sandboxes fail and services die.

Starts ``confsync local`` (its supervisor restarts what is killed), gives ``--calendars`` x
``--events`` meetings a conference through the add-on API, then makes ``--changes`` random
changes through the Calendar API (rename, new time, guests, cancel, cancel or move one
occurrence, remove the conference, switch to Meet, new meeting with a conference), and the
ones only the owner's copy may speak for: other users of the run invited (their watched
calendars get copies) and a guest removing their copy, a meeting moved to its owner's team
calendar, and one moved out of its owner's calendars by a user they share a calendar with
(its conference goes, after the grace). Meanwhile, at
random: 503/429 bursts at the conferencing service, 500s on Calendar listings, sync tokens
invalidated (410), every vendor access token expired at once (the vendor's clock moved on an
hour), and (on Pub/Sub: the in-process queues are not meant to survive a crash) a service
SIGKILLed; halfway through, one user revokes confsync at the vendor (their changes are held).
Then the faults stop, that user reconnects (the connect pages, as a browser), and it waits for
the provider to agree with Calendar. Prints one JSON object: changes, divergences (must be 0),
the messages left on each dead-letter topic,
lost deletes (0), deletes the owner did not cause (0), duplicate creates (0), provider calls per
effective change.

    .venv/bin/python bench/chaos.py --seed 7 --changes 300 [--transport pubsub|memory]
        [--calendars 8] [--events 6] [--no-kills] [--state-dir D]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from google.api_core.retry import Retry
from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # the package ships no stub for this re-export
from googleapiclient.errors import HttpError

from confsync.logs import configure_logging
from confsync.settings import Settings
from confsync.transport.topology import topology
from stack.driver import Row, StackDriver
from stack.local import LocalStack, ReadyInfo


def timed(summary: str, rng: random.Random, *, weekly: bool = False) -> dict[str, Any]:
    day, hour = rng.randint(1, 27), rng.randint(7, 18)
    body: dict[str, Any] = {
        "summary": summary,
        "start": {"dateTime": f"2026-12-{day:02d}T{hour:02d}:00:00Z"},
        "end": {"dateTime": f"2026-12-{day:02d}T{hour:02d}:45:00Z"},
    }
    if weekly:
        body["recurrence"] = ["RRULE:FREQ=WEEKLY;COUNT=5"]
    return body


class Chaos:
    def __init__(self, driver: StackDriver, rng: random.Random, info: ReadyInfo, kills: bool) -> None:
        self.driver, self.rng, self.info, self.kills = driver, rng, info, kills
        self.live: list[tuple[str, str, bool]] = []  # (calendar, event, weekly) still carrying ours
        self.guests: dict[tuple[str, str], list[str]] = {}  # (calendar, event) -> users of the run invited
        self.users: list[str] = []
        self.counts: dict[str, int] = {}
        self.created = 0
        self.revoked: list[str] = []
        self.reconnected: set[str] = set()
        self.teams: set[str] = set()
        self.shared: set[tuple[str, str]] = set()

    def meeting(self, calendar_id: str, n: int) -> None:
        weekly = self.rng.random() < 0.25
        event = self.driver.insert(calendar_id, timed(f"meeting {n}", self.rng, weekly=weekly))
        deadline = time.monotonic() + 120
        while True:  # as a user would: while ingest is being restarted the add-on gets an error; retry
            try:
                self.driver.add_conference(calendar_id, event)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.created += 1
        self.live.append((calendar_id, str(event["id"]), weekly))

    def some_calendar(self) -> str:
        """A calendar that still has live meetings (the first user's when none has)."""
        return self.rng.choice(sorted({c for c, _, _ in self.live} or {"user0@example.com"}))

    def change(self, k: int) -> None:
        driver, rng = self.driver, self.rng
        if not self.live or rng.random() < 0.08:
            self.meeting(self.some_calendar(), 1000 + k)
            self._count("create")
            return
        index = rng.randrange(len(self.live))
        calendar_id, event_id, weekly = self.live[index]
        roll = rng.random()
        if roll < 0.28:
            driver.patch(calendar_id, event_id, {"summary": f"renamed {k}"})
            self._count("rename")
        elif roll < 0.43:
            driver.patch(calendar_id, event_id, {key: v for key, v in timed("", rng).items() if key != "summary"})
            self._count("new_time")
        elif roll < 0.55:
            self.invite(calendar_id, event_id)
        elif roll < 0.61:
            self.guest_removes_copy(calendar_id, event_id)
        elif roll < 0.66:
            self.live[index] = (self.to_team(calendar_id, event_id), event_id, weekly)
        elif roll < 0.69 and calendar_id == driver.owner_of(calendar_id):
            self.move_away(calendar_id, event_id)
            self.live.pop(index)
        elif roll < 0.76 and weekly:
            self.occurrence(calendar_id, event_id)
        elif roll < 0.86:
            driver.cancel(calendar_id, event_id)
            self.live.pop(index)
            self._count("cancel")
        elif roll < 0.93:
            driver.remove_conference(calendar_id, event_id)
            self.live.pop(index)
            self._count("remove_conference")
        else:
            driver.switch_to_meet(calendar_id, event_id)
            self.live.pop(index)
            self._count("switch_to_meet")

    def occurrence(self, calendar_id: str, event_id: str) -> None:
        """One occurrence of a weekly meeting cancelled, or moved a few hours."""
        try:
            if self.rng.random() < 0.5:
                self.driver.cancel_instance(calendar_id, event_id, self.rng.randint(1, 3))
                self._count("cancel_instance")
            else:
                hours = self.rng.randint(1, 5)
                self.driver.move_instance(calendar_id, event_id, self.rng.randint(1, 3), hours=hours)
                self._count("move_instance")
        except LookupError:  # every occurrence is cancelled already
            return

    def invite(self, calendar_id: str, event_id: str) -> None:
        """Guests: outsiders, and users of the run, whose watched calendars then hold copies."""
        owner = self.driver.owner_of(calendar_id)
        insiders = self.rng.sample([u for u in self.users if u != owner], min(2, len(self.users) - 1))
        outsiders = self.rng.sample(["a@example.com", "b@example.com", "c@example.com"], self.rng.randint(0, 2))
        guests = insiders[: self.rng.randint(0, len(insiders))] + outsiders
        self.driver.patch(calendar_id, event_id, {"attendees": [{"email": g} for g in guests]})
        self.guests[(calendar_id, event_id)] = [g for g in guests if g in self.users]
        self._count("guests")

    def guest_removes_copy(self, calendar_id: str, event_id: str) -> None:
        """A guest deletes the meeting from their own calendar: only their copy goes."""
        guests = self.guests.get((calendar_id, event_id))
        if not guests:
            self.invite(calendar_id, event_id)
            return
        guest = guests.pop(self.rng.randrange(len(guests)))
        try:
            self.driver.cancel(guest, event_id)
        except HttpError as err:
            if err.resp.status not in (404, 410):  # an occurrence-only guest, or already gone
                raise
        self._count("guest_removed_copy")

    def to_team(self, calendar_id: str, event_id: str) -> str:
        """The owner moves the meeting between their primary and their team calendar."""
        owner = self.driver.owner_of(calendar_id)
        destination = owner if calendar_id != owner else self.team_of(owner)
        self.driver.move(calendar_id, event_id, destination)
        self.guests[(destination, event_id)] = self.guests.pop((calendar_id, event_id), [])
        self._count("moved_between_owners_calendars")
        return destination

    def team_of(self, owner: str) -> str:
        team = owner.replace("@", ".team@")
        if team not in self.teams:
            self.driver.add_secondary_calendar(team, owner)
            self.teams.add(team)
        return team

    def move_away(self, calendar_id: str, event_id: str) -> None:
        """Someone the owner shares their calendar with moves the meeting to their own."""
        other = self.rng.choice([u for u in self.users if u != calendar_id])
        if (calendar_id, other) not in self.shared:
            self.driver.share(calendar_id, other, "writer")
            self.shared.add((calendar_id, other))
        self.driver.move(calendar_id, event_id, other, as_=other)
        self._count("moved_out_of_owners_calendars")

    def disturb(self) -> None:
        driver, rng = self.driver, self.rng
        roll = rng.random()
        if roll < 0.25:
            status = rng.choice([503, 429])
            driver.provider_fault({"path": "^/v1/conferences/", "status": status, "probability": 0.4, "count": 15})
            self._count(f"provider_{status}_burst")
        elif roll < 0.4:
            driver.calendar_fault({"method": "GET", "path": "/events$", "status": 500, "probability": 0.3, "count": 8})
            self._count("calendar_500_burst")
        elif roll < 0.55:
            driver.invalidate_sync_tokens(self.some_calendar())
            self._count("sync_tokens_invalidated")
        elif roll < 0.75:
            driver.vendor_clock(3600)  # every vendor access token confsync holds has expired
            self._count("vendor_tokens_expired")
        elif self.kills:
            names = [n for n in self.info.services if n.startswith("serve-")]
            victim = rng.choice(names)
            pid = self.info.services[victim].pid
            if pid is None:  # not started: nothing to kill
                return
            try:
                os.kill(pid, signal.SIGKILL)
                self._count(f"killed_{victim}")
            except ProcessLookupError:
                pass

    def revoke_one(self) -> None:
        """A user disconnects confsync in their vendor account: their changes are held from now."""
        user = self.driver.owner_of(self.some_calendar())
        self.driver.revoke_at_vendor(user)
        self.revoked.append(user)
        self._count("vendor_grant_revoked")

    def reconnect(self) -> None:
        """Each user who revoked connects again once confsync has noticed (the add-on then asks
        them to), unless a create of theirs already made them."""
        for user in self.revoked:
            if user not in self.reconnected and self.driver.connect(user).consents:
                self.reconnected.add(user)
                self._count("reconnected")

    def settle(self, timeout_s: float) -> list[Row]:
        """Until the provider agrees with Calendar: confsync may notice a revocation only when it
        next needs that user's token, so reconnecting is tried again while waiting."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.reconnect()
            rows = self.driver.wait_until_agreed(5.0, poll_s=0.5)
            if all(row.agrees for row in rows) or time.monotonic() > deadline:
                return rows

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


def dead_letters(info: ReadyInfo) -> dict[str, int]:
    """How many messages wait on each dead-letter holding subscription (Pub/Sub only)."""
    host = info.pubsub_emulator_host
    if not host:
        return {}
    os.environ["PUBSUB_EMULATOR_HOST"] = str(host)
    settings = Settings.from_env()
    subscriber = pubsub_v1.SubscriberClient()
    counts: dict[str, int] = {}
    try:
        for spec in topology(settings).subscriptions:
            if spec.dead_letter_topic is not None:
                continue
            path = subscriber.subscription_path(settings.project_id, spec.name)
            answer = subscriber.pull(subscription=path, max_messages=1000, timeout=5, retry=Retry(timeout=10))
            counts[spec.topic] = len(answer.received_messages)
    finally:
        subscriber.close()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--transport", choices=["pubsub", "memory"], default=None)
    parser.add_argument("--calendars", type=int, default=8)
    parser.add_argument("--events", type=int, default=6)
    parser.add_argument("--no-kills", action="store_true")
    parser.add_argument("--state-dir", type=Path, default=None, help="Keep the stack's databases and logs here.")
    parser.add_argument("--settle-s", type=float, default=180.0, help="How long the provider may take to agree.")
    args = parser.parse_args()
    configure_logging(Settings(log_level="warning", log_format="json"))
    rng = random.Random(args.seed)  # noqa: S311 - a reproducible run, not a secret
    stack = LocalStack(Settings.from_env(), transport=args.transport, state_dir=args.state_dir)
    info = stack.start()
    stop = threading.Event()
    supervisor = threading.Thread(target=stack.supervise, args=(stop,), daemon=True)
    supervisor.start()
    driver = StackDriver(info)
    started = time.monotonic()
    try:
        mark = driver.journal_mark()
        # The in-process queues die with `serve all`: a kill there loses messages by design
        # (confsync/transport/memory.py), so kills are part of the Pub/Sub run only.
        kills = not args.no_kills and info.transport == "pubsub"
        chaos = Chaos(driver, rng, info, kills=kills)
        chaos.users = [f"user{c}@example.com" for c in range(args.calendars)]
        for c in range(args.calendars):
            driver.add_calendar(f"user{c}@example.com")
            for e in range(args.events):
                chaos.meeting(f"user{c}@example.com", c * 100 + e)
        for k in range(args.changes):
            chaos.change(k)
            if k == args.changes // 2:
                chaos.revoke_one()
            if rng.random() < 0.04:
                chaos.disturb()
        driver.clear_provider_faults()
        driver.clear_calendar_faults()
        rows = chaos.settle(args.settle_s)
        report = driver.call_report(mark)
        dead = dead_letters(info)
    finally:
        stop.set()
        supervisor.join(timeout=30)
        driver.close()
        stack.stop()
    divergences = [row for row in rows if not row.agrees]
    lost_deletes = [r for r in divergences if r.expected.state == "deleted" and r.actual and r.actual.state == "active"]
    uncaused = [
        r for r in divergences if r.expected.state == "active" and (r.actual is None or r.actual.state != "active")
    ]
    effective = report["applied"]
    calls = report["applied"] + report["retried"]
    print(
        json.dumps(
            {
                "benchmark": "chaos",
                "seed": args.seed,
                "transport": info.transport,
                "changes": args.changes,
                "conferences": len(rows),
                "disturbances": chaos.counts,
                "divergences": len(divergences),
                "lost_deletes": len(lost_deletes),
                "deletes_the_owner_did_not_cause": len(uncaused),
                "revoked_at_vendor": chaos.revoked,
                "duplicate_creates": report["creates"] - chaos.created,
                "duplicate_applies": report["duplicate_applies"],
                "provider_calls": calls,
                "provider_calls_per_effective_change": round(calls / max(1, effective), 3),
                "retried_calls": report["retried"],
                "dead_letters": dead,
                "seconds": round(time.monotonic() - started, 1),
                "diverging": [f"{r.calendar_id}/{r.event_id}: {r.expected} vs {r.actual}" for r in divergences[:5]],
            }
        )
    )


if __name__ == "__main__":
    main()
