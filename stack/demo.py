"""``confsync demo``: the local stack plus a story told in the terminal.

Three users of example.com, whose admin lets confsync read their calendars (domain-wide
delegation), connect their My Web Conferencing accounts (Google asks for no calendar) and get
conferences through the add-on API, each call with their own Google ID token. A fourth user,
from another domain, has not connected: the add-on answers AUTHENTICATION, he consents at
Google and at the vendor, and his second try works. Then the things people do to meetings
happen one by one (a move, a rename, a guest change, a guest removing the meeting from her own
calendar, a meeting moved to its owner's team calendar, one occurrence of a weekly meeting
cancelled, a conference switched to Meet, a meeting cancelled), then the things that go wrong
(Calendar invalidates the sync tokens; the conferencing service fails for a while). After
each step the demo waits until the conferencing service agrees with Calendar and says how
long that took. It ends with a table of every conference, Calendar's truth next to the
provider's state and the vendor account holding it, and returns True only if all of them
agree, each conference is in its owner's account and none was created twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from confsync.calendar import CALENDAR_SCOPES
from stack.driver import Consent, Expectation, Row, StackDriver, authentication_url
from stack.local import DELEGATED_DOMAIN, USERS

__all__ = ["Story", "run_story"]

ALICE, BOB, CAROL, DAVE = USERS  # DAVE is outside DELEGATED_DOMAIN: he consents at Google too
# Guests from outside the stack (no calendar here); carol is a guest with a calendar of her own.
ERIN, FRANK, GRACE = "erin@example.com", "frank@example.com", "grace@partner.example"
TEAM = "alice.team@group.calendar.google.com"  # a secondary calendar of alice's
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
        self.attach(name, calendar_id, self.driver.insert(calendar_id, body))

    def attach(self, name: str, calendar_id: str, event: dict[str, Any]) -> None:
        self.driver.add_conference(calendar_id, event)
        self.events[name] = (calendar_id, str(event["id"]))

    def where(self, name: str) -> tuple[str, str]:
        return self.events[name]

    def moved(self, name: str, destination: str) -> None:
        calendar_id, event_id = self.events[name]
        self.driver.move(calendar_id, event_id, destination)
        self.events[name] = (destination, event_id)


def run_story(driver: StackDriver, console: Console, *, started: float | None = None) -> bool:
    story = Story(driver, console, started=time.monotonic() if started is None else started)
    story.say(f"four users: {ALICE}, {BOB}, {CAROL} ({DELEGATED_DOMAIN} delegates calendar access) and {DAVE}")
    _connect_the_team(story)
    story.step("6 meetings get a My Web Conference through the add-on API", lambda: _create_all(story))
    _a_newcomer_connects_first(story)
    alice, planning = story.where("planning")
    moved = {k: v for k, v in _timed("Planning", 10, 14).items() if k in ("start", "end")}
    story.step(
        "alice moves Planning from Tuesday 10:00 to Thursday 14:00", lambda: driver.patch(alice, planning, moved)
    )
    bob, one_on_one = story.where("one-on-one")
    renamed = {"summary": "1:1 Bob / Erin"}
    story.step("bob renames '1:1 with Erin' to '1:1 Bob / Erin'", lambda: driver.patch(bob, one_on_one, renamed))
    guests = {"attendees": [{"email": ERIN}, {"email": FRANK}, {"email": CAROL}]}
    story.step("alice invites frank and carol to Planning", lambda: driver.patch(alice, planning, guests))
    story.step(
        "carol removes Planning from her own calendar: the conference is alice's, it stays",
        lambda: driver.cancel(CAROL, planning),
        read=CAROL,
    )
    story.step(
        "alice renames Planning: her change still reaches it",
        lambda: driver.patch(alice, planning, {"summary": "Planning (with frank)"}),
    )
    driver.add_secondary_calendar(TEAM, ALICE)
    story.step(
        "alice moves Planning to her team calendar: the conference follows it", lambda: story.moved("planning", TEAM)
    )
    team, planning = story.where("planning")
    _, design = story.where("design")
    story.step(
        "alice cancels one Design review of the weekly series: the series' conference hears of it",
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
        driver.invalidate_sync_tokens(TEAM)
        driver.patch(team, planning, {"summary": "Planning (Q1)"})

    story.step(
        "Calendar drops the team calendar's sync tokens (410); alice renames Planning: full resync", after_invalidation
    )
    _, offsite = story.where("offsite")

    def outage() -> None:
        rule = {"method": "PATCH", "path": "^/v1/conferences/", "status": 503, "count": 4, "retry_after": 1}
        driver.provider_fault(rule)
        story.say("the conferencing service answers 503 to the next 4 updates")
        driver.patch(bob, offsite, {"summary": "Offsite (Kraków)"})

    story.step("bob renames Offsite during the outage: retried until it recovers", outage, timeout_s=OUTAGE_TIMEOUT_S)
    driver.clear_provider_faults()
    return _verdict(story)


def _connect_the_team(story: Story) -> None:
    """example.com's users connect their vendor accounts; Google asks for no calendar (delegation)."""
    team = (ALICE, BOB, CAROL)
    with story.console.status("alice, bob and carol connect ..."):
        walks = [story.driver.connect(user).consents for user in team]
    title = "alice, bob and carol connect My Web Conferencing"
    seen = {_pages(consents) for consents in walks}
    if not all(_vendor_only(consents) for consents in walks):
        story.failures.append(title)
        story.say(f"[red]FAILED[/red]  {title}: they saw {seen}; Google must not ask for their calendars")
        return
    story.say(f"[green]ok[/green]  {title}: {', or '.join(sorted(seen))} (their calendars: delegation)")


