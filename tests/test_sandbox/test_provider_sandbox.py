"""The conferencing sandbox itself: its OpenAPI spec survives property-based abuse without a
500, bad bodies get the contract's error shape, and conferences survive a restart."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from tests_support import PROVIDER_KEY, RunningProvider
from tests_support.cli import confsync_env, start_confsync

from confsync.serving import ServedApp, free_port
from sandbox.provider import create_app
from sandbox.provider.server import build_sandbox

AUTH = {"Authorization": f"Bearer {PROVIDER_KEY}"}

_app = create_app(build_sandbox(api_key=PROVIDER_KEY))
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_makes_the_server_fail(case: schemathesis.Case) -> None:
    """schemathesis: random valid and invalid requests never get a 5xx, and answers fit the spec."""
    response = case.call(headers=AUTH)
    assert response.status_code < 500, response.text
    case.validate_response(response)


def test_the_spec_names_every_route_of_the_contract() -> None:
    spec = _app.openapi()
    assert set(spec["paths"]) == {"/v1/conferences", "/v1/conferences/{conference_id}"}
    assert set(spec["paths"]["/v1/conferences/{conference_id}"]) == {"get", "patch", "delete"}
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "named"),
    [
        ("POST", "/v1/conferences", {"calendar_id": "a", "event_id": "e"}, {}, "request_id"),
        ("POST", "/v1/conferences", {"calendar_id": "a", "event_id": "e", "request_id": "r", "x": 1}, {}, "x"),
        ("PATCH", "/v1/conferences/cnf_1", {"summary": "s"}, {"Idempotency-Key": "k"}, "event_updated"),
        (
            "PATCH",
            "/v1/conferences/cnf_1",
            {"event_updated": "2026-11-24T10:00:00"},
            {"Idempotency-Key": "k"},
            "event_updated",
        ),
        ("PATCH", "/v1/conferences/cnf_1", {"event_updated": "2026-11-24T10:00:00Z"}, {}, "Idempotency-Key"),
        (
            "PATCH",
            "/v1/conferences/cnf_1",
            {"event_updated": "2026-11-24T10:00:00Z", "start": {"date": "x"}},
            {"Idempotency-Key": "k"},
            "start",
        ),
    ],
)
def test_a_bad_request_gets_a_422_in_the_contracts_error_shape(
    provider_sandbox: RunningProvider,
    method: str,
    path: str,
    body: dict[str, object],
    headers: dict[str, str],
    named: str,
) -> None:
    answer = httpx.request(method, f"{provider_sandbox.url}{path}", json=body, headers={**AUTH, **headers}, timeout=10)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["retryable"] is False
    assert named in error["message"]


def test_a_series_exceptions_are_kept_and_the_last_one_removed_is_gone(provider_sandbox: RunningProvider) -> None:
    body = {"calendar_id": "a@example.com", "event_id": "weekly", "request_id": "r-weekly"}
    url = f"{provider_sandbox.url}/v1/conferences"
    created = httpx.post(url, json=body, headers=AUTH, timeout=10).json()
    cancelled = {"original_start": {"dateTime": "2026-12-08T09:00:00Z"}, "status": "cancelled"}
    moved = {
        "original_start": {"dateTime": "2026-12-15T09:00:00Z"},
        "status": "moved",
        "start": {"dateTime": "2026-12-16T15:00:00Z"},
        "end": {"dateTime": "2026-12-16T16:00:00Z"},
    }

    def patch(key: str, exceptions: list[dict[str, object]], at: str) -> httpx.Response:
        change = {"event_updated": at, "exceptions": exceptions}
        return httpx.patch(f"{url}/{created['id']}", json=change, headers={**AUTH, "Idempotency-Key": key}, timeout=10)

    assert patch("k1", [cancelled, moved], "2026-11-24T10:00:00Z").json()["exceptions"] == [cancelled, moved]
    shown = httpx.get(f"{url}/{created['id']}", headers=AUTH, timeout=10).json()
    assert shown["exceptions"] == [cancelled, moved]
    assert patch("k2", [], "2026-11-24T11:00:00Z").json()["exceptions"] == []
    unplaced = patch("k3", [{**cancelled, "status": "moved"}], "2026-11-24T12:00:00Z")
    assert unplaced.status_code == 422, "a moved occurrence needs its new start and end"


def test_malformed_json_is_a_422_not_a_500(provider_sandbox: RunningProvider) -> None:
    answer = httpx.post(f"{provider_sandbox.url}/v1/conferences", content=b"{oops", headers=AUTH, timeout=10)
    assert answer.status_code == 422


def test_the_journal_counts_api_calls_only(provider_sandbox: RunningProvider) -> None:
    body = {"calendar_id": "a@example.com", "event_id": "e1", "request_id": "r1"}
    created = httpx.post(f"{provider_sandbox.url}/v1/conferences", json=body, headers=AUTH, timeout=10).json()
    httpx.delete(
        f"{provider_sandbox.url}/v1/conferences/{created['id']}", headers={**AUTH, "Idempotency-Key": "d1"}, timeout=10
    )
    provider_sandbox.admin("GET", "/_sandbox/faults")
    journal = provider_sandbox.journal()
    assert [(e["method"], e["idempotency_key"], e["status"]) for e in journal] == [
        ("POST", None, 201),
        ("DELETE", "d1", 204),
    ]
    provider_sandbox.admin("POST", "/_sandbox/reset")
    assert provider_sandbox.journal() == []


def test_a_malformed_fault_rule_is_refused(provider_sandbox: RunningProvider) -> None:
    answer = httpx.post(f"{provider_sandbox.url}/_sandbox/faults", json={"status": 503}, timeout=10)
    assert answer.status_code == 400
    assert "path" in answer.json()["error"]["message"]


def _serve(db: Path, port: int) -> subprocess.Popen[str]:
    return start_confsync(
        *("sandbox", "provider", "--port", str(port), "--db", str(db), "--api-key", PROVIDER_KEY),
        env=confsync_env(CONFSYNC_LOG_FORMAT="json"),
        stdout=None,
    )


def _wait(url: str) -> None:
    for _ in range(300):
        try:
            httpx.get(f"{url}/openapi.json", timeout=1)
        except httpx.TransportError:
            time.sleep(0.05)
        else:
            return
    raise AssertionError(f"{url} never answered")


def test_conferences_and_idempotency_records_survive_a_restart(tmp_path: Path) -> None:
    db, port = tmp_path / "provider.sqlite", free_port()
    url = f"http://127.0.0.1:{port}"
    body = {"calendar_id": "a@example.com", "event_id": "e1", "request_id": "r1", "summary": "kept"}
    patch = {"event_updated": "2026-11-24T10:00:00Z", "summary": "patched"}
    process = _serve(db, port)
    try:
        _wait(url)
        created = httpx.post(f"{url}/v1/conferences", json=body, headers=AUTH, timeout=10).json()
        first = httpx.patch(
            f"{url}/v1/conferences/{created['id']}", json=patch, headers={**AUTH, "Idempotency-Key": "p1"}, timeout=10
        ).json()
    finally:
        process.terminate()
        process.communicate(timeout=20)
    process = _serve(db, port)
    try:
        _wait(url)
        shown = httpx.get(f"{url}/v1/conferences/{created['id']}", headers=AUTH, timeout=10).json()
        assert shown["summary"] == "patched"
        assert shown["version"] == 2
        replay = httpx.patch(
            f"{url}/v1/conferences/{created['id']}",
            json={**patch, "summary": "other"},
            headers={**AUTH, "Idempotency-Key": "p1"},
            timeout=10,
        ).json()
        assert replay == first
        again = httpx.post(f"{url}/v1/conferences", json=body, headers=AUTH, timeout=10)
        assert again.status_code == 200
        assert again.json()["id"] == created["id"]
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert all("severity" in json.loads(line) for line in stderr.splitlines())
    assert PROVIDER_KEY not in stderr


# -- the shortcut past FastAPI answers exactly as FastAPI does ------------------------------------

_WHEN = "2026-11-24T10:00:00.000001Z"
_EARLIER = "2026-11-24T09:00:00Z"
_LATER = "2027-01-01T00:00:00Z"
_PATCH = {"event_updated": _WHEN, "summary": "Review", "attendees": ["a@example.com"]}
_JSON = {"Content-Type": "application/json"}

# (method, path under /v1/conferences/, headers, body): a story, so later steps meet earlier state.
_STORY: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("PATCH", "{id}", {"Idempotency-Key": "k1", **_JSON}, json.dumps(_PATCH).encode()),
    ("PATCH", "{id}", {"Idempotency-Key": "k1", **_JSON}, json.dumps({**_PATCH, "summary": "x"}).encode()),
    ("PATCH", "{id}", {"Idempotency-Key": "k2", **_JSON}, json.dumps({"event_updated": _EARLIER}).encode()),
    ("PATCH", "{id}", {"Idempotency-Key": "k3", **_JSON}, json.dumps({"summary": "no version"}).encode()),
    ("PATCH", "{id}", {"Idempotency-Key": "k3", **_JSON}, json.dumps({**_PATCH, "colour": "red"}).encode()),
    ("PATCH", "{id}", {"Idempotency-Key": "k3", **_JSON}, b'{"event_updated": '),
    ("PATCH", "{id}", {"Idempotency-Key": "k3", **_JSON}, b"\xff\xfe"),
    ("PATCH", "{id}", {"Idempotency-Key": "k3", "Content-Type": "text/plain"}, json.dumps(_PATCH).encode()),
    ("PATCH", "{id}", {"Idempotency-Key": "k 3", **_JSON}, json.dumps(_PATCH).encode()),
    ("PATCH", "{id}", _JSON, json.dumps(_PATCH).encode()),
    ("PATCH", "cnf_unknown", {"Idempotency-Key": "k4", **_JSON}, json.dumps(_PATCH).encode()),
    ("PATCH", "x" * 65, {"Idempotency-Key": "k4", **_JSON}, json.dumps(_PATCH).encode()),
    ("DELETE", "{id}", {}, None),
    ("DELETE", "{id}", {"Idempotency-Key": "d1"}, None),
    ("DELETE", "{id}", {"Idempotency-Key": "d1"}, None),
    ("DELETE", "{id}", {"Idempotency-Key": "d2"}, None),
    ("PATCH", "{id}", {"Idempotency-Key": "k5", **_JSON}, json.dumps({**_PATCH, "event_updated": _LATER}).encode()),
    ("DELETE", "cnf_unknown", {"Idempotency-Key": "d3"}, None),
    ("GET", "{id}", {}, None),
]  # fmt: skip


def _tell_story(shortcut: bool) -> tuple[list[tuple[int, str, object]], list[int]]:
    """Each answer of the story (status, content type, body without the conference id, clock
    times and random numbers), and the statuses the journal recorded."""
    app = create_app(build_sandbox(api_key=PROVIDER_KEY), shortcut=shortcut)
    with ServedApp(app) as served, httpx.Client(base_url=served.url, headers=AUTH, timeout=10) as client:
        created = client.post("/v1/conferences", json={"calendar_id": "a", "event_id": "e", "request_id": "r"})
        conference_id = created.json()["id"]
        answers = []
        for method, path, headers, body in _STORY:
            url = "/v1/conferences/" + path.format(id=conference_id)
            answer = client.request(method, url, headers=headers, content=body)
            text = answer.text.replace(conference_id, "{id}")
            value = json.loads(text) if text else None
            if isinstance(value, dict):
                for drawn in ("updated_at", "passcode", "phone_pin"):  # the clock's and random
                    value.pop(drawn, None)
            answers.append((answer.status_code, answer.headers.get("content-type", ""), value))
        journal = [entry["status"] for entry in client.get("/_sandbox/requests").json()]
    return answers, journal


def test_the_shortcut_past_fastapi_answers_every_request_as_fastapi_does() -> None:
    """Valid, replayed, stale, malformed, unauthenticated-by-key and deleted cases alike: the same
    status, body and journal with and without the shortcut (and the story reaches each case)."""
    fast, fast_journal = _tell_story(shortcut=True)
    slow, slow_journal = _tell_story(shortcut=False)
    assert fast == slow
    assert fast_journal == slow_journal
    assert [status for status, _, _ in fast] == [
        200, 200, 409, 422, 422, 422, 422, 422, 422, 422, 404, 422, 422, 204, 204, 204, 409, 404, 200,
    ]  # fmt: skip
    assert fast[1] == fast[0], "a repeated Idempotency-Key replays the first answer"
