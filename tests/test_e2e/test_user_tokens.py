"""Users' tokens over ``confsync local``, on Pub/Sub (emulator) and in-process: an access token
that expires mid-run, a vendor grant the user revokes and then reconnects, a Google grant the
user revokes and then reconnects; and, over everything the stack logged, not one secret.

The provider's journal and the store say what happened; Calendar's events are what the
conferencing service must agree with in the end."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from tests_support.local_stack import Stack, person, store_of, timed

from accounts.grants import Grants
from accounts.vault import open_vault
from confsync.rfc3339 import parse_rfc3339
from confsync.settings import Settings
from confsync.store import CalendarStatus, GrantStatus, OAuthProvider
from stack.driver import StackDriver

WAIT_S = 60.0


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def summary_at_vendor(driver: StackDriver, conference_id: str) -> str | None:
    held = driver.conference(conference_id)
    return None if held is None else held.get("summary")


def calls_since(driver: StackDriver, mark: int, method: str) -> list[int]:
    return [e["status"] for e in driver.journal()[mark:] if e["method"] == method and e["path"].startswith("/v1/")]


def meeting(driver: StackDriver, user: str, day: int) -> tuple[dict[str, Any], str]:
    """A connected ``user``'s meeting with a conference, the provider agreeing."""
    driver.add_user(user)
    event = driver.insert(user, timed("Planning", day))
    conference = driver.add_conference(user, event)  # connects them first when the API asks
    wait_for("the provider to agree", lambda: summary_at_vendor(driver, conference) == "Planning")
    assert driver.conference(conference)["owner"] == user  # type: ignore[index]
    # The first listing to show the conference on the event confirms it with one update: let it
    # land, or a test counting versions from here counts it too.
    saved = parse_rfc3339(driver.event(user, event["id"])["updated"])  # type: ignore[index]
    wait_for("the provider to see the event with its conference", lambda: seen_at_vendor(driver, conference) == saved)
    return event, conference


def seen_at_vendor(driver: StackDriver, conference_id: str) -> datetime | None:
    stamp = (driver.conference(conference_id) or {}).get("last_event_updated")
    return None if stamp is None else parse_rfc3339(stamp)


def test_an_access_token_that_expired_mid_run_is_refreshed_and_no_change_is_lost(
    stack: Stack, driver: StackDriver
) -> None:
    alice = person("alice")
    event, conference = meeting(driver, alice, 12)
    driver.patch(alice, event["id"], {"summary": "Planning v2"})  # the publisher now holds her access token
    wait_for("the first change at the vendor", lambda: summary_at_vendor(driver, conference) == "Planning v2")
    mark = driver.journal_mark()

    driver.vendor_clock(7200)  # every vendor access token confsync holds has expired
    driver.patch(alice, event["id"], {"summary": "Planning, moved"})

    wait_for("the change at the vendor", lambda: summary_at_vendor(driver, conference) == "Planning, moved")
    # Hers only: other meetings' commands may meet the expired tokens too, and finish later.
    patches = [
        entry["status"]
        for entry in driver.journal()[mark:]
        if entry["method"] == "PATCH" and entry["path"].endswith(conference)
    ]
    assert 401 in patches  # refused once with the expired token ...
    assert 200 in patches[patches.index(401) :]  # ... and applied with a fresh one


def test_a_revoked_vendor_grant_holds_changes_and_a_reconnect_delivers_them_in_order(
    stack: Stack, driver: StackDriver
) -> None:
    bob = person("bob")
    event, conference = meeting(driver, bob, 13)
    version = driver.conference(conference)["version"]  # type: ignore[index]
    driver.revoke_at_vendor(bob)
    mark = driver.journal_mark()

    with store_of(stack) as store:
        driver.patch(bob, event["id"], {"summary": "Planning v2"})
        wait_for("the first change held", lambda: store.count_held(bob) >= 1)
        driver.patch(bob, event["id"], {"summary": "Planning v3"})
        wait_for("the second change held", lambda: store.count_held(bob) >= 2)
        grant = store.get_grant(bob, OAuthProvider.VENDOR)
        assert grant is not None
        assert grant.status is GrantStatus.REVOKED
    assert summary_at_vendor(driver, conference) == "Planning"  # held: nothing reached the vendor

    assert driver.connect(bob).consents

    wait_for("the held changes delivered", lambda: summary_at_vendor(driver, conference) == "Planning v3")
    assert driver.conference(conference)["version"] == version + 2  # type: ignore[index]  # v2, then v3
    assert 409 not in calls_since(driver, mark, "PATCH")  # never out of order
    with store_of(stack) as store:
        assert store.count_held(bob) == 0


def test_a_revoked_google_grant_disconnects_the_calendar_without_a_delete_and_a_reconnect_resyncs_it(
    stack: Stack, driver: StackDriver
) -> None:
    erin = person("erin", "partner.example")  # no delegation for her domain: her own Google grant
    event, conference = meeting(driver, erin, 14)
    driver.revoke_at_google(erin)
    driver.sign_in_again(erin)  # her Calendar UI's grant went too
    mark = driver.journal_mark()

    driver.patch(erin, event["id"], {"summary": "Planning, while disconnected"})

    with store_of(stack) as store:

        def disconnected() -> bool:
            state = store.get_calendar(erin)
            return state is not None and state.status is CalendarStatus.DISCONNECTED

        wait_for("the calendar disconnected", disconnected)
    assert calls_since(driver, mark, "DELETE") == []
    assert driver.conference(conference)["state"] == "active"  # type: ignore[index]

    consents = driver.connect(erin).consents
    assert len(consents) == 2  # Google's calendar consent again, then the vendor's

    wait_for("the resync", lambda: summary_at_vendor(driver, conference) == "Planning, while disconnected")
    with store_of(stack) as store:
        state = store.get_calendar(erin)
        assert state is not None
        assert state.status is CalendarStatus.ACTIVE
    assert calls_since(driver, mark, "DELETE") == []


def test_no_token_or_secret_appears_in_any_service_log_line(stack: Stack, driver: StackDriver) -> None:
    # Something to log first, so the search is over a run that used tokens whatever ran before.
    meeting(driver, person("frank"), 15)
    info = stack.info
    settings = replace(Settings(), store_url=info.store, vault_key_file=str(Path(info.state_dir) / "vault.key"))
    key = Path(settings.vault_key_file or "").read_bytes()
    secrets = {
        info.provider_api_key,
        info.api_token,
        info.ui_client.client_secret,
        base64.b64encode(key).decode(),
        key.hex(),
        *info.user_tokens.values(),
        *(token for token, _ in driver._id_tokens.values()),
    }
    with store_of(stack) as store:
        grants = Grants(store, open_vault(settings))
        for grant in store.list_grants():
            secrets |= {grant.sealed_token.reveal(), grants.unseal(grant).reveal()}
        assert len(store.list_grants()) >= 2

    logs = {name: Path(service.log).read_text(errors="replace") for name, service in stack.current().services.items()}
    assert any("grant saved" in text for text in logs.values())  # the search is over real lines
    leaked = {name: [s[:10] + "..." for s in secrets if s and s in text] for name, text in logs.items()}
    assert leaked == {name: [] for name in logs}