def _a_newcomer_connects_first(story: Story) -> None:
    """dave has not connected: the add-on asks him to, he consents at Google and the vendor, retries."""
    driver = story.driver
    event = driver.insert(DAVE, _timed("Partner sync", 15, 11, attendees=(GRACE,)))
    link = authentication_url(driver.request_conference(DAVE, event))
    if link is None:
        story.failures.append("dave must connect first")
        story.say("[red]FAILED[/red]  dave's first add-on call was not answered AUTHENTICATION")
        return
    story.say("dave adds a My Web Conference to Partner sync: the add-on answers AUTHENTICATION (connect first)")
    consents = driver.connect(DAVE, link).consents
    story.say(f"dave opens the link and allows {_pages(consents)}: Connected")
    story.step("dave adds it again: created in his own vendor account", lambda: story.attach("partner", DAVE, event))
    _, partner = story.where("partner")
    story.step(
        "dave moves Partner sync: confsync reads his calendar with his own Google grant",
        lambda: driver.patch(DAVE, partner, {k: v for k, v in _timed("", 16, 15).items() if k in ("start", "end")}),
    )


def _vendor_only(consents: tuple[Consent, ...]) -> bool:
    """The vendor's consent was answered, and Google asked for no calendar."""
    return any(consent.at == "vendor" for consent in consents) and not any(map(_asks_for_calendars, consents))


def _asks_for_calendars(consent: Consent) -> bool:
    return consent.at == "Google" and bool(consent.scopes & set(CALENDAR_SCOPES))


def _pages(consents: tuple[Consent, ...]) -> str:
    """The consent pages a user answered, as they saw them."""

    def page(consent: Consent) -> str:
        if consent.at != "Google":
            return "My Web Conferencing's consent"
        return "Google's consent to read calendars" if _asks_for_calendars(consent) else "Google's sign-in"

    return ", then ".join(page(consent) for consent in consents)


def _create_all(story: Story) -> None:
    story.create("planning", ALICE, _timed("Planning", 8, 10, attendees=(ERIN,)))
    weekly = ["RRULE:FREQ=WEEKLY;COUNT=4"]
    story.create("design", ALICE, _timed("Design review", 9, 14, attendees=(FRANK,), recurrence=weekly))
    story.create("one-on-one", BOB, _timed("1:1 with Erin", 10, 9, attendees=(ERIN,)))
    story.create("offsite", BOB, {"summary": "Offsite", "start": {"date": "2026-12-14"}, "end": {"date": "2026-12-15"}})
    story.create("customer", CAROL, _timed("Customer call", 11, 16))
    story.create("retro", CAROL, _timed("Retro", 12, 15, attendees=(ERIN, FRANK)))


def _verdict(story: Story) -> bool:
    rows = story.driver.wait_until_agreed(STEP_TIMEOUT_S)
    report = story.driver.call_report()
    story.console.print(_table(rows, story))
    story.console.print(
        f"conferencing API calls: {report['creates']} creates (one per meeting), {report['applied']} changes applied, "
        f"{report['retried']} retried after errors, {report['duplicate_applies']} applied twice"
    )
    misplaced = [row.conference_id for row in rows if row.account != story.driver.owner_of(row.calendar_id)]
    if misplaced:
        story.failures.append(f"conferences outside their owner's vendor account: {misplaced}")
    agreed = all(row.agrees for row in rows) and report["creates"] == len(rows) and not story.failures
    if agreed:
        story.console.print("[green]Calendar and the conferencing service agree.[/green]")
    else:
        story.console.print(f"[red]They disagree.[/red] Failed steps: {story.failures or 'none'}")
    return agreed


def _table(rows: list[Row], story: Story) -> Table:
    names = {where: name for name, where in story.events.items()}
    table = Table(title="Calendar's truth vs the conferencing service")
    for column in ("meeting", "vendor account", "conference", "Calendar says", "provider has", ""):
        table.add_column(column, overflow="fold")
    for row in rows:
        mark = "[green]=[/green]" if row.agrees else "[red]DIFFERS[/red]"
        name = names.get((row.calendar_id, row.event_id), row.event_id)
        account = row.account.split("@")[0] if row.account else "(none)"
        table.add_row(name, account, row.conference_id[:12], _cell(row.expected), _cell(row.actual), mark)
    return table


def _cell(value: Expectation | None) -> str:
    if value is None:
        return "(missing)"
    if value.state != "active":
        return "deleted"
    start = value.start.strftime("%a %d %b %H:%M") if isinstance(value.start, datetime) else str(value.start)
    guests = f" +{len(value.attendees)}" if value.attendees else ""
    cancelled = sum(1 for _, status, _ in value.exceptions if status == "cancelled")
    moved = len(value.exceptions) - cancelled
    exceptions = "".join(f", {count} {what}" for count, what in ((cancelled, "cancelled"), (moved, "moved")) if count)
    return f"{value.summary} {start}{guests}{exceptions}"
