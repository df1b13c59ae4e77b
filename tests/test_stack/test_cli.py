"""The `confsync` command as a user runs it: a real subprocess of the installed entry point."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import typer
from tests_support.cli import confsync_env, run_confsync, start_confsync

from confsync.serving import free_port
from stack.cli import app


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_confsync(*args, env=confsync_env(**env))


def test_version_prints_the_distribution_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("confsync 0.")


def test_no_arguments_shows_help() -> None:
    result = run()
    assert "Usage" in result.stdout + result.stderr


def _command_paths() -> list[tuple[str, ...]]:
    """Every command and sub-command, as the words a user types."""
    click_group = typer.main.get_command(app)

    def walk(command: object, words: tuple[str, ...]) -> list[tuple[str, ...]]:
        found = [words] if words else []
        if isinstance(command, typer.core.TyperGroup):
            for name, child in command.commands.items():
                found += walk(child, (*words, name))
        return found

    return walk(click_group, ())


@pytest.mark.parametrize("words", _command_paths(), ids=" ".join)
def test_every_command_has_help(words: tuple[str, ...]) -> None:
    result = run(*words, "--help")
    assert result.returncode == 0
    assert "Usage" in result.stdout
    assert len(result.stdout.strip().splitlines()) > 3, "a help text, not just a usage line"


def test_the_command_tree_includes_the_sandbox() -> None:
    assert ("sandbox", "calendar") in _command_paths()


def test_config_json_masks_secrets_and_logs_only_json_lines() -> None:
    result = run(
        "config",
        "--json",
        CONFSYNC_LOG_FORMAT="json",
        CONFSYNC_LOG_LEVEL="debug",
        CONFSYNC_PROVIDER_API_KEY="sk-live-123",
        CONFSYNC_PROJECT_ID="prod-project",
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["CONFSYNC_PROJECT_ID"] == "prod-project"
    assert shown["CONFSYNC_PROVIDER_API_KEY"] == "********"
    assert "sk-live-123" not in result.stdout + result.stderr
    log_lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert log_lines, "the entry point logs at least one line at debug level"
    for line in log_lines:
        assert {"severity", "message", "time"} <= line.keys()


def test_a_bad_setting_is_a_one_line_error_with_exit_code_2() -> None:
    result = run("config", CONFSYNC_CHANNEL_TTL_S="soon")
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "confsync: configuration error: CONFSYNC_CHANNEL_TTL_S: expected a number, got 'soon'"
    )
    assert "Traceback" not in result.stderr


def test_config_table_says_where_each_value_came_from() -> None:
    result = run("config", CONFSYNC_LOCAL_MODE="true")
    assert result.returncode == 0
    line = next(line for line in result.stdout.splitlines() if line.startswith("CONFSYNC_LOCAL_MODE"))
    assert "True" in line
    assert "[from environment]" in line


def test_the_provider_sandbox_needs_an_api_key() -> None:
    result = run("sandbox", "provider", "--port", "0")
    assert result.returncode == 2
    assert "--api-key" in result.stderr


def _local_serve(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """`confsync serve all` in local mode on the in-process transport, as a developer runs it."""
    local = confsync_env(
        store=tmp_path / "state.sqlite",
        CONFSYNC_LOCAL_MODE="true",
        CONFSYNC_TRANSPORT="memory",
        CONFSYNC_WEBHOOK_URL="http://127.0.0.1:9/notifications",
        CONFSYNC_PROVIDER_URL="http://127.0.0.1:9",
        CONFSYNC_PROVIDER_API_KEY="key",
        CONFSYNC_LAG_REPAIR_INTERVAL_S="0",
        CONFSYNC_SHUTDOWN_DEADLINE_S="5",
    )
    return start_confsync("serve", "all", *args, env={**local, **env})


def _refusal(process: subprocess.Popen[str]) -> tuple[int, str]:
    """The exit code and stderr of a serve that should refuse to start (killed if it serves)."""
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("local mode was served instead of refused")
    return process.returncode, stderr


def test_local_mode_is_refused_on_cloud_run(tmp_path: Path) -> None:
    code, stderr = _refusal(_local_serve(tmp_path, "--port", str(free_port()), K_SERVICE="confsync-ingest"))
    assert code == 2
    (line,) = stderr.strip().splitlines()
    assert line == (
        "confsync: configuration error: CONFSYNC_LOCAL_MODE: local mode turns authentication off: "
        "refused on Cloud Run (K_SERVICE=confsync-ingest)"
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "confsync.example.com"])  # noqa: S104 - refused
def test_local_mode_is_refused_on_an_address_other_machines_reach(tmp_path: Path, host: str) -> None:
    code, stderr = _refusal(_local_serve(tmp_path, "--host", host, "--port", str(free_port())))
    assert code == 2
    (line,) = stderr.strip().splitlines()
    assert line.startswith("confsync: configuration error: CONFSYNC_LOCAL_MODE: local mode turns authentication off")
    assert repr(host) in line


@pytest.mark.parametrize(
    ("host", "url_host"), [("127.0.0.1", "127.0.0.1"), ("::1", "[::1]"), ("localhost", "localhost")]
)
def test_local_mode_still_serves_on_loopback(tmp_path: Path, host: str, url_host: str) -> None:
    port = free_port()
    process = _local_serve(tmp_path, "--host", host, "--port", str(port))
    try:
        deadline = time.monotonic() + 30
        answer = None
        while answer is None and process.poll() is None and time.monotonic() < deadline:
            try:
                answer = httpx.get(f"http://{url_host}:{port}/healthz", timeout=2)
            except httpx.TransportError:
                time.sleep(0.1)  # polling a child process's start-up, not waiting out a backoff
        assert answer is not None, process.communicate(timeout=10)[1] if process.poll() is not None else "no answer"
        assert answer.json()["ok"] is True
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0
