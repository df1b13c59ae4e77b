"""The Calendar client wrapper: every HttpError class becomes the right confsync error, seen
through the sandbox's fault injection and google-api-python-client."""

from __future__ import annotations

import pytest
from tests_support import RunningCalendar, event_body

from confsync.calendar import GoogleCalendarClient, parse_event
from confsync.errors import AuthError, CalendarGone, PermanentError, SyncTokenExpired, TransientError

CAL = "alice@example.com"


@pytest.mark.parametrize(
    ("status", "reason", "error", "retry_after"),
    [
        (403, "rateLimitExceeded", TransientError, None),
        (403, "userRateLimitExceeded", TransientError, None),
        (429, "rateLimitExceeded", TransientError, 7.0),
        (500, "backendError", TransientError, None),
        (503, "backendError", TransientError, 7.0),
        (401, "authError", AuthError, None),
        (404, "notFound", CalendarGone, None),
        (403, "forbidden", CalendarGone, None),
        (410, "fullSyncRequired", SyncTokenExpired, None),
        (400, "invalid", PermanentError, None),
    ],
)
def test_each_calendar_error_maps_to_one_type(
    calendar_sandbox: RunningCalendar, status: int, reason: str, error: type[Exception], retry_after: float | None
) -> None:
    calendar_sandbox.service().events().insert(calendarId=CAL, body=event_body("x")).execute()
    rule = {"method": "GET", "path": "/events$", "status": status, "reason": reason, "count": 1}
    if retry_after:
        rule["retry_after"] = int(retry_after)
    calendar_sandbox.admin("POST", "/_sandbox/faults", rule)
    client = GoogleCalendarClient(endpoint=calendar_sandbox.api_endpoint)
    try:
        with pytest.raises(error) as caught:
            client.list_events(CAL)
        assert type(caught.value) is error
        assert caught.value.status == status  # type: ignore[attr-defined]
        if isinstance(caught.value, TransientError):
            assert caught.value.retry_after == retry_after
        assert len(client.list_events(CAL).events) == 1, "one fault, then the calendar answers"
    finally:
        client.close()


def test_an_unreachable_calendar_api_is_transient() -> None:
    client = GoogleCalendarClient(endpoint="http://127.0.0.1:9/calendar/v3/", timeout_s=2)
    with pytest.raises(TransientError, match="unreachable"):
        client.list_events(CAL)
    client.close()


def test_events_parse_into_typed_values(calendar_sandbox: RunningCalendar) -> None:
    body = {
        **event_body("Planning"),
        "attendees": [{"email": "bob@example.com", "displayName": "Bob", "responseStatus": "accepted"}],
        "conferenceData": {
            "conferenceId": "cnf_1",
            "conferenceSolution": {"key": {"type": "addOn"}, "name": "My Web Conference"},
        },
    }
    calendar_sandbox.service().events().insert(calendarId=CAL, body=body, conferenceDataVersion=1).execute()
    client = GoogleCalendarClient(endpoint=calendar_sandbox.api_endpoint)
    (event,) = client.list_events(CAL).events
    client.close()
    assert event.summary == "Planning"
    assert event.attendees == ("bob@example.com",)
    assert event.conference is not None
    assert (event.conference.conference_id, event.conference.solution_type) == ("cnf_1", "addOn")
    assert event.updated is not None


