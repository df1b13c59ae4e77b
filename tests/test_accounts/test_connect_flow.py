"""Users connect their Google calendar and their vendor account, and the add-on API acts for its
caller only: over real HTTP, against both sandboxes' OAuth servers (consent forms posted as a
browser without JavaScript posts them), with ``confsync serve all`` built as production builds it.

What a person sees is asserted by the page's heading; what confsync kept, by the store; what the
vendor did, by its own records (conference owners, its request journal)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from tests_support.accounts_world import AccountsWorld, Person, WorldFactory, heading

from confsync.store.records import GrantStatus, OAuthProvider

ALICE, BOB, MALLORY = "alice@example.com", "bob@example.com", "mallory@example.com"


@pytest.fixture
def world(accounts_world: WorldFactory) -> AccountsWorld:
    return accounts_world(ALICE, BOB, MALLORY)


@pytest.fixture
def people() -> Iterator[dict[str, Person]]:
    persons = {email: Person(email) for email in (ALICE, BOB, MALLORY)}
    yield persons
    for person in persons.values():
        person.close()


def authentication_url(answer: httpx.Response) -> str:
    """The add-on's AUTHENTICATION error: 403, and where the user connects."""
    assert answer.status_code == 403, answer.text
    error = answer.json()["error"]
    assert error["type"] == "AUTHENTICATION"
    url: str = error["authenticationUrl"]
    return url


def grants_of(world: AccountsWorld, email: str) -> dict[OAuthProvider, GrantStatus]:
    return {grant.provider: grant.status for grant in world.stack.store.list_grants(user=email)}


def connected(world: AccountsWorld, person: Person) -> None:
    url = authentication_url(world.create(person.email, person.email, "first"))
    assert heading(person.connect(url).text) == "Connected"


# -- connecting ---------------------------------------------------------------------------------


def test_a_user_without_a_vendor_account_connects_and_the_retry_creates_it_in_their_account(
    world: AccountsWorld, people: dict[str, Person]
) -> None:
    url = authentication_url(world.create(ALICE, ALICE, "evt1"))
    assert url.startswith(f"{world.url}/connect?state=")
    assert world.creates() == []  # nothing was created for a caller who has not connected
    alice = people[ALICE]

    confirm = alice.open(url)
    assert heading(confirm.text) == "Connect My Web Conference"
    assert ALICE in confirm.text
    done = alice.connect(url)

    assert done.status_code == 200
    assert heading(done.text) == "Connected"
    assert "add My Web Conference to your event again" in done.text
    assert grants_of(world, ALICE) == {
        OAuthProvider.GOOGLE: GrantStatus.ACTIVE,
        OAuthProvider.VENDOR: GrantStatus.ACTIVE,
    }
    retry = world.create(ALICE, ALICE, "evt1")
    assert retry.status_code == 200, retry.text
    assert world.conference(retry.json()["conferenceId"])["owner"] == ALICE  # in her vendor account


def test_googles_consent_asks_for_offline_access_and_the_calendar_scopes_with_pkce_for_the_named_user(
    world: AccountsWorld, people: dict[str, Person]
) -> None:
    alice = people[ALICE]
    start = alice.submit(alice.open(authentication_url(world.create(ALICE, ALICE, "evt1"))))
    assert start.status_code == 303
    query = parse_qs(urlparse(start.headers["location"]).query)
    assert query["access_type"] == ["offline"]
    assert query["login_hint"] == [ALICE]
    assert query["code_challenge_method"] == ["S256"]
    assert set(query["scope"][0].split()) == {
        "openid",
        "email",
        "https://www.googleapis.com/auth/calendar.events.readonly",
        "https://www.googleapis.com/auth/calendar.calendarlist.readonly",
    }
    cookie = start.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()


