"""One trace per change, over ``confsync local`` (Pub/Sub emulator and in-process): a change
made in Calendar is followed from the webhook to the provider's PATCH by its trace id alone,
in the services' JSON logs and in the provider's request journal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests_support.local_stack import Stack, timed

from confsync.logs import TRACE_FIELD
from stack.driver import StackDriver


def log_lines(stack: Stack) -> list[tuple[str, dict[str, Any]]]:
    """Every JSON line the services wrote so far, with the service that wrote it."""
    found = []
    for name, service in stack.current().services.items():
        for text in Path(service.log).read_text(errors="replace").splitlines():
            try:
                line = json.loads(text)
            except ValueError:
                continue  # a child's own start-up chatter
            if isinstance(line, dict):
                found.append((name, line))
    return found


def test_one_change_is_followed_from_the_webhook_to_the_providers_patch_by_its_trace(
    stack: Stack, driver: StackDriver, calendar: str
) -> None:
    event = driver.insert(calendar, timed("Standup", 14))
    conference = driver.add_conference(calendar, event)
    assert driver.wait_for_version(conference, 2) == 2
    mark = driver.journal_mark()

    driver.patch(calendar, event["id"], {"summary": "Standup, renamed"})

    def patches() -> list[dict[str, Any]]:
        return [
            entry
            for entry in driver.journal()[mark:]
            if entry["method"] == "PATCH" and entry["path"].endswith(conference) and entry["status"] == 200
        ]

    driver.wait_until(lambda: bool(patches()), 30.0, "the rename's PATCH")
    trace_id = patches()[0]["traceparent"].split("-")[1]

    def traced() -> list[tuple[str, dict[str, Any]]]:
        return [(name, line) for name, line in log_lines(stack) if line.get(TRACE_FIELD, "").endswith(f"/{trace_id}")]

    def said(lines: list[tuple[str, dict[str, Any]]], message: str, **fields: str) -> set[str]:
        """The services whose lines say ``message`` with ``fields``."""
        return {
            name
            for name, line in lines
            if line["message"] == message and all(line.get(k) == v for k, v in fields.items())
        }

    # The publisher logs its line once the PATCH is answered: give the files a moment.
    driver.wait_until(lambda: bool(said(traced(), "command applied", conference_id=conference)), 15.0, "its line")
    lines = traced()
    # Published at once, or folded into the calendar's next message (ingest/fold.py) in its trace.
    webhook = said(lines, "notification", outcome="published", calendar_id=calendar) | said(
        lines, "notification", outcome="folded", calendar_id=calendar
    )
    listing = said(lines, "calendar synced", calendar_id=calendar)
    published = said(lines, "command published", conference_id=conference, kind="update")
    applied = said(lines, "command applied", conference_id=conference)
    assert webhook, "the trace begins at the webhook"
    assert listing, "the processor's listing is in it"
    assert published, "and the command the listing published"
    assert applied, "and the publisher's PATCH"
    if stack.transport == "pubsub":  # three services, one trace
        assert (webhook, listing, applied) == ({"serve-ingest"}, {"serve-processor"}, {"serve-publisher"})
    calendars = {line["calendar_id"] for _, line in lines if "calendar_id" in line}
    assert calendars == {calendar}, "no other calendar's work shares the trace"
