"""Logging: JSON lines in Cloud Logging's shape, and secrets that never reach them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from confsync.logs import REDACTED, TRACE_FIELD, bind_trace, configure_logging, trace_from_headers
from confsync.settings import Secret, Settings

TOKEN = "ya29.a0AfH6SMBx-secret-access-token"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(Settings(log_format="json", log_level="debug"), stream=stream)
    yield stream
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_json_in_cloud_loggings_shape(json_lines: io.StringIO) -> None:
    structlog.get_logger("confsync.test").warning("channel renewed", calendar_id="a@example.com")
    (line,) = lines(json_lines)
    assert line["severity"] == "WARNING"
    assert line["message"] == "channel renewed"
    assert line["calendar_id"] == "a@example.com"
    assert line["time"].endswith("Z")


def test_a_bearer_token_in_the_event_dict_comes_out_redacted(json_lines: io.StringIO) -> None:
    structlog.get_logger().info(
        "calling provider",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        note=f"retrying with Bearer {TOKEN}",
        channel_token="per-channel-secret",
        api_key=Secret("provider-key"),
        sync_token="CPDAlvWDx70CEPDAlvWDx70CGAU=",
    )
    raw = json_lines.getvalue()
    assert TOKEN not in raw
    assert "per-channel-secret" not in raw
    assert "provider-key" not in raw
    (line,) = lines(json_lines)
    assert line["headers"] == {"Authorization": REDACTED, "Content-Type": "application/json"}
    assert line["note"] == f"retrying with Bearer {REDACTED}"
    assert line["channel_token"] == REDACTED
    assert line["api_key"] == REDACTED
    assert line["sync_token"] == "CPDAlvWDx70CEPDAlvWDx70CGAU=", "a sync cursor is not a credential"


def test_secrets_in_a_traceback_are_redacted(json_lines: io.StringIO) -> None:
    try:
        raise RuntimeError(f"401 for Authorization: Bearer {TOKEN}")
    except RuntimeError:
        structlog.get_logger().exception("provider call failed")
    (line,) = lines(json_lines)
    assert line["severity"] == "ERROR"
    assert "RuntimeError" in line["exception"]
    assert TOKEN not in json_lines.getvalue()


def test_api_keys_and_id_tokens_in_free_text_are_redacted(json_lines: io.StringIO) -> None:
    key = "AIza" + "S" * 35
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJlbWFpbCI6ImFAYi5jIn0.c2lnbmF0dXJl"
    structlog.get_logger().info(f"key={key} id_token={jwt}")
    (line,) = lines(json_lines)
    assert key not in line["message"]
    assert jwt not in line["message"]


def test_third_party_stdlib_loggers_come_out_as_the_same_json(json_lines: io.StringIO) -> None:
    logging.getLogger("uvicorn.error").error("Authorization: Bearer %s rejected", TOKEN)
    (line,) = lines(json_lines)
    assert line["severity"] == "ERROR"
    assert line["logger"] == "uvicorn.error"
    assert TOKEN not in line["message"]


def test_bound_context_and_trace_appear_on_every_line(json_lines: io.StringIO) -> None:
    bind_trace({"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"}, "prod-project")
    structlog.contextvars.bind_contextvars(calendar_id="a@example.com")
    log = structlog.get_logger()
    log.info("one")
    log.debug("two")
    for line in lines(json_lines):
        assert line[TRACE_FIELD] == "projects/prod-project/traces/105445aa7843bc8bf206b12000100000"
        assert line["calendar_id"] == "a@example.com"


def test_the_level_setting_filters_lower_levels() -> None:
    stream = io.StringIO()
    configure_logging(Settings(log_format="json", log_level="warning"), stream=stream)
    try:
        structlog.get_logger().info("hidden")
        structlog.get_logger().warning("shown")
        assert [line["message"] for line in lines(stream)] == ["shown"]
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()


def test_the_console_format_is_for_people_not_json() -> None:
    stream = io.StringIO()
    configure_logging(Settings(log_format="console"), stream=stream)
    try:
        structlog.get_logger().info("hello", token="t0ps3cret")
        text = stream.getvalue()
        assert "hello" in text
        assert "t0ps3cret" not in text
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()


@pytest.mark.parametrize(
    ("headers", "trace"),
    [
        ({"x-cloud-trace-context": "105445AA7843BC8BF206B12000100000"}, "105445aa7843bc8bf206b12000100000"),
        (
            {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ),
        ({"x-cloud-trace-context": "not-a-trace"}, None),
        ({}, None),
    ],
)
def test_trace_ids_are_read_from_either_header(headers: dict[str, str], trace: str | None) -> None:
    expected = f"projects/p/traces/{trace}" if trace else None
    assert trace_from_headers(headers, "p") == expected