def test_declining_at_google_stores_nothing_and_the_link_cannot_be_used_again(
    world: AccountsWorld, people: dict[str, Person]
) -> None:
    alice = people[ALICE]
    url = authentication_url(world.create(ALICE, ALICE, "evt1"))
    google = alice.follow(alice.submit(alice.open(url)))

    declined = alice.consent(google, decision="deny")

    assert heading(declined.text) == "Not connected"
    assert "nothing was stored" in declined.text
    assert grants_of(world, ALICE) == {}
    assert heading(alice.open(url).text) == "This link was already used"
    authentication_url(world.create(ALICE, ALICE, "evt1"))  # still not connected


def test_declining_at_the_vendor_keeps_no_vendor_grant(world: AccountsWorld, people: dict[str, Person]) -> None:
    alice = people[ALICE]
    google = alice.follow(alice.submit(alice.open(authentication_url(world.create(ALICE, ALICE, "evt1")))))
    vendor = alice.follow(alice.consent(google))

    declined = alice.consent(vendor, decision="deny")

    assert heading(declined.text) == "My Web Conferencing is not connected"
    assert "Google Calendar stays connected" in declined.text  # what was stored is said
    assert OAuthProvider.VENDOR not in grants_of(world, ALICE)
    authentication_url(world.create(ALICE, ALICE, "evt1"))


def test_another_google_account_consenting_is_refused_and_nothing_is_stored(
    world: AccountsWorld, people: dict[str, Person]
) -> None:
    alice = people[ALICE]
    google = alice.follow(alice.submit(alice.open(authentication_url(world.create(ALICE, ALICE, "evt1")))))

    refused = alice.consent(google, as_=MALLORY)  # signed in to Google as someone else

    assert refused.status_code == 400
    assert heading(refused.text) == "Another Google account answered"
    assert ALICE in refused.text
    assert MALLORY in refused.text
    assert grants_of(world, ALICE) == {}
    assert grants_of(world, MALLORY) == {}


def test_a_replayed_link_is_refused_after_it_was_used(world: AccountsWorld, people: dict[str, Person]) -> None:
    url = authentication_url(world.create(ALICE, ALICE, "evt1"))
    assert heading(people[ALICE].connect(url).text) == "Connected"

    again = people[MALLORY].open(url)  # the link, copied from Alice's history
    assert heading(again.text) == "This link was already used"
    assert "<form" not in again.text  # nothing to press
    state = parse_qs(urlparse(url).query)["state"][0]
    posted = people[MALLORY].http.post(f"{world.url}/connect/start", data={"state": state})
    assert posted.status_code == 400
    assert heading(posted.text) == "This link was already used"
    assert grants_of(world, MALLORY) == {}


def test_the_consent_answer_in_another_browser_is_refused_and_the_first_browser_can_finish(
    world: AccountsWorld, people: dict[str, Person]
) -> None:
    alice = people[ALICE]
    google = alice.follow(alice.submit(alice.open(authentication_url(world.create(ALICE, ALICE, "evt1")))))
    back = alice.submit(google, email=ALICE, decision="allow")
    callback = back.headers["location"]

    elsewhere = people[MALLORY].open(callback)  # the redirect back, opened where the flow did not start

    assert elsewhere.status_code == 400
    assert heading(elsewhere.text) == "Finish in the browser where you started"
    assert grants_of(world, ALICE) == {}
    vendor = alice.follow(alice.open(callback))
    assert heading(alice.consent(vendor).text) == "Connected"


def test_a_tampered_link_is_refused(world: AccountsWorld, people: dict[str, Person]) -> None:
    url = authentication_url(world.create(ALICE, ALICE, "evt1"))
    tampered = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")

    page = people[ALICE].open(tampered)

    assert page.status_code == 400
    assert heading(page.text) == "This link is not valid"


def test_connect_pages_are_plain_html_that_nothing_can_frame(world: AccountsWorld, people: dict[str, Person]) -> None:
    page = people[ALICE].open(authentication_url(world.create(ALICE, ALICE, "evt1")))

    assert page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "same-origin"  # the link never leaves for Google or the vendor
    assert '<html lang="en">' in page.text


