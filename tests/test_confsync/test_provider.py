"""The conferencing client (confsync.provider) against the provider sandbox over real HTTP:
the REST contract, and every kind of failure turned into the right confsync error."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from structlog.testing import capture_logs
from tests_support import PROVIDER_KEY, RunningProvider, meeting

from confsync.contracts import ConferencePayload, EventTime
from confsync.errors import AuthError, NotFound, PermanentError, Stale, TransientError
from confsync.ports import NewConference
from confsync.provider import HttpConferenceProvider, parse_retry_after
from confsync.serving import ServedApp
from confsync.settings import Secret
from confsync.tracing import span
from sandbox.provider import create_app
from sandbox.provider.server import build_sandbox

V1 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture
def sandbox() -> Iterator[RunningProvider]:
    with ServedApp(create_app(build_sandbox(api_key=PROVIDER_KEY))) as served:
        yield RunningProvider(served.url)


@pytest.fixture
def client(sandbox: RunningProvider) -> Iterator[HttpConferenceProvider]:
    with HttpConferenceProvider(sandbox.url, Secret(PROVIDER_KEY), timeout_s=5) as provider:
        yield provider


def new(request_id: str = "req-1") -> NewConference:
    return NewConference(calendar_id="alice@example.com", event_id="evt1", request_id=request_id, **meeting("Planning"))


def payload(summary: str = "Renamed", attendees: tuple[str, ...] = ("alice@example.com",)) -> ConferencePayload:
    return ConferencePayload(
        summary=summary,
        start=EventTime(date="2026-12-24"),
        end=EventTime(date="2026-12-25"),
        attendees=attendees,
        organizer="alice@example.com",
    )


def recording(
    seen: list[httpx.Request],
    *,
    key: str = "k",
    base_url: str = "http://provider.test",
    headers: dict[str, str] | None = None,
) -> HttpConferenceProvider:
    """A client whose calls never leave the process: each is added to ``seen`` and answered 204."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204, headers=headers)

    return HttpConferenceProvider(base_url, Secret(key), transport=httpx.MockTransport(answer))


# -- the contract ---------------------------------------------------------------------------------


def test_create_returns_a_usable_conference(client: HttpConferenceProvider) -> None:
    created = client.create(new())
    assert created.id.startswith("cnf_")
    assert created.video_uri.endswith(created.id)
    assert created.passcode
    assert created.phone_number
    assert created.phone_pin
    assert created.admin_email == "admin@mywebconf.test"
    assert created.legal_notice
    assert created.version == 1


def test_the_same_request_id_creates_one_conference(client: HttpConferenceProvider, sandbox: RunningProvider) -> None:
    first, again = client.create(new("req-x")), client.create(new("req-x"))
    assert again == first
    assert client.create(new("req-y")).id != first.id
    assert [entry["status"] for entry in sandbox.journal()] == [201, 200, 201]


def test_get_shows_every_stored_field(client: HttpConferenceProvider) -> None:
    created = client.create(new())
    shown = client.get(created.id)
    assert shown.state == "active"
    assert shown.summary == "Planning"
    assert shown.start == EventTime(date_time="2026-12-01T10:00:00+01:00", time_zone="Europe/Warsaw")
    assert shown.attendees == ("alice@example.com", "bob@example.com")
    assert shown.calendar_id == "alice@example.com"
    assert shown.event_id == "evt1"
    assert shown.last_event_updated is None


def test_update_applies_the_payload_and_records_the_version(client: HttpConferenceProvider) -> None:
    conference = client.create(new())
    updated = client.update(conference.id, payload(), event_updated=V1, idempotency_key="k1")
    assert updated.summary == "Renamed"
    assert updated.start == EventTime(date="2026-12-24")
    assert updated.attendees == ("alice@example.com",)
    assert updated.version == 2
    assert updated.last_event_updated == V1
    assert client.get(conference.id) == updated


