"""The conferencing sandbox itself: its OpenAPI spec survives property-based abuse without a
500, bad bodies get the contract's error shape, and conferences survive a restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from tests_support import PROVIDER_KEY, RunningProvider

from confsync.serving import free_port
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
    env = {**os.environ, "CONFSYNC_LOG_FORMAT": "json"}
    env = {key: value for key, value in env.items() if not key.startswith("CONFSYNC_") or key == "CONFSYNC_LOG_FORMAT"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "confsync",
            "sandbox",
            "provider",
            "--port",
            str(port),
            "--db",
            str(db),
            "--api-key",
            PROVIDER_KEY,
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
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
