"""Google's batch requests on the Calendar sandbox, through google-api-python-client's own
BatchHttpRequest: each call is answered, journaled and notified as if sent alone."""

from __future__ import annotations

from typing import Any

import httpx
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest
from tests_support import RunningCalendar, event_body, sync_all

CAL = "alice@example.com"


def batch(calendar_sandbox: RunningCalendar, answers: dict[str, Any]) -> BatchHttpRequest:
    def record(request_id: str, response: Any, exception: HttpError | None) -> None:
        answers[request_id] = exception if exception is not None else response

    return BatchHttpRequest(callback=record, batch_uri=f"{calendar_sandbox.url}/batch/calendar/v3")


def test_a_batch_of_patches_answers_each_call_and_changes_each_event(calendar_sandbox: RunningCalendar) -> None:
    calendar = calendar_sandbox.service()
    events = [calendar.events().insert(calendarId=CAL, body=event_body(f"e{n}")).execute() for n in range(30)]
    _, token = sync_all(calendar, CAL)
    before = len(calendar_sandbox.journal())
    answers: dict[str, Any] = {}
    requests = batch(calendar_sandbox, answers)
    for n, event in enumerate(events):
        requests.add(
            calendar.events().patch(calendarId=CAL, eventId=event["id"], body={"summary": f"renamed {n}"}),
            request_id=str(n),
        )
    requests.add(calendar.events().patch(calendarId=CAL, eventId="nosuchevent", body={"summary": "x"}), request_id="x")
    requests.execute()

    assert [answers[str(n)]["summary"] for n in range(30)] == [f"renamed {n}" for n in range(30)]
    assert isinstance(answers["x"], HttpError)
    assert answers["x"].resp.status == 404, "one failed call fails alone"
    changed, _ = sync_all(calendar, CAL, token)
    assert sorted(item["summary"] for item in changed) == sorted(f"renamed {n}" for n in range(30))
    inner = calendar_sandbox.journal()[before:]
    assert [entry["method"] for entry in inner].count("PATCH") == 31, "each call journaled as itself"


def test_a_malformed_or_oversized_batch_is_refused_with_a_reason(calendar_sandbox: RunningCalendar) -> None:
    url = f"{calendar_sandbox.url}/batch/calendar/v3"
    plain = httpx.post(url, json={"not": "multipart"}, timeout=10)
    assert plain.status_code == 400
    assert "multipart/mixed" in plain.json()["error"]["message"]
    boundary = "b"
    call = "GET /calendar/v3/calendars/alice@example.com/events HTTP/1.1\r\n\r\n"
    part = f"--b\r\nContent-Type: application/http\r\n\r\n{call}"
    too_many = (part * 1001 + "--b--\r\n").encode()
    refused = httpx.post(
        url, content=too_many, headers={"Content-Type": f"multipart/mixed; boundary={boundary}"}, timeout=30
    )
    assert refused.status_code == 400
    assert "at most 1000 calls" in refused.json()["error"]["message"]