def test_listings_and_gets_ask_only_for_what_parsing_reads_and_parse_the_same(
    calendar_sandbox: RunningCalendar,
) -> None:
    """The client's partial responses (``fields``) leave out nothing its events are made of."""
    service = calendar_sandbox.service()
    conference = {
        "conferenceId": "cnf_1",
        "conferenceSolution": {"key": {"type": "addOn"}, "name": "My Web Conference", "iconUri": "https://x/i.png"},
        "entryPoints": [{"entryPointType": "video", "uri": "https://conf.example.com/1"}],
    }
    bodies = [
        {
            **event_body("Planning"),
            "description": "agenda",
            "attendees": [{"email": "bob@example.com", "displayName": "Bob", "responseStatus": "accepted"}],
            "conferenceData": conference,
        },
        {"summary": "Holiday", "start": {"date": "2026-12-24"}, "end": {"date": "2026-12-25"}},
        {
            **event_body("Weekly", recurrence=["RRULE:FREQ=WEEKLY;COUNT=4"]),
            "conferenceData": {**conference, "conferenceId": "cnf_2"},
        },
        event_body("Cancelled later", day=3),
    ]
    made = [service.events().insert(calendarId=CAL, body=b, conferenceDataVersion=1).execute() for b in bodies]
    instances = service.events().instances(calendarId=CAL, eventId=made[2]["id"]).execute()["items"]
    service.events().delete(calendarId=CAL, eventId=instances[1]["id"]).execute()
    moved = {"start": {"dateTime": "2026-12-30T15:00:00Z"}, "end": {"dateTime": "2026-12-30T16:00:00Z"}}
    service.events().patch(calendarId=CAL, eventId=instances[2]["id"], body=moved).execute()
    service.events().delete(calendarId=CAL, eventId=made[3]["id"]).execute()

    whole = service.events().list(calendarId=CAL, showDeleted=True, maxResults=2500).execute()["items"]
    each = [service.events().get(calendarId=CAL, eventId=item["id"]).execute() for item in whole]
    client = GoogleCalendarClient(endpoint=calendar_sandbox.api_endpoint)
    try:
        listed = client.list_events(CAL).events
        got = [client.get_event(CAL, item["id"]) for item in whole]
    finally:
        client.close()
    assert len(whole) == 6, "two plain events, a tombstone, a series with a cancelled and a moved occurrence"
    assert list(listed) == [parse_event(item) for item in whole]
    assert got == [parse_event(item) for item in each]
    asked = [entry["query"].get("fields") for entry in calendar_sandbox.admin("GET", "/_sandbox/requests")[-7:]]
    assert all(asked), "every call of the client asked for a partial response"


