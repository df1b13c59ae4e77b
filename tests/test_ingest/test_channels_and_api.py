"""Channel lifecycle against the calendar sandbox, and the add-on's create-conference API
against the provider and calendar sandboxes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from tests_support import event_body

from confsync.settings import Secret
from confsync.store import CalendarStatus, ChannelRecord, ChannelState

CAL = "alice@example.com"
DEV = {"Authorization": "Bearer dev-token-for-tests"}


def sandbox_channels(ingest) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {view["id"]: view["state"] for view in ingest.calendar.admin("GET", "/_sandbox/channels")}


def test_ensure_opens_one_channel_with_googles_expiration(ingest) -> None:  # type: ignore[no-untyped-def]
    ingest.calendar.service().events().insert(calendarId=CAL, body=event_body("x")).execute()
    first = ingest.channels.ensure(CAL)
    again = ingest.channels.ensure(CAL)
    assert again.channel_id == first.channel_id
    (view,) = ingest.calendar.admin("GET", "/_sandbox/channels")
    assert view["id"] == first.channel_id
    assert int(first.expiration.timestamp() * 1000) == int(view["expiration"])
    assert first.token.reveal() != "", "a random per-channel token"
    assert first.resource_id == view["resourceId"]


def test_renewal_opens_the_new_channel_before_stopping_the_old(ingest) -> None:  # type: ignore[no-untyped-def]
    ingest.calendar.service().events().insert(calendarId=CAL, body=event_body("x")).execute()
    old = ingest.channels.ensure(CAL)
    report = ingest.channels.renew(timedelta(hours=2))  # the channel asked for a 1 h TTL
    assert report.renewed == [CAL]
    (new,) = ingest.store.live_channels(CAL)
    assert new.channel_id != old.channel_id
    assert ingest.store.get_channel(old.channel_id).state is ChannelState.STOPPED
    assert sandbox_channels(ingest) == {old.channel_id: "stopped", new.channel_id: "live"}
    calls = [(e["method"], e["path"]) for e in ingest.calendar.journal() if "watch" in e["path"] or "stop" in e["path"]]
    assert calls == [
        ("POST", "/calendar/v3/calendars/alice@example.com/events/watch"),
        ("POST", "/calendar/v3/calendars/alice@example.com/events/watch"),
        ("POST", "/calendar/v3/channels/stop"),
    ], "watch first, stop after: never a moment without a live channel"


def test_renewal_leaves_channels_that_are_not_expiring_alone(ingest) -> None:  # type: ignore[no-untyped-def]
    ingest.calendar.service().events().insert(calendarId=CAL, body=event_body("x")).execute()
    channel = ingest.channels.ensure(CAL)
    assert ingest.channels.renew(timedelta(minutes=5)).renewed == []
    assert [c.channel_id for c in ingest.store.live_channels(CAL)] == [channel.channel_id]


def test_a_calendar_that_is_gone_is_disconnected_and_nothing_is_deleted(ingest) -> None:  # type: ignore[no-untyped-def]
    ingest.store.add_channel(
        ChannelRecord("chan-ghost", "ghost@example.com", "res", Secret("t"), datetime.now(UTC) + timedelta(minutes=30))
    )
    report = ingest.channels.renew(timedelta(hours=1))
    assert report.gone == ["ghost@example.com"]
    state = ingest.store.get_calendar("ghost@example.com")
    assert state.status is CalendarStatus.DISCONNECTED  # lost access: its owner is asked to reconnect
    assert "404" in (state.last_error or "")
    assert ingest.store.live_channels("ghost@example.com") == []
    assert ingest.published(0) == []  # no reconciliation: nothing of its conferences is touched
    assert ingest.channels.renew(timedelta(hours=1)).gone == [], "its renewal stops"


def test_stop_by_calendar_and_the_renew_route(ingest) -> None:  # type: ignore[no-untyped-def]
    ingest.calendar.service().events().insert(calendarId=CAL, body=event_body("x")).execute()
    channel = ingest.channels.ensure(CAL)
    answer = httpx.post(f"{ingest.url}/tasks/renew-channels?before=7200", timeout=30)
    assert answer.status_code == 200
    assert answer.json() == {"calendars": 1, "more": False}, "one work item, handled by ingest's channel worker"
    deadline = time.monotonic() + 20
    while ingest.store.get_channel(channel.channel_id).state is ChannelState.LIVE:  # stopped once renewed
        assert time.monotonic() < deadline, "the fanned-out renewal never happened"
        time.sleep(0.05)
    stopped = ingest.channels.stop(calendar_id=CAL)
    assert len(stopped) == 1
    assert stopped[0] != channel.channel_id
    assert ingest.store.live_channels(CAL) == []
    assert set(sandbox_channels(ingest).values()) == {"stopped"}


# -- the add-on's API ---------------------------------------------------------------------------


def create(ingest, request_id: str = "req-1", headers: dict[str, str] | None = None, **body: object) -> httpx.Response:  # type: ignore[no-untyped-def]
    payload = {
        "calendarId": CAL,
        "eventId": "evt1",
        "requestId": request_id,
        "event": {
            "summary": "Planning",
            "start": {"dateTime": "2026-12-01T10:00:00+01:00"},
            "end": {"dateTime": "2026-12-01T11:00:00+01:00"},
            "attendees": [{"email": "bob@example.com"}],
            "organizer": {"email": CAL},
        },
    }
    payload.update(body)
    return httpx.post(
        f"{ingest.url}/v1/conferences", json=payload, headers=DEV if headers is None else headers, timeout=20
    )


def test_a_conference_is_created_linked_and_its_calendar_watched(ingest) -> None:  # type: ignore[no-untyped-def]
    ingest.calendar.admin("POST", "/_sandbox/calendars", {"id": CAL})
    answer = create(ingest)
    assert answer.status_code == 200
    data = answer.json()
    conference_id = data["conferenceId"]
    assert data["conferenceSolution"] == {
        "key": {"type": "addOn"},
        "name": "My Web Conference",
        "iconUri": "https://mywebconf.test/icon.png",
    }
    video, phone = data["entryPoints"]
    assert video["entryPointType"] == "video"
    assert video["uri"].endswith(conference_id)
    assert video["passcode"]
    assert phone["uri"].startswith("tel:+")
    assert phone["pin"]
    assert data["parameters"]["addOnParameters"]["parameters"]["adminEmail"] == "admin@mywebconf.test"
    assert data["notes"]
    assert ingest.store.get_link(CAL, "evt1").conference_id == conference_id
    assert len(ingest.store.live_channels(CAL)) == 1


CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("trace_header", "continued"),
    [
        ({"traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"}, True),
        ({"traceparent": f"00-{CALLER_TRACE.upper()}-00F067AA0BA902B7-01"}, False),  # W3C ids are lowercase
        ({"traceparent": "00-xyz"}, False),
        ({"X-Cloud-Trace-Context": "nonsense/1;o=1"}, False),
    ],
    ids=["traceparent", "uppercase", "garbage", "cloud-garbage"],
)
def test_the_conference_is_created_in_the_callers_trace_and_a_bad_trace_header_is_ignored(  # type: ignore[no-untyped-def]
    ingest, trace_header: dict[str, str], continued: bool
) -> None:
    ingest.calendar.admin("POST", "/_sandbox/calendars", {"id": CAL})
    answer = create(ingest, headers={**DEV, **trace_header})
    assert answer.status_code == 200, "a trace header is never a reason to refuse"
    (post,) = [e for e in ingest.provider.journal() if e["method"] == "POST"]
    trace_id = post["traceparent"].split("-")[1]
    assert (trace_id == CALLER_TRACE) is continued, "the provider's create call joins the caller's trace"
    assert len(trace_id) == 32
    assert int(trace_id, 16) != 0


def test_a_retried_request_returns_the_same_conference(ingest) -> None:  # type: ignore[no-untyped-def]
    ingest.calendar.admin("POST", "/_sandbox/calendars", {"id": CAL})
    first, again = create(ingest, "req-same"), create(ingest, "req-same")
    assert first.json()["conferenceId"] == again.json()["conferenceId"]
    assert [e["status"] for e in ingest.provider.journal() if e["method"] == "POST"] == [201, 200]


def test_a_conferencing_login_problem_is_an_authentication_error(ingest) -> None:  # type: ignore[no-untyped-def]
    ingest.provider.admin("POST", "/_sandbox/faults", {"path": "/v1/conferences", "status": 401, "count": 1})
    answer = create(ingest)
    assert answer.status_code == 403
    assert answer.json()["error"]["type"] == "AUTHENTICATION"


def test_a_busy_conferencing_service_is_a_temporary_error(ingest) -> None:  # type: ignore[no-untyped-def]
    ingest.provider.admin("POST", "/_sandbox/faults", {"path": "/v1/conferences", "status": 503, "count": 1})
    answer = create(ingest)
    assert answer.status_code == 503
    assert answer.json()["error"]["type"] == "TEMPORARY"
    assert create(ingest).status_code == 200, "the retry succeeds"


def test_a_refusal_by_the_conferencing_service_is_permanent(ingest) -> None:  # type: ignore[no-untyped-def]
    ingest.provider.admin("POST", "/_sandbox/faults", {"path": "/v1/conferences", "status": 400, "count": 1})
    answer = create(ingest)
    assert answer.status_code == 502
    assert answer.json()["error"]["type"] == "PERMANENT"


def test_a_bad_or_missing_token_is_401_and_creates_nothing(ingest) -> None:  # type: ignore[no-untyped-def]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic ZGV2"}):
        answer = create(ingest, headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"]["type"] == "AUTHENTICATION"
    assert ingest.provider.journal() == []


def test_a_malformed_request_is_a_400_naming_the_field(ingest) -> None:  # type: ignore[no-untyped-def]
    answer = create(ingest, eventId="")
    assert answer.status_code == 400
    assert "eventId" in answer.json()["error"]["message"]
    answer = create(ingest, event={"start": {"dateTime": "tomorrow"}})
    assert answer.status_code == 400
    assert "event.start" in answer.json()["error"]["message"]
    answer = create(ingest, event={"updated": "yesterday"})
    assert answer.status_code == 400
    assert "event.updated" in answer.json()["error"]["message"]
    assert ingest.provider.journal() == []


def _raw_create(ingest, body: bytes) -> httpx.Response:  # type: ignore[no-untyped-def]
    headers = {**DEV, "Content-Type": "application/json"}
    return httpx.post(f"{ingest.url}/v1/conferences", content=body, headers=headers, timeout=20)


NESTED = b'{"calendarId": "alice@example.com", "eventId": "evt1", "requestId": "r", "event": {"summary": '
NESTED += b"[" * 100_000 + b"]" * 100_000 + b"}}"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"event": {"organizer": "x"}}, "event.organizer: must be an object"),
        ({"event": {"organizer": ["alice@example.com"]}}, "event.organizer: must be an object"),
        ({"calendarId": "\u00e9" * 251}, "calendarId: too long once escaped as a store key"),  # each is %C3%A9
        ({"eventId": "/" * 501}, "eventId: too long once escaped as a store key"),  # each is %2F
        (NESTED, "nested too deeply"),
        ({"event": {"updated": "9999-12-31T23:59:59-23:59"}}, "event.updated"),  # past datetime.max in UTC
        (b'{"calendarId": "a@example.com", "eventId": "e1", "requestId": "r", "event": {"summary": "\\ud800"}}',
         "unpaired surrogate"),
    ],
    ids=[
        "organizer-text", "organizer-list", "calendar-id-too-long", "event-id-too-long", "nested", "updated-overflow",
        "surrogate",
    ],
)  # fmt: skip
def test_a_request_the_store_or_provider_could_not_take_is_a_400_before_any_create(  # type: ignore[no-untyped-def]
    ingest, body: dict[str, object] | bytes, reason: str
) -> None:
    """Refused whole, up front: a refusal after the provider's create would orphan a conference."""
    ingest.calendar.admin("POST", "/_sandbox/calendars", {"id": CAL})
    answer = _raw_create(ingest, body) if isinstance(body, bytes) else create(ingest, **body)
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "PERMANENT"
    assert reason in answer.json()["error"]["message"]
    assert ingest.provider.journal() == [], "the provider saw no create"
    assert ingest.store.live_links(CAL) == []


