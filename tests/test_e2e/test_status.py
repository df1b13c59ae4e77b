"""``confsync status`` on the local stack: a calendar in step, one disconnected with its cause
(its owner revoked confsync's Google grant) and one lagging (notified, and its listings fail),
shown alike by the command and by the ingest service's ``GET /v1/status``."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from tests_support.cli import confsync_env, start_confsync
from tests_support.local_stack import Stack, person, timed

from stack.driver import StackDriver

WAIT_S = 60.0


def status(stack: Stack, calendar_id: str | None = None) -> dict[str, Any]:
    """The ingest service's answer (local mode: the scheduler's check is off)."""
    params = {} if calendar_id is None else {"calendar": calendar_id}
    answer = httpx.get(f"{stack.info.api_url}/v1/status", params=params, timeout=10)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def confsync_status(stack: Stack, *runs: tuple[str, ...]) -> list[str]:
    """What ``confsync status ARGS`` prints for each of ``runs``, run side by side (each is a new
    interpreter, and most of its time is spent starting)."""
    env = confsync_env(CONFSYNC_STORE_URL=stack.info.store, CONFSYNC_TRANSPORT=stack.transport)
    if stack.info.pubsub_emulator_host:
        env["PUBSUB_EMULATOR_HOST"] = stack.info.pubsub_emulator_host
    started = [start_confsync("status", *args, env=env) for args in runs]
    printed = []
    for process in started:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        printed.append(out)
    return printed


def rows(text: str) -> dict[str, str]:
    return {line[:15].strip(): line[16:] for line in text.splitlines()}


def verdict_is(stack: Stack, calendar_id: str, verdict: str) -> bool:
    return bool(status(stack, calendar_id)["verdict"] == verdict)


def attached(driver: StackDriver, calendar_id: str) -> dict[str, Any]:
    """A meeting with the add-on's conference whose first listing has reached the provider."""
    meeting = driver.insert(calendar_id, timed("Planning", 9))
    conference = driver.add_conference(calendar_id, meeting)
    assert driver.wait_for_version(conference, 2) == 2
    return meeting


def test_status_shows_a_calendar_in_step_one_disconnected_with_its_cause_and_one_lagging(
    stack: Stack, driver: StackDriver, calendar: str
) -> None:
    in_step, lagging = calendar, person("lagging")
    driver.add_calendar(lagging)
    erin = person("erin", "partner.example")  # outside the delegated domain: read with her own grant
    driver.add_user(erin)
    attached(driver, in_step)
    late = attached(driver, lagging)
    planning = attached(driver, erin)

    driver.revoke_at_google(erin)
    driver.sign_in_again(erin)  # Calendar's own UI still works for her
    driver.patch(erin, planning["id"], {"summary": "Planning, after the revoke"})
    driver.calendar_fault(
        {"method": "GET", "path": f"^/calendar/v3/calendars/{re.escape(lagging)}/events$", "status": 503}
    )
    try:
        driver.patch(lagging, late["id"], {"summary": "Planning, unread"})
        driver.wait_until(lambda: verdict_is(stack, in_step, "in_step"), WAIT_S, "the first calendar in step")
        driver.wait_until(lambda: verdict_is(stack, erin, "disconnected"), WAIT_S, "erin's calendar disconnected")
        driver.wait_until(lambda: verdict_is(stack, lagging, "lagging"), WAIT_S, "the unread calendar lagging")

        calendars = (in_step, erin, lagging)
        *texts, totals_json = confsync_status(stack, *(("--calendar", c) for c in calendars), ("--json",))
        shown, totals = {c: rows(text) for c, text in zip(calendars, texts, strict=True)}, json.loads(totals_json)
    finally:
        driver.clear_calendar_faults()

    assert (shown[in_step]["verdict"], shown[in_step]["lag"]) == ("in step", "none")
    assert shown[in_step]["links"] == "1 live, 0 leaving, 0 deleted"
    assert shown[in_step]["commands"].startswith("0 pending")
    assert shown[in_step]["channel"] != "none live"
    assert (shown[erin]["verdict"], shown[erin]["state"], shown[erin]["owner"]) == ("disconnected",) * 2 + (erin,)
    assert shown[erin]["cause"] not in ("", "-"), "the cause is shown"
    assert status(stack, erin)["cause"] == shown[erin]["cause"]
    assert shown[lagging]["verdict"] == "lagging"
    assert shown[lagging]["lag"].endswith("(notified, not listed since)")

    assert totals["calendars"]["disconnected"] >= 1
    assert totals["oldest_lag_s"] is not None
    served = status(stack)
    assert served.keys() == totals.keys(), "the route and the command say the same"
    # In process, only the serving process holds the dead letters; on Pub/Sub only the command
    # pulls them to count (a service would lease them away from a replay).
    assert (served["dead_letters"] is None) == (stack.transport == "pubsub")
    assert (totals["dead_letters"] is None) == (stack.transport == "memory"), "another process's queues: unknown"
