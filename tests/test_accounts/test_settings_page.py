"""The settings page the add-on's createSettingsUrlFunction opens: sign in with Google, see what is
connected, reconnect or disconnect; every change is a POST carrying the session's csrf token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from tests_support.accounts_world import AccountsWorld, Person, WorldFactory, heading

ALICE, MALLORY = "alice@example.com", "mallory@example.com"


@pytest.fixture
def world(accounts_world: WorldFactory) -> AccountsWorld:
    return accounts_world(ALICE, MALLORY)


@pytest.fixture
def alice(world: AccountsWorld) -> Iterator[Person]:
    person = Person(ALICE)
    url = world.create(ALICE, ALICE, "first").json()["error"]["authenticationUrl"]
    assert heading(person.connect(url).text) == "Connected"
    yield person
    person.close()


def signed_in(world: AccountsWorld, person: Person, *, as_: str | None = None) -> httpx.Response:
    """Open the settings page, sign in with Google, and land on the settings page again."""
    page = person.open(f"{world.url}/settings")
    assert heading(page.text) == "My Web Conference settings"
    google = person.follow(person.submit(page))
    query = parse_qs(urlparse(str(google.url)).query)
    assert set(query["scope"][0].split()) == {"openid", "email"}  # signing in asks for nothing more
    assert query["code_challenge_method"] == ["S256"]
    back = person.consent(google, as_=as_)
    return person.follow(back)


def field(page: httpx.Response, name: str) -> str:
    found = re.search(rf"<dd id='{name}'>([^<]*)</dd>", page.text)
    assert found is not None, page.text
    return found[1]


def test_signed_out_the_page_offers_only_a_sign_in(world: AccountsWorld) -> None:
    page = httpx.get(f"{world.url}/settings")

    assert page.status_code == 200
    assert "Sign in with Google" in page.text
    assert "Disconnect" not in page.text


def test_a_signed_in_user_sees_what_is_connected(world: AccountsWorld, alice: Person) -> None:
    page = signed_in(world, alice)

    assert page.status_code == 200
    assert f"Signed in as <strong>{ALICE}</strong>" in page.text
    assert field(page, "google") == "connected"
    assert field(page, "vendor") == "connected"
    assert "csrf" in page.text


def test_the_page_shows_the_account_google_signed_in_not_another(world: AccountsWorld, alice: Person) -> None:
    mallory = Person(MALLORY)
    try:
        page = signed_in(world, mallory)
    finally:
        mallory.close()

    assert f"Signed in as <strong>{MALLORY}</strong>" in page.text
    assert field(page, "vendor") == "not connected"
    assert ALICE not in page.text


def test_disconnect_needs_the_csrf_token_then_offboards(world: AccountsWorld, alice: Person) -> None:
    page = signed_in(world, alice)

    forged = alice.http.post(f"{world.url}/settings/disconnect", data={})
    assert forged.status_code == 403
    assert world.stack.store.get_user(ALICE) is not None

    done = alice.submit(page, form="/settings/disconnect")
    assert heading(done.text) == "Disconnected"
    assert world.stack.store.get_user(ALICE) is None
    assert world.stack.store.list_grants(user=ALICE) == []


def test_reconnect_starts_the_connect_flow_for_the_signed_in_user(world: AccountsWorld, alice: Person) -> None:
    page = signed_in(world, alice)

    reconnect = alice.submit(page, form="/settings/reconnect")

    assert reconnect.status_code == 303
    link = reconnect.headers["location"]
    assert link.startswith(f"{world.url}/connect?state=")
    assert heading(alice.connect(link).text) == "Connected"