def test_the_longest_event_id_calendar_makes_is_accepted(ingest) -> None:  # type: ignore[no-untyped-def]
    ingest.calendar.admin("POST", "/_sandbox/calendars", {"id": CAL})
    longest = "a0" * 512  # Calendar's ids: up to 1,024 base32hex characters, kept as they are
    assert create(ingest, eventId=longest).status_code == 200
    assert ingest.store.get_link(CAL, longest) is not None


def test_the_api_limit_on_ids_is_firestores(firestore_emulator_host: str) -> None:
    """An id at the limit the API enforces is stored; one byte over, Firestore itself refuses."""
    from google.api_core import exceptions as google_exceptions  # noqa: PLC0415
    from google.cloud import firestore  # noqa: PLC0415 - only with the emulator up

    from confsync.store import Link  # noqa: PLC0415
    from confsync.store.firestore import FirestoreStore, document_id_fits  # noqa: PLC0415

    assert firestore_emulator_host
    store = FirestoreStore(firestore.Client(project="confsync-test"), prefix="api_limit_")
    longest = "/" * 500  # 1,500 bytes escaped
    assert document_id_fits(longest)
    assert not document_id_fits(longest + "/")
    store.upsert_link(Link(CAL, longest, "conf-1"))
    assert store.get_link(CAL, longest).conference_id == "conf-1"
    with pytest.raises(google_exceptions.InvalidArgument):
        store.upsert_link(Link(CAL, longest + "/", "conf-2"))
    store.close()


