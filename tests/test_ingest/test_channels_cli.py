"""`confsync channels ...` as an operator runs it, against the calendar sandbox and a SQLite store."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tests_support import RunningCalendar, event_body
from tests_support.cli import confsync_env, run_confsync

CAL = "alice@example.com"


def cli(running: RunningCalendar, store: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = confsync_env(
        store=store,
        CONFSYNC_CALENDAR_API_ENDPOINT=running.api_endpoint,
        CONFSYNC_WEBHOOK_URL="http://127.0.0.1:9/notifications",
        CONFSYNC_CHANNEL_TTL_S="3600",
        CONFSYNC_LOG_LEVEL="warning",
        **extra_env,
    )
    return run_confsync("channels", *args, env=env)


def test_ensure_list_renew_and_stop_from_the_command_line(calendar_sandbox: RunningCalendar, tmp_path: Path) -> None:
    store = tmp_path / "state.sqlite"
    calendar_sandbox.service().events().insert(calendarId=CAL, body=event_body("x")).execute()
    ensured = cli(calendar_sandbox, store, "ensure", CAL)
    assert ensured.returncode == 0, ensured.stderr
    channel_id = ensured.stdout.split()[0]

    listed = json.loads(cli(calendar_sandbox, store, "list", "--json").stdout)
    assert [row["channel_id"] for row in listed] == [channel_id]
    assert "token" not in json.dumps(listed)

    renewed = cli(calendar_sandbox, store, "renew", "--before", "2h")
    assert renewed.returncode == 0, renewed.stderr
    assert "renewed 1, gone 0" in renewed.stdout
    (new,) = json.loads(cli(calendar_sandbox, store, "list", "--json").stdout)
    assert new["channel_id"] != channel_id

    stopped = cli(calendar_sandbox, store, "stop", CAL)
    assert "stopped 1 channel(s)" in stopped.stdout
    assert json.loads(cli(calendar_sandbox, store, "list", "--json").stdout) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("renew", "--before", "soon"), "expected a duration"),
        (("stop",), "give a CALENDAR_ID or --channel ID"),
        (("ensure", "nobody@example.com"), "Calendar API 404"),
    ],
)
def test_bad_requests_get_a_clear_message(
    calendar_sandbox: RunningCalendar, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = cli(calendar_sandbox, tmp_path / "s.sqlite", *args)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_channel_commands_act_as_the_calendars_user_with_the_configured_credentials(
    calendar_sandbox: RunningCalendar, tmp_path: Path
) -> None:
    """The commands use CONFSYNC_CALENDAR_USER_TOKENS_FILE as the services do, for the user the
    calendar belongs to: a user without a token is refused by name, never watched anonymously."""
    from confsync.store.sqlite import SqliteStore  # noqa: PLC0415

    store = tmp_path / "state.sqlite"
    state = SqliteStore(store)
    state.ensure_calendar(CAL, subject="alice@example.com")
    state.close()
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"bob@example.com": "1//bob-refresh-token"}))
    credentials = {
        "CONFSYNC_CALENDAR_USER_TOKENS_FILE": str(tokens),
        "CONFSYNC_OAUTH_CLIENT_ID": "client.apps.googleusercontent.com",
        "CONFSYNC_OAUTH_CLIENT_SECRET": "client-secret",
    }
    ensured = cli(calendar_sandbox, store, "ensure", CAL, **credentials)
    assert ensured.returncode == 1
    assert "no refresh token for alice@example.com" in ensured.stderr
    assert "bob-refresh-token" not in ensured.stderr + ensured.stdout
    (refused,) = json.loads(cli(calendar_sandbox, store, "list", "--json").stdout)
    assert refused["confirmed"] is False, "never watched; the next pass tries again and marks it disconnected"
    renewed = cli(calendar_sandbox, store, "renew", "--before", "1m", **credentials)
    assert "disconnected 1" in renewed.stdout, renewed.stdout + renewed.stderr
    assert json.loads(cli(calendar_sandbox, store, "list", "--json").stdout) == []