def test_a_repeated_idempotency_key_returns_the_first_answer_and_changes_nothing(
    client: HttpConferenceProvider, sandbox: RunningProvider
) -> None:
    conference = client.create(new())
    first = client.update(conference.id, payload("A"), event_updated=V1, idempotency_key="same")
    again = client.update(conference.id, payload("B"), event_updated=V1 + timedelta(1), idempotency_key="same")
    assert again == first
    assert client.get(conference.id).summary == "A"
    patches = [entry for entry in sandbox.journal() if entry["method"] == "PATCH"]
    assert [entry["idempotency_key"] for entry in patches] == ["same", "same"]


def test_every_call_sends_the_trace_it_is_made_in(client: HttpConferenceProvider, sandbox: RunningProvider) -> None:
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    conference = client.create(new())  # outside any trace: one of its own
    with span("command", parent={"traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"}):
        client.update(conference.id, payload(), event_updated=V1, idempotency_key="k1")
        client.delete(conference.id, idempotency_key="k2")
    sent = {entry["method"]: entry["traceparent"].split("-")[1] for entry in sandbox.journal()}
    assert sent["PATCH"] == sent["DELETE"] == caller_trace
    assert sent["POST"] != caller_trace
    assert int(sent["POST"], 16) != 0


def test_an_older_version_is_stale_and_changes_nothing(client: HttpConferenceProvider) -> None:
    conference = client.create(new())
    client.update(conference.id, payload("new"), event_updated=V1, idempotency_key="k1")
    with pytest.raises(Stale) as caught:
        client.update(conference.id, payload("old"), event_updated=V1 - timedelta(seconds=1), idempotency_key="k2")
    assert caught.value.status == 409
    assert client.get(conference.id).summary == "new"
    same_version = client.update(conference.id, payload("same"), event_updated=V1, idempotency_key="k3")
    assert same_version.summary == "same"


def test_delete_is_idempotent_and_final(client: HttpConferenceProvider) -> None:
    conference = client.create(new())
    client.delete(conference.id, idempotency_key="d1")
    client.delete(conference.id, idempotency_key="d2")  # deleting a deleted conference is fine
    assert client.get(conference.id).state == "deleted"
    # an update that arrives after the delete (delivery is not always in order) is superseded,
    # not a failure to dead-letter: the conference's last version is its deletion
    with pytest.raises(Stale) as caught:
        client.update(conference.id, payload(), event_updated=V1, idempotency_key="k")
    assert caught.value.status == 409
    assert client.get(conference.id).state == "deleted"


def test_unknown_conferences_are_not_found(client: HttpConferenceProvider) -> None:
    for call in (
        lambda: client.get("cnf_missing"),
        lambda: client.update("cnf_missing", payload(), event_updated=V1, idempotency_key="k"),
        lambda: client.delete("cnf_missing", idempotency_key="k"),
    ):
        with pytest.raises(NotFound):
            call()


def test_a_wrong_api_key_is_an_auth_error_with_the_authentication_url(sandbox: RunningProvider) -> None:
    with (
        HttpConferenceProvider(sandbox.url, Secret("wrong-key"), timeout_s=5) as wrong,
        pytest.raises(AuthError) as caught,
    ):
        wrong.create(new())
    assert caught.value.authentication_url == "https://mywebconf.test/oauth/authorize"
    assert caught.value.status == 401
    assert "wrong-key" not in str(caught.value)
    missing = httpx.post(f"{sandbox.url}/v1/conferences", json={}, timeout=5)
    assert missing.status_code == 401
    assert missing.json()["error"]["retryable"] is False


# -- failures map to types, once -------------------------------------------------------------------


def add_fault(sandbox: RunningProvider, **rule: object) -> None:
    sandbox.admin("POST", "/_sandbox/faults", {"path": "^/v1/", **rule})