def test_the_link_remembers_which_version_of_the_event_the_add_on_saw(ingest) -> None:  # type: ignore[no-untyped-def]
    """So a listing of that version (Calendar has not saved the conference on it yet) is not
    mistaken for the conference's removal; a new event (none yet) leaves it unknown."""
    ingest.calendar.admin("POST", "/_sandbox/calendars", {"id": CAL})
    assert create(ingest, "req-a", event={"summary": "x", "updated": "2026-12-01T09:00:00.123Z"}).status_code == 200
    link = ingest.store.get_link(CAL, "evt1")
    assert link.last_event_updated == datetime(2026, 12, 1, 9, 0, 0, 123000, tzinfo=UTC)
    assert link.last_fingerprint is None
    before = datetime.now(UTC)
    assert create(ingest, "req-b", eventId="evt2", event=None).status_code == 200
    fresh = ingest.store.get_link(CAL, "evt2")
    assert fresh.last_event_updated is None
    # its age: a full listing that never shows the event deletes the conference only when old
    assert before <= fresh.created_at <= datetime.now(UTC)


def test_an_event_not_yet_in_calendar_still_gets_its_conference(ingest) -> None:  # type: ignore[no-untyped-def]
    ingest.calendar.admin("POST", "/_sandbox/calendars", {"id": CAL})
    answer = create(ingest, event=None)
    assert answer.status_code == 200
    assert ingest.store.get_link(CAL, "evt1") is not None


