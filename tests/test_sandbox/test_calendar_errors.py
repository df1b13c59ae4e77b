"""Bad input, injected faults, auth and restarts on the Calendar sandbox: Google's error shape
and status, observed through google-api-python-client, and nothing changed by a refusal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from googleapiclient.errors import HttpError
from tests_support import RunningCalendar, event_body, list_all, sync_all
from tests_support.cli import start_confsync

from confsync.serving import free_port
from sandbox.calendar.server import build_sandbox

CAL = "alice@example.com"


def error_of(call: Any) -> HttpError:
    with pytest.raises(HttpError) as caught:
        call.execute()
    return caught.value


# -- bad input leaves state unchanged -------------------------------------------------------------


@pytest.fixture
def baseline(calendar: Any) -> Iterator[tuple[Any, str]]:
    """A calendar with one event and a sync token; afterwards, proves nothing changed."""
    calendar.events().insert(calendarId=CAL, body=event_body("existing")).execute()
    _, token = sync_all(calendar, CAL)
    yield calendar, token
    assert sync_all(calendar, CAL, token)[0] == [], "a refused request changed the calendar"
    assert [item["summary"] for item in list_all(calendar, CAL)[0]] == ["existing"]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({**event_body("x"), "end": {"dateTime": "2026-12-01T08:00:00Z"}}, 400, "timeRangeEmpty"),
        ({"summary": "no times"}, 400, "required"),
        ({**event_body("x"), "start": {"dateTime": "2026-12-01T09:00:00"}}, 400, "required"),
        ({**event_body("x"), "start": {"date": "2026-12-01"}}, 400, "invalid"),
        ({**event_body("x"), "id": "Not_Base32Hex"}, 400, "invalid"),
        ({**event_body("x"), "attendees": [{"displayName": "no email"}]}, 400, "invalid"),
        ({**event_body("x"), "recurrence": ["RRULE:FREQ=SOMETIMES"]}, 400, "invalid"),
        (
            {**event_body("x"), "start": {"dateTime": "2026-12-01T09:00:00", "timeZone": "Mars/Olympus"}},
            400,
            "timeZoneInvalid",
        ),
    ],
)
def test_an_invalid_event_is_refused_and_nothing_changes(
    baseline: tuple[Any, str], body: dict[str, Any], status: int, reason: str
) -> None:
    calendar, _ = baseline
    error = error_of(calendar.events().insert(calendarId=CAL, body=body))
    assert error.resp.status == status
    assert error.error_details[0]["reason"] == reason


def test_a_patch_that_would_end_before_it_starts_changes_nothing(baseline: tuple[Any, str]) -> None:
    calendar, _ = baseline
    (event,) = list_all(calendar, CAL)[0]
    error = error_of(
        calendar.events().patch(calendarId=CAL, eventId=event["id"], body={"end": {"dateTime": "2026-01-01T00:00:00Z"}})
    )
    assert error.error_details[0]["reason"] == "timeRangeEmpty"


def test_a_duplicate_event_id_is_a_409(baseline: tuple[Any, str]) -> None:
    calendar, _ = baseline
    (event,) = list_all(calendar, CAL)[0]
    error = error_of(calendar.events().insert(calendarId=CAL, body={**event_body("x"), "id": event["id"]}))
    assert error.resp.status == 409
    assert error.error_details[0]["reason"] == "duplicate"


def test_malformed_json_is_a_parse_error(calendar_sandbox: RunningCalendar, baseline: tuple[Any, str]) -> None:
    answer = httpx.post(f"{calendar_sandbox.api_endpoint}calendars/{CAL}/events", content=b"{not json", timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"]["errors"][0]["reason"] == "parseError"
    answer = httpx.post(f"{calendar_sandbox.api_endpoint}calendars/{CAL}/events", content=b"[1]", timeout=10)
    assert answer.status_code == 400


def test_unknown_calendars_and_events_are_not_found(baseline: tuple[Any, str]) -> None:
    calendar, _ = baseline
    for call in (
        calendar.events().list(calendarId="nobody@example.com"),
        calendar.events().get(calendarId="nobody@example.com", eventId="abcde12345"),
        calendar.events().get(calendarId=CAL, eventId="abcde12345"),
        calendar.events().patch(calendarId=CAL, eventId="abcde12345", body={"summary": "x"}),
        calendar.events().delete(calendarId=CAL, eventId="abcde12345"),
    ):
        error = error_of(call)
        assert error.resp.status == 404
        assert error.error_details[0]["reason"] == "notFound"


def test_deleting_twice_is_gone(calendar: Any) -> None:
    event = calendar.events().insert(calendarId=CAL, body=event_body("x")).execute()
    calendar.events().delete(calendarId=CAL, eventId=event["id"]).execute()
    error = error_of(calendar.events().delete(calendarId=CAL, eventId=event["id"]))
    assert error.resp.status == 410
    assert error.error_details[0]["reason"] == "deleted"
    assert calendar.events().get(calendarId=CAL, eventId=event["id"]).execute()["status"] == "cancelled"


@pytest.mark.parametrize("params", [{"maxResults": 0}, {"timeMin": "yesterday"}, {"pageToken": "garbage"}])
def test_bad_list_parameters_are_400(calendar: Any, params: dict[str, Any]) -> None:
    calendar.events().insert(calendarId=CAL, body=event_body("x")).execute()
    assert error_of(calendar.events().list(calendarId=CAL, **params)).resp.status == 400


# -- fault injection -------------------------------------------------------------------------------


def test_an_injected_rate_limit_reaches_the_client_as_http_error(
    calendar_sandbox: RunningCalendar, calendar: Any
) -> None:
    calendar.events().insert(calendarId=CAL, body=event_body("x")).execute()
    calendar_sandbox.admin(
        "POST",
        "/_sandbox/faults",
        {"method": "GET", "path": r"/events$", "status": 403, "reason": "rateLimitExceeded", "count": 2},
    )
    for _ in range(2):
        error = error_of(calendar.events().list(calendarId=CAL))
        assert error.resp.status == 403
        assert error.error_details[0]["reason"] == "rateLimitExceeded"
    assert len(calendar.events().list(calendarId=CAL).execute()["items"]) == 1, "count bounds the rule"
    statuses = [entry["status"] for entry in calendar_sandbox.journal() if entry["method"] == "GET"]
    assert statuses == [403, 403, 200]


def test_a_fault_only_hits_its_method_and_path(calendar_sandbox: RunningCalendar, calendar: Any) -> None:
    calendar_sandbox.admin("POST", "/_sandbox/faults", {"method": "PATCH", "path": "/events/", "status": 503})
    event = calendar.events().insert(calendarId=CAL, body=event_body("x")).execute()
    assert calendar.events().get(calendarId=CAL, eventId=event["id"]).execute()["summary"] == "x"
    error = error_of(calendar.events().patch(calendarId=CAL, eventId=event["id"], body={"summary": "y"}))
    assert error.resp.status == 503
    assert error.error_details[0]["reason"] == "backendError"
    calendar_sandbox.admin("DELETE", "/_sandbox/faults")
    assert (
        calendar.events().patch(calendarId=CAL, eventId=event["id"], body={"summary": "y"}).execute()["summary"] == "y"
    )


def test_probability_zero_never_fires_and_latency_delays(calendar_sandbox: RunningCalendar, calendar: Any) -> None:
    calendar_sandbox.admin("POST", "/_sandbox/faults", {"path": "/events", "status": 500, "probability": 0})
    calendar_sandbox.admin("POST", "/_sandbox/faults", {"path": "/events", "latency_ms": 300, "count": 1})
    started = time.monotonic()
    calendar.events().insert(calendarId=CAL, body=event_body("x")).execute()
    assert time.monotonic() - started >= 0.3
    rules = calendar_sandbox.admin("GET", "/_sandbox/faults")["faults"]
    assert [rule["hits"] for rule in rules] == [0, 1]


def test_a_malformed_fault_rule_is_refused_with_the_key(calendar_sandbox: RunningCalendar) -> None:
    answer = httpx.post(f"{calendar_sandbox.url}/_sandbox/faults", json={"path": "x", "probability": 2}, timeout=10)
    assert answer.status_code == 400
    assert "probability" in answer.json()["error"]["message"]


# -- auth, primary, restart ------------------------------------------------------------------------


def test_with_auth_on_a_missing_token_is_refused_and_primary_is_the_callers(tmp_path: Path) -> None:
    from tests_support import FAST_RETRY  # noqa: PLC0415 - local to this scenario

    from confsync.serving import ServedApp  # noqa: PLC0415
    from sandbox.calendar import create_app  # noqa: PLC0415

    sandbox = build_sandbox(auth_tokens={"tok-alice": "alice@example.com"})
    sandbox.retry = FAST_RETRY
    with ServedApp(create_app(sandbox)) as served:
        url = f"{served.url}/calendar/v3/calendars/primary/events"
        refused = httpx.get(url, timeout=10)
        assert refused.status_code == 401
        assert refused.json()["error"]["errors"][0]["reason"] == "authError"
        headers = {"Authorization": "Bearer tok-alice"}
        created = httpx.post(url, json=event_body("mine"), headers=headers, timeout=10)
        assert created.status_code == 200
        assert created.json()["organizer"]["email"] == "alice@example.com"
        listed = httpx.get(f"{served.url}/calendar/v3/calendars/alice@example.com/events", headers=headers, timeout=10)
        assert [item["summary"] for item in listed.json()["items"]] == ["mine"]


def test_state_and_sync_tokens_survive_a_restart_with_the_same_db(tmp_path: Path) -> None:
    from tests_support import FAST_RETRY  # noqa: PLC0415

    from confsync.serving import ServedApp  # noqa: PLC0415
    from sandbox.calendar import create_app  # noqa: PLC0415

    db = tmp_path / "calendar.sqlite"

    def running() -> Any:
        sandbox = build_sandbox(db=db)
        sandbox.retry = FAST_RETRY
        return ServedApp(create_app(sandbox))

    with running() as served:
        calendar = RunningCalendar(build_sandbox(), served.url)
        service = calendar.service()
        kept = service.events().insert(calendarId=CAL, body=event_body("kept")).execute()
        _, token = sync_all(service, CAL)
        calendar.close()
    with running() as served:
        calendar = RunningCalendar(build_sandbox(), served.url)
        service = calendar.service()
        assert service.events().get(calendarId=CAL, eventId=kept["id"]).execute()["summary"] == "kept"
        added = service.events().insert(calendarId=CAL, body=event_body("added")).execute()
        changed, _ = sync_all(service, CAL, token)
        assert [item["id"] for item in changed] == [added["id"]]
        calendar.close()


def test_the_cli_serves_the_sandbox_and_logs_json_lines(tmp_path: Path) -> None:
    port = free_port()
    process = start_confsync(
        *("sandbox", "calendar", "--port", str(port), "--db", str(tmp_path / "c.db")),
        env={"CONFSYNC_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        stdout=None,
    )
    try:
        url = f"http://127.0.0.1:{port}/calendar/v3/calendars/{CAL}/events"
        for _ in range(200):
            try:
                answer = httpx.post(url, json=event_body("via cli"), timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert answer.status_code == 200
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    import json  # noqa: PLC0415

    lines = [json.loads(line) for line in stderr.splitlines()]
    assert any(line["message"] == "request" and line["status"] == 200 for line in lines)
