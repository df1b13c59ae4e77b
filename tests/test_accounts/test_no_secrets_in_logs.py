"""No token, secret or refresh token appears in any log line: one run through everything users'
accounts do (connect, create, a change, an expired vendor token refreshed, a revoked vendor grant
held and reconnected, a revoked Google grant reconnected, the settings page, a disconnect), every
secret of it collected as it appears, then every line confsync and the sandboxes logged searched
for each. Logging is configured as every confsync entry point configures it (JSON lines, level
info, ``confsync.logs.configure_logging``); the test's own HTTP client (httpx's log of the URLs
it opened, codes included) is the person's browser, not confsync, and is left out."""

from __future__ import annotations

import base64
import io
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import structlog
from tests_support.accounts_world import AccountsWorld, Person, WorldFactory, heading

from confsync.logs import configure_logging
from confsync.settings import Secret, default_vault_key_file

ALICE = "alice@example.com"


@pytest.fixture
def world(accounts_world: WorldFactory) -> AccountsWorld:
    return accounts_world(ALICE)


class Secrets:
    def __init__(self, world: AccountsWorld) -> None:
        self.world = world
        self.found: set[str] = set()

    def add(self, *values: str | Secret | None) -> None:
        for value in values:
            text = value.reveal() if isinstance(value, Secret) else value
            if text and len(text) >= 8:
                self.found.add(text)

    def collect(self, person: Person) -> None:
        """Every secret confsync holds right now, and the person's cookies."""
        world = self.world
        accounts = world.stack.accounts
        assert accounts is not None
        for grant in world.stack.store.list_grants(user=ALICE):
            self.add(accounts.grants.unseal(grant), grant.sealed_token)
        if accounts.vendor_tokens is not None:
            self.add(*(kept.token for kept in accounts.vendor_tokens._kept.values()))
        for client in world.stack.calendars._clients.values():
            made = client._made
            if made is not None:
                self.add(getattr(made, "token", None), getattr(made, "refresh_token", None))
        self.add(*person.http.cookies.values())


@pytest.fixture
def logged(world: AccountsWorld) -> Iterator[io.StringIO]:
    """Every line logged from here on, as the services write them; the global logging set back after."""
    stream = io.StringIO()
    hook = threading.excepthook
    configure_logging(replace(world.settings, log_format="json", log_level="info"), stream=stream)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the test's browser
    try:
        yield stream
    finally:
        threading.excepthook = hook
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()


def test_no_secret_reaches_a_log_line(world: AccountsWorld, logged: io.StringIO) -> None:
    secrets = Secrets(world)
    settings = world.settings
    secrets.add(settings.oauth_client_secret, settings.vendor_client_secret)
    key = Path(default_vault_key_file(settings.store_url) or "").read_bytes()
    secrets.add(base64.b64encode(key).decode(), key.hex())
    alice = Person(ALICE)
    try:
        token = world.id_token(ALICE)
        secrets.add(token)
        first = world.create(ALICE, ALICE, "first")
        link = first.json()["error"]["authenticationUrl"]
        secrets.add(link.partition("state=")[2])
        google = alice.follow(alice.submit(alice.open(link)))
        back = alice.submit(google, email=ALICE, decision="allow")
        secrets.add(back.headers["location"].partition("code=")[2].partition("&")[0])
        vendor = alice.follow(alice.open(back.headers["location"]))
        assert heading(alice.consent(vendor).text) == "Connected"
        secrets.collect(alice)

        event = world.new_event(ALICE, ALICE)
        conference = world.attach(ALICE, ALICE, event)
        world.calendar_as(ALICE).events().patch(calendarId=ALICE, eventId=event["id"], body={"summary": "v2"}).execute()
        world.wait_for(lambda: world.conference(conference).get("summary") == "v2", what="v2")
        secrets.collect(alice)
        world.provider.admin("POST", "/_sandbox/clock", {"advance_s": 7200})
        world.calendar_as(ALICE).events().patch(calendarId=ALICE, eventId=event["id"], body={"summary": "v3"}).execute()
        world.wait_for(lambda: world.conference(conference).get("summary") == "v3", what="v3 after a refresh")
        secrets.collect(alice)

        world.provider.admin("POST", f"/_sandbox/users/{ALICE}/revoke")
        world.calendar_as(ALICE).events().patch(calendarId=ALICE, eventId=event["id"], body={"summary": "v4"}).execute()
        world.wait_for(lambda: world.stack.store.count_held(ALICE) == 1, what="a held change")
        again = world.create(ALICE, ALICE, "later").json()["error"]["authenticationUrl"]
        assert heading(alice.connect(again).text) == "Connected"
        world.wait_for(lambda: world.conference(conference).get("summary") == "v4", what="v4 after the reconnect")
        secrets.collect(alice)

        page = alice.open(f"{world.url}/settings")
        signed_in = alice.follow(alice.consent(alice.follow(alice.submit(page))))
        secrets.collect(alice)
        assert heading(alice.submit(signed_in, form="/settings/disconnect").text) == "Disconnected"
    finally:
        alice.close()

    text = logged.getvalue()
    assert "grant saved" in text  # the run did log: the search below is over real lines
    assert len(secrets.found) >= 10
    leaked = sorted(secret[:12] + "..." for secret in secrets.found if secret in text)
    assert leaked == []