def test_the_add_on_api_accepts_a_google_id_token_and_refuses_others() -> None:
    from tests_support.oidc import GOOGLE_CERT, sign  # noqa: PLC0415

    from confsync.oidc import OidcVerifier, TokenRejected  # noqa: PLC0415
    from ingest.api import AddonAuth  # noqa: PLC0415

    audience = "1234-addon.apps.googleusercontent.com"
    verifier = OidcVerifier(audience=audience, fetch_certs=lambda: {"google-kid": GOOGLE_CERT})
    production = AddonAuth(verifier, dev_token=None)
    assert production.check(f"Bearer {sign(aud=audience, email='alice@example.com')}") == "alice@example.com"
    for bad, status in (
        (sign(aud="someone-else", email="alice@example.com"), 403),
        (sign(aud=audience, email="alice@example.com", email_verified=False), 403),
        ("dev-token-for-tests", 401),
    ):
        with pytest.raises(TokenRejected) as caught:
            production.check(f"Bearer {bad}")
        assert caught.value.status == status


def test_outside_local_mode_the_renew_route_needs_the_schedulers_token(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from starlette.applications import Starlette  # noqa: PLC0415
    from tests_support.oidc import GOOGLE_CERT, sign  # noqa: PLC0415

    from confsync.calendar import GoogleCalendarClient  # noqa: PLC0415
    from confsync.oidc import OidcVerifier  # noqa: PLC0415
    from confsync.provider import HttpConferenceProvider  # noqa: PLC0415
    from confsync.serving import ServedApp  # noqa: PLC0415
    from confsync.settings import Settings  # noqa: PLC0415
    from confsync.store.sqlite import SqliteStore  # noqa: PLC0415
    from confsync.transport.memory import MemoryBroker  # noqa: PLC0415
    from ingest.app import IngestParts, ingest_routes  # noqa: PLC0415
    from ingest.channels import ChannelManager  # noqa: PLC0415
    from ingest.webhook import WebhookStats  # noqa: PLC0415

    audience, scheduler = "https://ingest.example.run.app", "scheduler@confsync-prod.iam.gserviceaccount.com"
    store = SqliteStore(tmp_path / "s.sqlite")
    channels = ChannelManager(store, GoogleCalendarClient(), webhook_url="https://x.example/n", ttl_s=3600)
    parts = IngestParts(
        Settings(local_mode=False),
        store,
        MemoryBroker(),
        HttpConferenceProvider("http://127.0.0.1:9", Secret("unused")),
        channels,
        WebhookStats(),
        scheduler_verifier=OidcVerifier(
            audience=audience, email=scheduler, fetch_certs=lambda: {"google-kid": GOOGLE_CERT}
        ),
    )
    with ServedApp(Starlette(routes=ingest_routes(parts))) as served:
        url = f"{served.url}/tasks/renew-channels"
        assert httpx.post(url, timeout=10).status_code == 401
        someone = sign(aud=audience, email="intruder@example.com")
        assert httpx.post(url, headers={"Authorization": f"Bearer {someone}"}, timeout=10).status_code == 403
        good = sign(aud=audience, email=scheduler)
        answer = httpx.post(url, headers={"Authorization": f"Bearer {good}"}, timeout=10)
        assert answer.status_code == 200
        assert answer.json() == {"calendars": 0, "more": False}
        dev = httpx.post(
            f"{served.url}/v1/conferences", json={}, headers={"Authorization": "Bearer dev-token-for-tests"}, timeout=10
        )
        assert dev.status_code == 401, "no dev token outside local mode"
    store.close()


def test_every_channel_operation_is_an_http_route_too(ingest) -> None:  # type: ignore[no-untyped-def]
    ingest.calendar.service().events().insert(calendarId=CAL, body=event_body("x")).execute()
    ensured = httpx.post(f"{ingest.url}/tasks/channels/ensure", params={"calendar": CAL}, timeout=20)
    assert ensured.status_code == 200
    channel_id = ensured.json()["channel_id"]
    listed = httpx.get(f"{ingest.url}/tasks/channels", params={"expiring_within": 7200}, timeout=20).json()
    assert [row["channel_id"] for row in listed] == [channel_id]
    assert httpx.post(f"{ingest.url}/tasks/channels/ensure", timeout=20).status_code == 400
    stopped = httpx.post(f"{ingest.url}/tasks/channels/stop", params={"channel": channel_id}, timeout=20)
    assert stopped.json() == {"stopped": [channel_id]}
    assert httpx.get(f"{ingest.url}/tasks/channels", timeout=20).json() == []
    gone = httpx.post(f"{ingest.url}/tasks/channels/ensure", params={"calendar": "nobody@example.com"}, timeout=20)
    assert gone.status_code == 502
    assert "404" in gone.json()["error"]


@pytest.mark.parametrize("value", ["\u00b2", "1" * 11, "-5"])
def test_a_scheduler_route_refuses_a_number_of_seconds_it_cannot_use(ingest, value: str) -> None:  # type: ignore[no-untyped-def]
    routes = (("POST", "/tasks/renew-channels", "before"), ("GET", "/tasks/channels", "expiring_within"))
    for method, path, name in routes:
        answer = httpx.request(method, f"{ingest.url}{path}", params={name: value}, timeout=20)
        assert answer.status_code == 400
        assert name in answer.json()["error"]


def test_when_googles_certificates_cannot_be_fetched_the_add_on_is_told_to_try_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An outage at Google is no reason to send the user through sign-in again."""
    from starlette.applications import Starlette  # noqa: PLC0415
    from tests_support.oidc import sign  # noqa: PLC0415

    from confsync.calendar import GoogleCalendarClient  # noqa: PLC0415
    from confsync.oidc import OidcVerifier  # noqa: PLC0415
    from confsync.provider import HttpConferenceProvider  # noqa: PLC0415
    from confsync.serving import ServedApp  # noqa: PLC0415
    from confsync.settings import Settings  # noqa: PLC0415
    from confsync.store.sqlite import SqliteStore  # noqa: PLC0415
    from confsync.transport.memory import MemoryBroker  # noqa: PLC0415
    from ingest.app import IngestParts, ingest_routes  # noqa: PLC0415
    from ingest.channels import ChannelManager  # noqa: PLC0415
    from ingest.webhook import WebhookStats  # noqa: PLC0415

    def google_down() -> dict[str, str]:
        raise OSError("certificates unreachable")

    audience = "client-1.apps.googleusercontent.com"
    store = SqliteStore(tmp_path / "s.sqlite")
    parts = IngestParts(
        Settings(local_mode=False),
        store,
        MemoryBroker(),
        HttpConferenceProvider("http://127.0.0.1:9", Secret("unused")),
        ChannelManager(store, GoogleCalendarClient(), webhook_url="https://x.example/n", ttl_s=3600),
        WebhookStats(),
        addon_verifier=OidcVerifier(audience=audience, fetch_certs=google_down),
    )
    bearer = sign(aud=audience, email="alice@example.com")
    with ServedApp(Starlette(routes=ingest_routes(parts))) as served:
        answer = httpx.post(
            f"{served.url}/v1/conferences", json={}, headers={"Authorization": f"Bearer {bearer}"}, timeout=10
        )
    assert answer.status_code == 503
    assert answer.json()["error"]["type"] == "TEMPORARY"
    store.close()