@pytest.mark.parametrize(
    ("rule", "error", "retry_after"),
    [
        ({"status": 503, "retry_after": 7}, TransientError, 7.0),
        ({"status": 503}, TransientError, 1.0),
        ({"status": 429, "retry_after": 3}, TransientError, 3.0),
        ({"status": 500}, TransientError, None),
        ({"status": 502}, TransientError, None),
        ({"status": 408}, TransientError, None),
        ({"status": 400}, PermanentError, None),
        ({"status": 422}, PermanentError, None),
        ({"status": 404}, NotFound, None),
        ({"status": 401}, AuthError, None),
    ],
)
def test_each_fault_becomes_the_right_error(
    client: HttpConferenceProvider,
    sandbox: RunningProvider,
    rule: dict[str, object],
    error: type[Exception],
    retry_after: float | None,
) -> None:
    conference = client.create(new())
    add_fault(sandbox, method="PATCH", count=1, **rule)
    with pytest.raises(error) as caught:
        client.update(conference.id, payload(), event_updated=V1, idempotency_key="k")
    assert type(caught.value) is error
    assert getattr(caught.value, "status", None) == rule["status"]
    if isinstance(caught.value, TransientError):
        assert caught.value.retry_after == retry_after
    assert client.update(conference.id, payload(), event_updated=V1, idempotency_key="k").version == 2


def test_a_timeout_is_transient(sandbox: RunningProvider) -> None:
    add_fault(sandbox, latency_ms=1000, count=1)
    impatient = HttpConferenceProvider(sandbox.url, Secret(PROVIDER_KEY), timeout_s=0.2)
    with impatient, pytest.raises(TransientError, match="timed out"):
        impatient.create(new())


def test_each_failed_call_is_logged_once_with_its_status(
    client: HttpConferenceProvider, sandbox: RunningProvider
) -> None:
    """The line infra/terraform's provider_errors metric counts by status; answered calls log nothing."""
    conference = client.create(new())
    add_fault(sandbox, method="PATCH", count=1, status=503)
    add_fault(sandbox, method="GET", count=1, latency_ms=1000)
    impatient = HttpConferenceProvider(sandbox.url, Secret(PROVIDER_KEY), timeout_s=0.2)
    with capture_logs() as logs, impatient:
        with pytest.raises(TransientError):
            client.update(conference.id, payload(), event_updated=V1, idempotency_key="k")
        client.update(conference.id, payload(), event_updated=V1, idempotency_key="k")
        with pytest.raises(TransientError, match="timed out"):
            impatient.get(conference.id)
    failed = [(line["method"], line["status"]) for line in logs if line["event"] == "conferencing API call failed"]
    assert failed == [("PATCH", 503), ("GET", "timeout")]


def test_a_refused_connection_is_transient() -> None:
    with ServedApp(create_app(build_sandbox(api_key="k"))) as served:
        url = served.url
    with HttpConferenceProvider(url, Secret("k"), timeout_s=2) as client, pytest.raises(TransientError):
        client.get("cnf_x")


def test_a_malformed_success_answer_is_transient() -> None:
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, text="<html>proxy</html>"))
    client = HttpConferenceProvider("http://provider.test", Secret("k"), transport=transport)
    with client, pytest.raises(TransientError, match="malformed answer"):
        client.get("cnf_x")


def test_the_api_key_is_sent_as_a_bearer_token_and_ids_are_path_safe() -> None:
    seen: list[httpx.Request] = []
    with recording(seen, key="k-1") as client:
        client.delete("cnf_1", idempotency_key="cmd-1")
        with pytest.raises(PermanentError, match="not a conference id"):
            client.delete("../admin", idempotency_key="cmd-2")
    (request,) = seen
    assert request.headers["Authorization"] == "Bearer k-1"
    assert request.headers["Idempotency-Key"] == "cmd-1"
    assert request.url.path == "/v1/conferences/cnf_1"


