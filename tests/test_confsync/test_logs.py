"""Logging: JSON lines in Cloud Logging's shape, and secrets that never reach them."""

from __future__ import annotations

import io
import json
import logging
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from confsync.contracts import CommandKind
from confsync.logs import REDACTED, SAMPLED_FIELD, SPAN_FIELD, TRACE_FIELD, configure_logging
from confsync.settings import Secret, Settings
from confsync.tracing import span

TOKEN = "ya29.a0AfH6SMBx-secret-access-token"


@pytest.fixture(autouse=True)
def _restore_global_logging() -> Iterator[None]:
    """configure_logging sets process-wide state; put it back so no other test inherits it."""
    thread_hook = threading.excepthook  # pytest's own, which turns thread crashes into test failures
    yield
    threading.excepthook = thread_hook
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


@pytest.fixture
def json_lines() -> io.StringIO:
    stream = io.StringIO()
    configure_logging(Settings(log_format="json", log_level="debug"), stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_json_in_cloud_loggings_shape(json_lines: io.StringIO) -> None:
    structlog.get_logger("confsync.test").warning("channel renewed", calendar_id="a@example.com")
    (line,) = lines(json_lines)
    assert line["severity"] == "WARNING"
    assert line["message"] == "channel renewed"
    assert line["calendar_id"] == "a@example.com"
    assert line["time"].endswith("Z")


def test_any_value_is_rendered_as_json_with_objects_as_their_text(json_lines: io.StringIO) -> None:
    class Opaque:
        def __str__(self) -> str:
            return f"opaque with Bearer {TOKEN}"

    when = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)
    structlog.get_logger().info(
        "odd values",
        when=when,
        by_number={1: "one", (2, 3): Opaque()},
        pair=("a", 2, None, 1.5, True),
        seen={"x"},
        raw=b"bytes \xff",
        kind=CommandKind.UPDATE,
    )
    (line,) = lines(json_lines)
    assert line["when"] == str(when)
    assert line["by_number"] == {"1": "one", "(2, 3)": f"opaque with Bearer {REDACTED}"}
    assert line["pair"] == ["a", 2, None, 1.5, True]
    assert line["seen"] == ["x"]
    assert line["raw"] == "bytes \ufffd"
    assert line["kind"] == "update"


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


def test_bound_context_and_the_trace_appear_on_every_line_of_a_span() -> None:
    stream = io.StringIO()
    configure_logging(Settings(log_format="json", log_level="debug", project_id="prod-project"), stream=stream)
    log = structlog.get_logger()
    log.info("before")
    cloud_run = {"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"}
    with span("request", parent=cloud_run), structlog.contextvars.bound_contextvars(calendar_id="a@example.com"):
        log.info("one")
        logging.getLogger("uvicorn.error").warning("two")
    log.info("after")
    before, *inside, after = lines(stream)
    assert len(inside) == 2
    for line in inside:
        assert line[TRACE_FIELD] == "projects/prod-project/traces/105445aa7843bc8bf206b12000100000"
        assert line[SPAN_FIELD] == "0000000000000001"
        assert line[SAMPLED_FIELD] is True
    assert inside[0]["calendar_id"] == "a@example.com"
    assert TRACE_FIELD not in before, "no trace outside a span"
    assert TRACE_FIELD not in after


def test_the_level_setting_filters_lower_levels() -> None:
    stream = io.StringIO()
    configure_logging(Settings(log_format="json", log_level="warning"), stream=stream)
    structlog.get_logger().info("hidden")
    structlog.get_logger().warning("shown")
    assert [line["message"] for line in lines(stream)] == ["shown"]


def test_the_console_format_is_for_people_not_json() -> None:
    stream = io.StringIO()
    configure_logging(Settings(log_format="console"), stream=stream)
    structlog.get_logger().info("hello", token="t0ps3cret")
    text = stream.getvalue()
    assert "hello" in text
    assert "t0ps3cret" not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


