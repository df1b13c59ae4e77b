"""A user leaves: ``DELETE /v1/me`` from the add-on, or ``confsync users disconnect EMAIL`` by an
operator. Their channels stop, their calendars and links are forgotten, their grants are revoked
at Google and at the vendor and deleted; their conferences stay in their vendor account."""

from __future__ import annotations

import json

import pytest
from tests_support.accounts_world import AccountsWorld, WorldFactory
from tests_support.cli import confsync_env, run_confsync

from confsync.errors import Disconnected
from confsync.settings import Secret
from confsync.store.records import OAuthProvider

ALICE, BOB = "alice@example.com", "bob@example.com"


@pytest.fixture
def world(accounts_world: WorldFactory) -> AccountsWorld:
    return accounts_world(ALICE, BOB)


def connect(world: AccountsWorld, email: str) -> str:
    """``email`` connects and attaches a conference to an event of their calendar; its id."""
    world.connect(email)
    return world.attach(email, email, world.new_event(email, email))


def live_channels(world: AccountsWorld, calendar_id: str) -> list[dict[str, object]]:
    channels: list[dict[str, object]] = world.calendar.admin("GET", "/_sandbox/channels")
    return [c for c in channels if c.get("calendarId", c.get("calendar_id")) == calendar_id]


def refresh_tokens(world: AccountsWorld, email: str) -> dict[OAuthProvider, Secret]:
    accounts = world.stack.accounts
    assert accounts is not None
    return {grant.provider: accounts.grants.unseal(grant) for grant in world.stack.store.list_grants(user=email)}


def still_work(world: AccountsWorld, email: str, tokens: dict[OAuthProvider, Secret]) -> set[OAuthProvider]:
    """The providers at which these refresh tokens still get an access token."""
    accounts = world.stack.accounts
    assert accounts is not None
    clients = {OAuthProvider.GOOGLE: accounts.google, OAuthProvider.VENDOR: accounts.vendor}
    working = set()
    for provider, token in tokens.items():
        client = clients[provider]
        assert client is not None
        try:
            client.refresh(token, user=email)
        except Disconnected:
            continue
        working.add(provider)
    return working


def test_delete_me_disconnects_the_caller_and_leaves_their_conferences_at_the_vendor(world: AccountsWorld) -> None:
    conference = connect(world, ALICE)
    bobs = connect(world, BOB)
    assert live_channels(world, ALICE)
    tokens = refresh_tokens(world, ALICE)
    assert still_work(world, ALICE, tokens) == set(OAuthProvider)

    answer = world.http.delete(f"{world.url}/v1/me", headers={"Authorization": f"Bearer {world.id_token(ALICE)}"})

    assert answer.status_code == 200, answer.text
    report = answer.json()["disconnected"]
    assert report["user"] == ALICE
    assert report["calendars"] == 1
    assert report["channels_stopped"] >= 1
    assert report["links_forgotten"] >= 1
    assert report["grants_forgotten"] == 2
    assert still_work(world, ALICE, tokens) == set()  # revoked at Google and at the vendor
    store = world.stack.store
    assert store.get_user(ALICE) is None
    assert store.list_grants(user=ALICE) == []
    assert store.get_calendar(ALICE) is None
    assert store.live_links(ALICE) == []
    assert world.conference(conference)["state"] == "active"  # it is in Alice's own account
    assert not [c for c in live_channels(world, ALICE) if c.get("state", "live") == "live"]
    # Bob is untouched.
    assert {grant.provider.value for grant in store.list_grants(user=BOB)} == {"google", "vendor"}
    assert world.conference(bobs)["state"] == "active"
    # Alice's next add-on use asks her to connect again.
    assert world.create(ALICE, ALICE, "later").json()["error"]["type"] == "AUTHENTICATION"


def test_delete_me_needs_a_valid_id_token(world: AccountsWorld) -> None:
    connect(world, ALICE)

    answer = world.http.delete(f"{world.url}/v1/me", headers={"Authorization": "Bearer not-a-token"})

    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "AUTHENTICATION"
    assert world.stack.store.get_user(ALICE) is not None


def test_the_operator_lists_users_and_disconnects_one(world: AccountsWorld) -> None:
    connect(world, ALICE)
    connect(world, BOB)
    tokens = refresh_tokens(world, ALICE)
    settings = world.settings
    env = confsync_env(
        CONFSYNC_STORE_URL=settings.store_url,
        CONFSYNC_OAUTH_CLIENT_ID=settings.oauth_client_id or "",
        CONFSYNC_OAUTH_CLIENT_SECRET=settings.oauth_client_secret.reveal() if settings.oauth_client_secret else "",
        CONFSYNC_VENDOR_CLIENT_ID=settings.vendor_client_id or "",
        CONFSYNC_VENDOR_CLIENT_SECRET=settings.vendor_client_secret.reveal() if settings.vendor_client_secret else "",
        CONFSYNC_PROVIDER_URL=settings.provider_url or "",
        CONFSYNC_CALENDAR_API_ENDPOINT=settings.calendar_api_endpoint or "",
        CONFSYNC_GOOGLE_TOKEN_URL=settings.google_token_url,
        CONFSYNC_GOOGLE_REVOKE_URL=settings.google_revoke_url,
        CONFSYNC_PUBLIC_URL=world.url,
        CONFSYNC_TRANSPORT="memory",
    )

    listed = run_confsync("users", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert f"{ALICE}  google active  vendor active  held 0" in listed.stdout
    assert "2 user(s)" in listed.stdout

    missing = run_confsync("users", "disconnect", "nobody@example.com", "--yes", env=env)
    assert missing.returncode == 1
    assert "no user nobody@example.com" in missing.stderr

    done = run_confsync("users", "disconnect", ALICE, "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert f"disconnected {ALICE}: 1 calendar(s)" in done.stdout
    assert "2 of 2 grant(s) revoked" in done.stdout
    after = run_confsync("users", "list", "--json", env=env)
    assert [row["email"] for row in json.loads(after.stdout)] == [BOB]
    assert still_work(world, ALICE, tokens) == set()
