"""``confsync demo``: the local stack plus a story told in the terminal.

Three users' calendars get conferences through the add-on API; then the things people do to
meetings happen one by one (a move, a rename, a guest change, one occurrence of a weekly
meeting cancelled, a conference switched to Meet, a meeting cancelled), then the things that
go wrong (Calendar invalidates the sync tokens; the conferencing service fails for a while).
After each step the demo waits until the conferencing service agrees with Calendar and says
how long that took. It ends with a table of every conference, Calendar's truth next to the
provider's state, and returns True only if all of them agree and no conference was created
twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from stack.driver import Expectation, Row, StackDriver

__all__ = ["Story", "run_story"]

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
STEP_TIMEOUT_S = 30.0
OUTAGE_TIMEOUT_S = 60.0


def _timed(summary: str, day: int, hour: int, *, attendees: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "summary": summary,
        "start": {"dateTime": f"2026-12-{day:02d}T{hour:02d}:00:00+01:00", "timeZone": "Europe/Warsaw"},
        "end": {"dateTime": f"2026-12-{day:02d}T{hour + 1:02d}:00:00+01:00", "timeZone": "Europe/Warsaw"},
        "attendees": [{"email": email} for email in attendees],
        **extra,
    }
    return body


@dataclass
class Story:
    driver: StackDriver
    console: Console
    started: float = field(default_factory=time.monotonic)
    events: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (calendar, event id)
    failures: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.console.print(f"[dim][{time.monotonic() - self.started:5.1f}s][/dim] {text}")

    def step(
        self, title: str, action: Callable[[], object], *, read: str | None = None, timeout_s: float = STEP_TIMEOUT_S
    ) -> None:
        """Do one thing in Calendar, then wait until the provider agrees again.

        ``read``: a calendar whose change must leave the provider as it was; the step then
        also waits until the pipeline has listed that calendar, so "agrees" means "read and
        rightly left alone", not "not read yet".
        """
        with self.console.status(f"{title} ..."):
            listed = self.driver.settled_listings(read) if read else 0
            action()
            began = time.monotonic()
            if read and not self.driver.wait_for_listing(read, listed, timeout_s):
                self.failures.append(title)
            rows = self.driver.wait_until_agreed(timeout_s)
        waited = time.monotonic() - began
        if all(row.agrees for row in rows):
            self.say(f"[green]ok[/green]  {title}  [dim](provider in step {waited:.1f}s later)[/dim]")
        else:
            self.failures.append(title)
            self.say(f"[red]FAILED[/red]  {title}: the provider still disagrees after {timeout_s:.0f}s")

    def create(self, name: str, calendar_id: str, body: dict[str, Any]) -> None:
        event = self.driver.insert(calendar_id, body)
        self.driver.add_conference(calendar_id, event)
        self.events[name] = (calendar_id, str(event["id"]))

    def where(self, name: str) -> tuple[str, str]:
        return self.events[name]


def run_story(driver: StackDriver, console: Console, *, started: float | None = None) -> bool:
    story = Story(driver, console, started=time.monotonic() if started is None else started)
    for user in (ALICE, BOB, CAROL):
        driver.add_calendar(user)
    story.say(f"three users' calendars: {ALICE}, {BOB}, {CAROL}")
    story.step("6 meetings get a My Web Conference through the add-on API", lambda: _create_all(story))
    alice, planning = story.where("planning")
    moved = {k: v for k, v in _timed("Planning", 10, 14).items() if k in ("start", "end")}
    story.step(
        "alice moves Planning from Tuesday 10:00 to Thursday 14:00", lambda: driver.patch(alice, planning, moved)
    )
    bob, one_on_one = story.where("one-on-one")
    renamed = {"summary": "1:1 Alice / Bob"}
    story.step("bob renames '1:1 with Alice' to '1:1 Alice / Bob'", lambda: driver.patch(bob, one_on_one, renamed))
    guests = {"attendees": [{"email": BOB}, {"email": CAROL}]}
    story.step("alice invites carol to Planning", lambda: driver.patch(alice, planning, guests))
    _, design = story.where("design")
    story.step(
        "alice cancels one Design review of the weekly series: the series keeps its conference",
        lambda: driver.cancel_instance(alice, design, 1),
        read=alice,
    )
    carol, customer = story.where("customer")
    story.step(
        "carol switches Customer call to Google Meet: ours is deleted", lambda: driver.switch_to_meet(carol, customer)
    )
    _, retro = story.where("retro")
    story.step("carol cancels Retro", lambda: driver.cancel(carol, retro))

    def after_invalidation() -> None:
        driver.invalidate_sync_tokens(ALICE)
        driver.patch(alice, planning, {"summary": "Planning (Q1)"})

    story.step("Calendar drops alice's sync tokens (410); she renames Planning: full resync", after_invalidation)
    _, offsite = story.where("offsite")

    def outage() -> None:
        rule = {"method": "PATCH", "path": "^/v1/conferences/", "status": 503, "count": 4, "retry_after": 1}
        driver.provider_fault(rule)
        story.say("the conferencing service answers 503 to the next 4 updates")
        driver.patch(bob, offsite, {"summary": "Offsite (Kraków)"})

    story.step("bob renames Offsite during the outage: retried until it recovers", outage, timeout_s=OUTAGE_TIMEOUT_S)
    driver.clear_provider_faults()
    return _verdict(story)


def _create_all(story: Story) -> None:
    story.create("planning", ALICE, _timed("Planning", 8, 10, attendees=(BOB,)))
    weekly = ["RRULE:FREQ=WEEKLY;COUNT=4"]
    story.create("design", ALICE, _timed("Design review", 9, 14, attendees=(CAROL,), recurrence=weekly))
    story.create("one-on-one", BOB, _timed("1:1 with Alice", 10, 9, attendees=(ALICE,)))
    story.create("offsite", BOB, {"summary": "Offsite", "start": {"date": "2026-12-14"}, "end": {"date": "2026-12-15"}})
    story.create("customer", CAROL, _timed("Customer call", 11, 16))
    story.create("retro", CAROL, _timed("Retro", 12, 15, attendees=(ALICE, BOB)))


def _verdict(story: Story) -> bool:
    rows = story.driver.wait_until_agreed(STEP_TIMEOUT_S)
    report = story.driver.call_report()
    story.console.print(_table(rows, story))
    story.console.print(
        f"conferencing API calls: {report['creates']} creates (one per meeting), {report['applied']} changes applied, "
        f"{report['retried']} retried after errors, {report['duplicate_applies']} applied twice"
    )
    agreed = all(row.agrees for row in rows) and report["creates"] == len(rows) and not story.failures
    if agreed:
        story.console.print("[green]Calendar and the conferencing service agree.[/green]")
    else:
        story.console.print(f"[red]They disagree.[/red] Failed steps: {story.failures or 'none'}")
    return agreed


def _table(rows: list[Row], story: Story) -> Table:
    names = {where: name for name, where in story.events.items()}
    table = Table(title="Calendar's truth vs the conferencing service")
    for column in ("meeting", "owner", "conference", "Calendar says", "provider has", ""):
        table.add_column(column, overflow="fold")
    for row in rows:
        mark = "[green]=[/green]" if row.agrees else "[red]DIFFERS[/red]"
        name = names.get((row.calendar_id, row.event_id), row.event_id)
        owner = row.calendar_id.split("@")[0]
        table.add_row(name, owner, row.conference_id[:12], _cell(row.expected), _cell(row.actual), mark)
    return table


def _cell(value: Expectation | None) -> str:
    if value is None:
        return "(missing)"
    if value.state != "active":
        return "deleted"
    start = value.start.strftime("%a %d %b %H:%M") if isinstance(value.start, datetime) else str(value.start)
    guests = f" +{len(value.attendees)}" if value.attendees else ""
    return f"{value.summary} {start}{guests}"