@pytest.mark.parametrize(
    "bad_id",
    [
        "abc?force=true",
        "abc#x",
        "../admin",
        "a/b",
        "..",
        ".",
        "",
        "cnf 1",
        "cnf%2F1",
        "cnf\n1",
        "cnf_1;v=2",
        "c\u00f3nf",
        "x" * 513,
    ],
)
def test_a_conference_id_that_is_not_one_path_segment_is_refused_before_any_call(bad_id: str) -> None:
    seen: list[httpx.Request] = []
    with recording(seen) as client:
        for call in (
            lambda: client.get(bad_id),
            lambda: client.update(bad_id, payload(), event_updated=V1, idempotency_key="k"),
            lambda: client.delete(bad_id, idempotency_key="k"),
        ):
            with pytest.raises(PermanentError) as caught:
                call()
            assert type(caught.value) is PermanentError
            assert f"not a conference id: {bad_id[:100]!r}" in str(caught.value)
    assert seen == []


def test_every_id_the_sandbox_issues_and_the_add_on_api_passes_reaches_its_conference(
    client: HttpConferenceProvider, sandbox: RunningProvider
) -> None:
    issued = [client.create(new(f"req-{n}")).id for n in range(20)]
    for conference_id in issued:
        client.update(conference_id, payload(conference_id), event_updated=V1, idempotency_key=f"k-{conference_id}")
        assert client.get(conference_id).summary == conference_id
    paths = [entry["path"] for entry in sandbox.journal() if entry["method"] in ("GET", "PATCH")]
    assert paths == [f"/v1/conferences/{conference_id}" for conference_id in issued for _ in range(2)]


@pytest.mark.parametrize("good_id", ["cnf_1", "conf-1", "cnf-1", "abc-defg-hij", "A.b~c_9", "7", "x" * 512])
def test_a_conference_id_of_unreserved_characters_is_sent_as_is(good_id: str) -> None:
    seen: list[httpx.Request] = []
    with recording(seen) as client:
        client.delete(good_id, idempotency_key="k")
    (request,) = seen
    assert request.url.raw_path == f"/v1/conferences/{good_id}".encode()
    assert request.url.query == b""


def test_cookies_the_provider_sets_are_never_sent_back() -> None:
    """Calls are authenticated by the API key alone: a Set-Cookie must not tie later calls to it."""
    seen: list[httpx.Request] = []
    with recording(seen, headers={"Set-Cookie": "session=abc; Path=/"}) as client:
        client.delete("cnf_1", idempotency_key="cmd-1")
        client.delete("cnf_2", idempotency_key="cmd-2")
    assert [request.headers.get("Cookie") for request in seen] == [None, None]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("5", 5.0),
        ("0", 0.0),
        ("Tue, 24 Nov 2026 18:00:30 GMT", 30.0),
        ("Tue, 24 Nov 2026 17:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    now = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == seconds


def test_the_client_is_built_from_settings_or_refuses_clearly() -> None:
    from confsync.errors import ConfigError  # noqa: PLC0415
    from confsync.settings import Settings  # noqa: PLC0415

    with pytest.raises(ConfigError, match="CONFSYNC_PROVIDER_URL"):
        HttpConferenceProvider.from_settings(Settings())
    settings = Settings(provider_url="http://provider.test", provider_api_key=Secret("k-2"), provider_timeout_s=3)
    seen: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: seen.append(request) or httpx.Response(204))
    with HttpConferenceProvider.from_settings(settings, transport=transport) as client:
        client.delete("cnf_1", idempotency_key="x")
    assert seen[0].headers["Authorization"] == "Bearer k-2"
    assert seen[0].extensions["timeout"]["read"] == 3


def test_a_base_url_with_a_path_prefix_and_trailing_slash_keeps_the_prefix() -> None:
    """Providers often serve their API under a prefix; every call goes under it, never beside it."""
    seen: list[httpx.Request] = []
    with recording(seen, base_url="https://api.mywebconf.test/mwc/") as provider:
        provider.delete("cnf_1", idempotency_key="k1")
    assert [str(request.url) for request in seen] == ["https://api.mywebconf.test/mwc/v1/conferences/cnf_1"]
