"""The add-on API acts for its caller only (docs/ARCHITECTURE.md, "Identity and ownership"):
through the real HTTP API, with Google-style ID tokens, against the calendar and provider
sandboxes and a SQLite store. Every refusal comes before anything changes: no store write and
no create at the conferencing service (its journal says)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests_support import FAST_RETRY, PROVIDER_KEY, RunningCalendar, RunningProvider
from tests_support.oidc import GOOGLE_CERT, sign

from confsync.ports import Store
from confsync.serving import ServedApp
from confsync.settings import Secret, Settings
from confsync.store import Link
from ingest.addon_access import RateLimiter
from sandbox.calendar import create_app as create_calendar_app
from sandbox.calendar.server import build_sandbox as build_calendar
from sandbox.provider import create_app as create_provider_app
from sandbox.provider.server import build_sandbox as build_provider
from stack.roles import Role
from stack.root import Stack
from stack.services import build_service

AUDIENCE = "1234-addon.apps.googleusercontent.com"
BOB, MALLORY = "bob@example.com", "mallory@example.com"


@dataclass
class AddonApi:
    url: str
    store: Store
    calendar: RunningCalendar
    provider: RunningProvider

    def create(
        self,
        who: str,
        calendar_id: str,
        event_id: str = "evt1",
        request_id: str = "req-1",
        *,
        hd: str | None = "example.com",
    ) -> httpx.Response:
        claims: dict[str, Any] = {"aud": AUDIENCE, "email": who, **({"hd": hd} if hd else {})}
        body = {
            "calendarId": calendar_id,
            "eventId": event_id,
            "requestId": request_id,
            "event": {"summary": "Planning", "updated": "2026-12-01T09:00:00Z"},
        }
        headers = {"Authorization": f"Bearer {sign(**claims)}"}
        return httpx.post(f"{self.url}/v1/conferences", json=body, headers=headers, timeout=20)

    def creates(self) -> list[int]:
        """The status of every create the conferencing service received."""
        return [e["status"] for e in self.provider.journal() if e["method"] == "POST"]


Factory = Callable[..., AddonApi]


async def google_certs(_request: Request) -> Response:
    """Where the service fetches the keys of the ID tokens these tests sign (Google's shape)."""
    return JSONResponse({"google-kid": GOOGLE_CERT})


@pytest.fixture
def addon_api(tmp_path: Path, pubsub_emulator_host: str) -> Iterator[Factory]:
    """The ingest routes as production builds them (a verified ID token, no dev token), with
    Settings overrides; the sandboxes serve Calendar and the conferencing service."""
    closers: list[Callable[[], None]] = []

    def start(**overrides: Any) -> AddonApi:
        calendar_sandbox = build_calendar()
        calendar_sandbox.retry = FAST_RETRY
        provider_served = ServedApp(create_provider_app(build_provider(api_key=PROVIDER_KEY))).start()
        calendar_served = ServedApp(create_calendar_app(calendar_sandbox)).start()
        closers.extend([provider_served.stop, calendar_served.stop])
        certs = ServedApp(Starlette(routes=[Route("/certs", google_certs)])).start()
        closers.append(certs.stop)
        settings = Settings(
            project_id="confsync-test",  # the ingest service publishes to Pub/Sub (here the emulator)
            google_certs_url=f"{certs.url}/certs",
            store_url=f"sqlite:///{tmp_path / f'state-{len(closers)}.sqlite'}",
            provider_url=provider_served.url,
            provider_api_key=Secret(PROVIDER_KEY),
            calendar_api_endpoint=f"{calendar_served.url}/calendar/v3/",
            webhook_url="https://ingest.example/notifications",
            addon_audience=AUDIENCE,
            lag_repair_interval_s=0,
            channel_ttl_s=3600,
            delivery="push",  # as on Cloud Run: channel work reaches ingest by push, not by a pull worker
            push_audience=AUDIENCE,
            push_service_account="push@confsync-test.iam.gserviceaccount.com",
            **overrides,
        )
        stack = Stack(settings)
        service = build_service(settings, Role.INGEST, stack=stack)  # as `confsync serve ingest` builds it
        closers.append(lambda: service.stop(5))
        served = ServedApp(service.app).start()
        closers.append(served.stop)
        calendar = RunningCalendar(calendar_sandbox, calendar_served.url)
        closers.append(calendar.close)
        for owner in (BOB, MALLORY):
            calendar.admin("POST", "/_sandbox/calendars", {"id": owner, "owner": owner})
        return AddonApi(served.url, stack.store, calendar, RunningProvider(provider_served.url))

    yield start
    for close in reversed(closers):
        close()


def refused(answer: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    """The error body of a refusal (never a 500): the API's shape, with a reason to act on."""
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert error["reason"] == reason
    assert error["type"] == ("TEMPORARY" if status == 429 else "PERMANENT")
    assert error["message"]
    return error


# -- ownership -------------------------------------------------------------------------------------


def test_mallory_cannot_take_over_bobs_calendar(addon_api: Factory) -> None:
    api = addon_api()
    bobs = api.create(BOB, BOB)
    assert bobs.status_code == 200
    before = (api.store.get_calendar(BOB), api.store.live_links(BOB), api.creates())
    assert before[0].subject == BOB  # type: ignore[union-attr]

    for event_id, request_id in (("evt1", "req-m1"), ("evt1", "req-1"), ("evt2", "req-m2")):
        error = refused(api.create(MALLORY, BOB, event_id, request_id), 403, "calendar_of_another_user")
        assert "another user" in error["message"]

    assert (api.store.get_calendar(BOB), api.store.live_links(BOB), api.creates()) == before, "nothing changed"
    assert api.store.get_link(BOB, "evt2") is None
    assert api.creates() == [201], "the conferencing service received no create for Mallory"
    assert api.create(MALLORY, MALLORY).status_code == 200, "her own calendar is hers"
    assert api.store.get_calendar(MALLORY).subject == MALLORY  # type: ignore[union-attr]


def test_the_first_user_claims_a_calendar_nobody_owns_yet(addon_api: Factory) -> None:
    api = addon_api()
    api.store.ensure_calendar(BOB)  # known (say, from a backfill) but owned by nobody
    assert api.create(BOB, BOB).status_code == 200
    assert api.store.get_calendar(BOB).subject == BOB  # type: ignore[union-attr]
    assert api.create(BOB.upper(), BOB, "evt2", "req-2").status_code == 200, "an email's case is no other user"
    refused(api.create(MALLORY, BOB, "evt3", "req-3"), 403, "calendar_of_another_user")


def test_of_users_racing_for_a_new_calendar_exactly_one_owns_it(addon_api: Factory) -> None:
    api = addon_api()
    users = [f"user{n}@example.com" for n in range(8)]
    start = threading.Barrier(len(users))
    answers: dict[str, httpx.Response] = {}

    def race(user: str) -> None:
        start.wait()
        answers[user] = api.create(user, "shared@example.com", f"evt-{user}", "req")

    threads = [threading.Thread(target=race, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (winner,) = [user for user, answer in answers.items() if answer.status_code == 200]
    for user, answer in answers.items():
        if user != winner:
            refused(answer, 403, "calendar_of_another_user")
    assert api.store.get_calendar("shared@example.com").subject == winner  # type: ignore[union-attr]
    assert [link.event_id for link in api.store.live_links("shared@example.com")] == [f"evt-{winner}"]


# -- links -----------------------------------------------------------------------------------------


def test_a_live_link_is_never_overwritten_and_a_replay_gets_its_conference(addon_api: Factory) -> None:
    api = addon_api()
    first = api.create(BOB, BOB, "evt1", "req-1").json()["conferenceId"]
    link = api.store.get_link(BOB, "evt1")

    error = refused(api.create(BOB, BOB, "evt1", "req-2"), 409, "event_has_another_conference")
    assert error["conferenceId"] == first
    assert api.store.get_link(BOB, "evt1") == link, "the link is unchanged"
    assert api.creates() == [201], "no second conference was created"

    replay = api.create(BOB, BOB, "evt1", "req-1")
    assert replay.status_code == 200
    assert replay.json()["conferenceId"] == first
    assert api.store.get_link(BOB, "evt1") == link
    assert api.creates() == [201, 200], "the replay created nothing"

    api.store.mark_link_deleted(BOB, "evt1")  # the conference was removed from the event
    again = api.create(BOB, BOB, "evt1", "req-3")
    assert again.status_code == 200
    assert again.json()["conferenceId"] != first
    assert api.store.get_link(BOB, "evt1").conference_id == again.json()["conferenceId"]  # type: ignore[union-attr]


def test_a_link_a_listing_made_is_not_overwritten_either(addon_api: Factory) -> None:
    api = addon_api()
    api.store.claim_calendar(BOB, BOB)
    api.store.upsert_link(Link(BOB, "evt1", "cnf_seen_in_calendar"))
    error = refused(api.create(BOB, BOB), 409, "event_has_another_conference")
    assert error["conferenceId"] == "cnf_seen_in_calendar"
    assert api.creates() == []


# -- idempotency -----------------------------------------------------------------------------------


def test_a_request_id_is_the_callers_own(addon_api: Factory) -> None:
    """Mallory reusing Bob's requestId gets her own conference, never Bob's (nor its passcode)."""
    api = addon_api()
    bobs = api.create(BOB, BOB, "evt1", "shared-id").json()
    mallorys = api.create(MALLORY, MALLORY, "evt1", "shared-id").json()
    assert mallorys["conferenceId"] != bobs["conferenceId"]
    assert mallorys["entryPoints"] != bobs["entryPoints"]
    assert api.creates() == [201, 201]
    assert api.create(BOB, BOB, "evt1", "shared-id").json()["conferenceId"] == bobs["conferenceId"]


def test_a_request_id_reused_for_another_event_makes_another_conference(addon_api: Factory) -> None:
    """One conference never ends up linked to two events (each would send it commands)."""
    api = addon_api()
    first = api.create(BOB, BOB, "evt1", "req-1").json()["conferenceId"]
    second = api.create(BOB, BOB, "evt2", "req-1").json()["conferenceId"]
    assert first != second


# -- domains ---------------------------------------------------------------------------------------


def test_only_callers_of_an_allowed_domain_get_through(addon_api: Factory) -> None:
    api = addon_api(allowed_domains=("example.com", "gmail.com"))
    assert api.create(BOB, BOB, hd="example.com").status_code == 200
    assert api.create("carol@gmail.com", "carol@gmail.com", request_id="req-c", hd=None).status_code == 200, (
        "a gmail.com address"
    )

    error = refused(api.create(MALLORY, MALLORY, hd="evil.test"), 403, "domain_not_allowed")
    assert "evil.test" in error["message"]
    # no hd: a consumer account on someone's domain proves no membership of it
    refused(api.create(MALLORY, MALLORY, hd=None), 403, "domain_not_allowed")
    assert api.store.get_calendar(MALLORY) is None, "refused before anything was written"
    assert api.creates() == [201, 201]


def test_an_empty_domain_list_admits_any_domain(addon_api: Factory) -> None:
    api = addon_api()
    assert api.create(MALLORY, MALLORY, hd="elsewhere.test").status_code == 200
    assert api.create(BOB, BOB, hd=None).status_code == 200


# -- rate ------------------------------------------------------------------------------------------


def test_a_caller_over_the_rate_is_told_when_to_come_back(addon_api: Factory) -> None:
    api = addon_api(addon_rate_per_min=2)
    assert [api.create(BOB, BOB, f"evt{n}", f"req-{n}").status_code for n in range(2)] == [200, 200]
    over = api.create(BOB, BOB, "evt9", "req-9")
    refused(over, 429, "rate_limited")
    assert 1 <= int(over.headers["Retry-After"]) <= 30  # one token comes back every 30 s
    assert api.store.get_link(BOB, "evt9") is None
    assert api.creates() == [201, 201]
    assert api.create(MALLORY, MALLORY).status_code == 200, "each caller has a bucket of their own"


def test_the_bucket_refills_with_time() -> None:
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0], max_tracked=1)
    assert all(limiter.take("bob") is None for _ in range(60))
    assert limiter.take("bob") == pytest.approx(1.0)
    now[0] += 0.5
    assert limiter.take("bob") == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.take("bob") is None
    assert limiter.take("mallory") is None, "another caller's bucket is full"
    now[0] += 3600
    assert limiter.take("carol") is None  # past max_tracked: the full buckets are forgotten
    assert limiter.take("bob") is None