# -- every configured secret, every credential shape ------------------------------------------------

PROVIDER_SECRET = "prov-key-9f8e7d6c5b4a"
CLIENT_SECRET = "oauth client s3cret/with+odd=chars"
DEV_SECRET = "dev-token-for-tests"


@pytest.fixture
def with_secrets() -> io.StringIO:
    stream = io.StringIO()
    settings = Settings(
        log_format="json",
        provider_api_key=Secret(PROVIDER_SECRET),
        oauth_client_secret=Secret(CLIENT_SECRET),
        dev_token=Secret(DEV_SECRET),
    )
    configure_logging(settings, stream=stream)
    return stream


def test_every_configured_secret_is_redacted_wherever_it_appears(with_secrets: io.StringIO) -> None:
    log = structlog.get_logger()
    message = f"provider answered for {PROVIDER_SECRET}"
    log.info(message, note=f"client secret is {CLIENT_SECRET}!")
    log.info("nested", request={"headers": [("X-Debug", f"k={PROVIDER_SECRET}")], "args": [DEV_SECRET, 1]})
    log.info("an object", error=ValueError(f"rejected {DEV_SECRET}"), body=f"x-{PROVIDER_SECRET}".encode())
    log.info("encoded", url=f"https://auth.test/cb?s={urllib.parse.quote(CLIENT_SECRET, safe='')}")
    log.info("as JSON", body=json.dumps({"detail": CLIENT_SECRET}))
    raw = with_secrets.getvalue()
    for secret in (PROVIDER_SECRET, CLIENT_SECRET, DEV_SECRET):
        assert secret not in raw
    assert urllib.parse.quote(CLIENT_SECRET, safe="") not in raw
    assert json.dumps(CLIENT_SECRET)[1:-1] not in raw
    first, second, third, *_ = lines(with_secrets)
    assert first["message"] == f"provider answered for {REDACTED}"
    assert first["note"] == f"client secret is {REDACTED}!"
    assert second["request"] == {"headers": [["X-Debug", f"k={REDACTED}"]], "args": [REDACTED, 1]}
    assert third["error"] == f"rejected {REDACTED}"


def test_a_configured_secret_in_a_traceback_is_redacted(with_secrets: io.StringIO) -> None:
    def call_provider() -> None:
        raise RuntimeError(f"refused key {PROVIDER_SECRET} for client {CLIENT_SECRET}")

    try:
        call_provider()
    except RuntimeError:
        structlog.get_logger().exception("provider call failed")
    logging.getLogger("google.auth").error("refresh failed", exc_info=RuntimeError(f"bad {CLIENT_SECRET}"))
    structlog_line, stdlib_line = lines(with_secrets)
    assert "call_provider" in structlog_line["exception"]
    assert f"refused key {REDACTED} for client {REDACTED}" in structlog_line["exception"]
    assert f"bad {REDACTED}" in stdlib_line["exception"]
    assert PROVIDER_SECRET not in with_secrets.getvalue()
    assert CLIENT_SECRET not in with_secrets.getvalue()


def test_a_short_secret_is_redacted_as_a_word_not_inside_other_words() -> None:
    stream = io.StringIO()
    configure_logging(Settings(log_format="json", dev_token=Secret("dev")), stream=stream)
    structlog.get_logger().info("cannot be served by several processes", caller="dev", note="token was dev.")
    (line,) = lines(stream)
    assert line["message"] == "cannot be served by several processes"
    assert line["caller"] == REDACTED
    assert line["note"] == f"token was {REDACTED}."


@pytest.mark.parametrize(
    "key", ["channelToken", "refreshToken", "clientSecret", "accessToken", "apiKey", "X-Goog-Channel-Token"]
)
def test_camel_case_and_header_shaped_secret_keys_are_redacted(json_lines: io.StringIO, key: str) -> None:
    structlog.get_logger().info("calendar answered", body={key: "s3cr3t-value", "nextSyncToken": "CPDAlvWDx70CGAU="})
    (line,) = lines(json_lines)
    assert line["body"] == {key: REDACTED, "nextSyncToken": "CPDAlvWDx70CGAU="}, "a sync cursor is not a credential"


PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
    "q0Zb3kKJ+8r/Yv1V2o==\n"
    "-----END PRIVATE KEY-----"
)


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        ("refresh with 1//0gLmN0pQrStUvWxYz-ab_cdEF then retry", ["refresh with", "then retry"], ["1//0g", "LmN0p"]),
        ("client GOCSPX-AbCdEf1234567890_xyz-QRST rejected", ["client", "rejected"], ["GOCSPX", "AbCdEf"]),
        (f"loaded key\n{PEM}\nfrom file", ["loaded key", "from file"], ["MIIEvQ", "q0Zb3k", "BEGIN"]),
        (
            "service account " + json.dumps({"private_key": PEM + "\n", "client_email": "sa@p.iam.test"}),
            ["service account", "sa@p.iam.test"],
            ["MIIEvQ", "q0Zb3k"],
        ),
        ("answer cut short: -----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAx", ["answer cut short"], ["MIIEpA"]),
        (
            "GET https://api.test/v1/x?api_key=k3y-vAlue&alt=json&access_token=t0k-v4lue#frag",
            ["https://api.test/v1/x?api_key=", "&alt=json&access_token=", "#frag"],
            ["k3y-vAlue", "t0k-v4lue"],
        ),
        (
            "POST /token refresh_token=r3fr3sh&client_secret=cl13nt&grant_type=refresh_token",
            ["grant_type=refresh_token"],
            ["r3fr3sh", "cl13nt"],
        ),
        (
            "https://maps.test/api?key=pl41nKey&code=4/0Ab-c0de&sig=s1g",
            ["https://maps.test/api?key="],
            ["pl41nKey", "0Ab-c0de", "s1g"],
        ),
        (
            'token endpoint said {"access_token": "at-s3cret", "expires_in": 3599}',
            ['"expires_in": 3599'],
            ["at-s3cret"],
        ),
        ("{'apiKey': 'k-s3cret', 'id': 1}", ["'id': 1"], ["k-s3cret"]),
    ],
)
def test_credential_shaped_text_is_redacted_and_the_rest_kept(
    json_lines: io.StringIO, text: str, kept: list[str], gone: list[str]
) -> None:
    structlog.get_logger().info(text, detail=[text])
    (line,) = lines(json_lines)
    for shown in (line["message"], line["detail"][0]):
        assert REDACTED in shown
        for part in kept:
            assert part in shown
        for part in gone:
            assert part not in shown


def test_sync_cursors_and_ordinary_words_are_not_mistaken_for_credentials(json_lines: io.StringIO) -> None:
    text = "listing with sync_token=CPDAlvWDx70CGAU= pageToken=abc, basically a key step; exit code=1"
    structlog.get_logger().info(text)
    (line,) = lines(json_lines)
    assert line["message"] == text


def _crash_in_a_thread(message: str) -> None:
    def boom() -> None:
        raise RuntimeError(message)

    thread = threading.Thread(target=boom, name="renewer")
    thread.start()
    thread.join()


def test_an_exception_that_ends_a_thread_is_logged_through_the_pipeline(with_secrets: io.StringIO) -> None:
    _crash_in_a_thread(f"provider refused {PROVIDER_SECRET}")
    (line,) = lines(with_secrets)
    assert line["severity"] == "ERROR"
    assert line["thread"] == "renewer"
    assert "RuntimeError: provider refused" in line["exception"]
    assert "boom" in line["exception"]
    assert PROVIDER_SECRET not in with_secrets.getvalue()


def test_a_thread_that_asks_to_exit_is_not_an_error(json_lines: io.StringIO) -> None:
    thread = threading.Thread(target=lambda: (_ for _ in ()).throw(SystemExit(0)))
    thread.start()
    thread.join()
    assert lines(json_lines) == []