# -- the add-on acts for its caller only ----------------------------------------------------------


def test_mallory_cannot_attach_a_conference_to_bobs_calendar(world: AccountsWorld, people: dict[str, Person]) -> None:
    connected(world, people[MALLORY])
    before = (world.stack.store.get_calendar(BOB), len(world.creates()))

    answer = world.create(MALLORY, BOB, "bobs-event")

    assert answer.status_code == 403
    assert answer.json()["error"]["reason"] == "no_write_access"
    assert (world.stack.store.get_calendar(BOB), len(world.creates())) == before  # nothing changed anywhere


def test_a_reader_of_a_shared_calendar_may_not_attach_but_its_owner_may(
    world: AccountsWorld, people: dict[str, Person]
) -> None:
    connected(world, people[BOB])
    connected(world, people[MALLORY])
    rule = {"role": "reader", "scope": {"type": "user", "value": MALLORY}}
    world.calendar_as(BOB).acl().insert(calendarId=BOB, body=rule).execute()

    assert world.create(MALLORY, BOB, "shared").json()["error"]["reason"] == "no_write_access"
    bobs = world.create(BOB, BOB, "shared")
    assert bobs.status_code == 200
    assert world.conference(bobs.json()["conferenceId"])["owner"] == BOB


# -- the link is not enough: the browser must be the user's ----------------------------------------


def test_someone_else_holding_a_connected_users_link_must_still_sign_in_as_that_user(
    world: AccountsWorld, people: dict[str, Person]
) -> None:
    connected(world, people[ALICE])
    before = world.stack.store.get_grant(ALICE, OAuthProvider.VENDOR)
    accounts = world.stack.accounts
    assert accounts is not None
    link = accounts.connect_url(ALICE, "example.com")  # Alice's next link, copied by Mallory
    mallory = people[MALLORY]

    google = mallory.follow(mallory.submit(mallory.open(link)))
    scopes = parse_qs(urlparse(str(google.url)).query)["scope"][0].split()
    assert sorted(scopes) == ["email", "openid"]  # Alice's calendars are readable: only "who are you?"
    refused = mallory.consent(google, as_=MALLORY)

    assert heading(refused.text) == "Another Google account answered"
    assert world.stack.store.get_grant(ALICE, OAuthProvider.VENDOR) == before  # her vendor account stays hers
    assert grants_of(world, MALLORY) == {}


def test_a_connect_start_posted_from_another_site_is_refused_and_the_link_stays_unused(
    world: AccountsWorld, people: dict[str, Person]
) -> None:
    url = authentication_url(world.create(MALLORY, MALLORY, "evt1"))
    state = parse_qs(urlparse(url).query)["state"][0]

    planted = people[ALICE].http.post(
        f"{world.url}/connect/start", data={"state": state}, headers={"Sec-Fetch-Site": "cross-site"}
    )

    assert planted.status_code == 403
    assert "set-cookie" not in planted.headers
    assert heading(people[MALLORY].open(url).text) == "Connect My Web Conference"  # not used up


def test_a_writer_may_not_claim_a_calendar_nobody_owns_yet(world: AccountsWorld, people: dict[str, Person]) -> None:
    connected(world, people[MALLORY])
    rule = {"role": "writer", "scope": {"type": "user", "value": MALLORY}}
    world.calendar_as(BOB).acl().insert(calendarId=BOB, body=rule).execute()

    answer = world.create(MALLORY, BOB, "bobs-event")

    assert answer.status_code == 403
    assert answer.json()["error"]["reason"] == "owner_first"
    assert world.stack.store.get_calendar(BOB) is None


def test_the_primary_alias_is_refused_as_a_calendar_id(world: AccountsWorld, people: dict[str, Person]) -> None:
    connected(world, people[ALICE])

    answer = world.create(ALICE, "primary", "evt1")

    assert answer.status_code == 400
    assert "primary" in answer.json()["error"]["message"]