def test_delegated_credentials_act_as_each_calendars_user(tmp_path: object) -> None:
    import json  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from tests_support.oidc import GOOGLE_KEY  # noqa: PLC0415

    from confsync.calendar import CALENDAR_SCOPES, delegated  # noqa: PLC0415
    from confsync.errors import ConfigError  # noqa: PLC0415

    key = Path(str(tmp_path)) / "sa.json"
    key.write_text(
        json.dumps(
            {
                "type": "service_account",
                "client_email": "confsync@prod.iam.gserviceaccount.com",
                "private_key": GOOGLE_KEY,
                "private_key_id": "k1",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    factory = delegated(key)
    alice, bob = factory("alice@example.com"), factory("bob@example.com")
    assert alice._subject == "alice@example.com"  # type: ignore[attr-defined]
    assert bob._subject == "bob@example.com"  # type: ignore[attr-defined]
    assert tuple(alice._scopes) == CALENDAR_SCOPES  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="CONFSYNC_CALENDAR_SERVICE_ACCOUNT_FILE"):
        delegated(Path(str(tmp_path)) / "missing.json")


def test_the_worker_reads_each_calendar_as_its_own_subject(calendar_sandbox: RunningCalendar, tmp_path: object) -> None:
    from datetime import UTC, datetime  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from confsync.calendar import CalendarClients, anonymous  # noqa: PLC0415
    from confsync.contracts import CalendarChanged, Source  # noqa: PLC0415
    from confsync.store.sqlite import SqliteStore  # noqa: PLC0415
    from confsync.transport.memory import MemoryBroker  # noqa: PLC0415
    from processors.worker import CalendarWorker  # noqa: PLC0415

    asked: list[str] = []

    def recording(subject: str) -> object:
        asked.append(subject)
        return anonymous(subject)

    calendar_sandbox.service().events().insert(calendarId=CAL, body=event_body("x")).execute()
    clients = CalendarClients(endpoint=calendar_sandbox.api_endpoint, credentials=recording)  # type: ignore[arg-type]
    store = SqliteStore(Path(str(tmp_path)) / "s.sqlite")
    store.ensure_calendar(CAL, subject="alice@example.com")
    broker = MemoryBroker()
    broker.create_topic("commands")
    worker = CalendarWorker(store, clients.for_subject(None), broker, "commands", calendar_for=clients.for_subject)
    worker.handle(CalendarChanged(calendar_id=CAL, source=Source.MANUAL, received_at=datetime.now(UTC)))
    assert "alice@example.com" in asked
    assert store.get_calendar(CAL).sync_token, "the subject's client synced the calendar"
    clients.close()
    store.close()


def test_user_refresh_tokens_give_each_user_their_own_credentials(tmp_path: object) -> None:
    import json  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from confsync.calendar import CalendarClients, user_tokens  # noqa: PLC0415
    from confsync.errors import ConfigError  # noqa: PLC0415
    from confsync.settings import Secret, Settings  # noqa: PLC0415

    tokens = Path(str(tmp_path)) / "tokens.json"
    tokens.write_text(json.dumps({"alice@example.com": "1//alice-refresh"}))
    factory = user_tokens(tokens, "client-1.apps.googleusercontent.com", Secret("shh"))
    alice = factory("alice@example.com")
    assert alice.refresh_token == "1//alice-refresh"  # type: ignore[attr-defined]
    assert alice.client_id == "client-1.apps.googleusercontent.com"  # type: ignore[attr-defined]
    with pytest.raises(AuthError, match="connect confsync again"):
        factory("bob@example.com")
    with pytest.raises(ConfigError, match="CONFSYNC_OAUTH_CLIENT_ID"):
        CalendarClients.from_settings(Settings(calendar_user_tokens_file=str(tokens)))
    with pytest.raises(ConfigError, match="CONFSYNC_CALENDAR_USER_TOKENS_FILE"):
        user_tokens(Path(str(tmp_path)) / "missing.json", "c", Secret("s"))


def test_every_call_survives_a_connection_the_server_closed_while_idle() -> None:
    """The server drops pooled connections after its keep-alive (uvicorn's, Google's front
    ends): the next call on one of them, a watch included, goes out on a fresh connection
    instead of failing with a broken pipe."""
    import time  # noqa: PLC0415

    from confsync.serving import ServedApp  # noqa: PLC0415
    from sandbox.calendar import create_app  # noqa: PLC0415
    from sandbox.calendar.server import build_sandbox  # noqa: PLC0415

    sandbox = build_sandbox()
    with ServedApp(create_app(sandbox), keep_alive_s=0.1) as served:
        running = RunningCalendar(sandbox, served.url)
        running.service().events().insert(calendarId=CAL, body=event_body("x")).execute()
        client = GoogleCalendarClient(endpoint=running.api_endpoint)
        try:
            for n in range(4):
                channel = client.watch(CAL, channel_id=f"ch-{n}", address="http://127.0.0.1:9/n", token="t", ttl_s=60)
                assert channel.channel_id == f"ch-{n}"
                assert len(client.list_events(CAL).events) == 1
                time.sleep(0.3)  # past the server's keep-alive: it closes the pooled connection
        finally:
            client.close()
            running.close()


def test_clients_for_ten_thousand_subjects_keep_a_bounded_number_of_credentials(
    calendar_sandbox: RunningCalendar,
) -> None:
    """A processor that has seen thousands of users keeps one discovery service per thread
    and the credentials of only its most recent subjects, however many it has seen."""
    from confsync.calendar import CalendarClients, anonymous  # noqa: PLC0415

    made: list[str] = []

    def counting(subject: str) -> object:
        made.append(subject)
        return anonymous(subject)

    calendar_sandbox.service().events().insert(calendarId=CAL, body=event_body("x")).execute()
    clients = CalendarClients(endpoint=calendar_sandbox.api_endpoint, credentials=counting, max_subjects=100)  # type: ignore[arg-type]
    try:
        for n in range(10_000):
            client = clients.for_subject(f"user{n}@example.com")
            if n % 50 == 0:
                assert len(client.list_events(CAL).events) == 1
        assert clients.kept == (100, 1)
        assert len(made) == 200, "credentials are made when a subject first calls, not when it is named"
        clients.for_subject("user9950@example.com").list_events(CAL)
        assert len(made) == 200, "a recent subject keeps its credentials"
        clients.for_subject("user0@example.com").list_events(CAL)
        assert made[-1] == "user0@example.com", "an evicted subject gets fresh credentials when it comes back"
    finally:
        clients.close()
