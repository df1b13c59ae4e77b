"""`confsync serve publisher` on the emulator: a refused command is dead-lettered with the
provider's answer, `confsync deadletter list` shows it, and after the cause is fixed
`confsync deadletter replay` brings it back and the running publisher applies it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from google.cloud import pubsub_v1
from tests_support import PROVIDER_KEY, RunningProvider
from tests_support.cli import confsync_env, run_confsync, start_confsync

from confsync.contracts import CommandKind, CommandReason, ConferenceCommand, ConferencePayload, EventTime
from confsync.ports import NewConference
from confsync.provider import HttpConferenceProvider
from confsync.settings import Secret


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_confsync(*args, env=env, timeout=120)


def test_dead_letters_are_listed_and_replayed_after_the_fix(
    pubsub_emulator_host: str, provider_sandbox: RunningProvider, tmp_path: Path
) -> None:
    project = f"pub-{uuid.uuid4().hex[:8]}"
    env = confsync_env(
        store=tmp_path / "state.sqlite",
        PUBSUB_EMULATOR_HOST=pubsub_emulator_host,
        CONFSYNC_PROJECT_ID=project,
        CONFSYNC_PROVIDER_URL=provider_sandbox.url,
        CONFSYNC_PROVIDER_API_KEY=PROVIDER_KEY,
        CONFSYNC_LOG_FORMAT="json",
    )
    assert cli(env, "pubsub", "bootstrap").returncode == 0
    client = HttpConferenceProvider(provider_sandbox.url, Secret(PROVIDER_KEY), timeout_s=5)
    conference = client.create(NewConference(calendar_id="a@example.com", event_id="e1", request_id="r1")).id
    provider_sandbox.admin("POST", "/_sandbox/faults", {"method": "PATCH", "path": "^/v1/", "status": 400, "count": 1})
    server = start_confsync("serve", "publisher", env=env)
    publisher = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    try:
        command = ConferenceCommand.create(
            kind=CommandKind.UPDATE,
            conference_id=conference,
            calendar_id="a@example.com",
            event_id="e1",
            event_updated=datetime(2026, 11, 24, 10, tzinfo=UTC),
            reason=CommandReason.CHANGED,
            payload=ConferencePayload(
                start=EventTime(date="2026-12-24"), end=EventTime(date="2026-12-25"), summary="fixed"
            ),
        )
        topic = publisher.topic_path(project, "conference-commands")
        publisher.publish(topic, command.to_bytes(), ordering_key=conference).result(timeout=20)

        listed: list[dict[str, object]] = []
        deadline = time.monotonic() + 30
        while not listed and time.monotonic() < deadline:
            listed = json.loads(cli(env, "deadletter", "list", "--json").stdout)
        (entry,) = listed
        assert entry["status"] == "400"
        assert entry["error"] == "PermanentError"
        assert entry["conference_id"] == conference
        assert "400" in str(entry["reason"])

        dry = cli(env, "deadletter", "replay", "--all", "--dry-run")
        assert "would replay 1" in dry.stdout
        assert len(json.loads(cli(env, "deadletter", "list", "--json").stdout)) == 1, "a dry run changes nothing"

        replay = cli(env, "deadletter", "replay", "--all")  # the fault was one-off: the cause is gone
        assert "replayed 1" in replay.stdout, replay.stderr
        deadline = time.monotonic() + 30
        while client.get(conference).summary != "fixed" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get(conference).summary == "fixed"
        assert json.loads(cli(env, "deadletter", "list", "--json").stdout) == []
        patches = [e for e in provider_sandbox.journal() if e["method"] == "PATCH"]
        assert [p["status"] for p in patches] == [400, 200]
        assert {p["idempotency_key"] for p in patches} == {command.command_id}
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
        assert server.returncode == 0, err
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate(timeout=30)  # closes its pipes
        publisher.transport.close()
        client.close()


def test_serve_publisher_without_a_provider_says_what_is_missing(tmp_path: Path) -> None:
    result = cli(confsync_env(store=tmp_path / "s.sqlite"), "serve", "publisher")
    assert result.returncode == 2
    assert "CONFSYNC_PROVIDER_URL" in result.stderr


def test_looking_at_dead_letters_does_not_hide_them_from_the_next_command(pubsub_emulator_host: str) -> None:
    """`list` hands each dead letter straight back: the next `list` or `replay`, run at once,
    must see it (a retry backoff on the holding subscription would delay it after every look)."""
    from confsync.settings import Settings  # noqa: PLC0415
    from confsync.transport.pubsub import bootstrap, open_publisher  # noqa: PLC0415
    from confsync.transport.topology import topology  # noqa: PLC0415
    from publishers.deadletter import DeadLetters  # noqa: PLC0415

    settings = Settings(project_id=f"dl-{uuid.uuid4().hex[:8]}", pubsub_emulator_host=pubsub_emulator_host)
    bootstrap(settings, topology(settings))
    publisher = open_publisher(settings)
    dead_letters = DeadLetters(settings)
    try:
        command = ConferenceCommand.create(
            kind=CommandKind.DELETE,
            conference_id="cnf_1",
            calendar_id="a@example.com",
            event_id="e1",
            event_updated=datetime(2026, 11, 24, 10, tzinfo=UTC),
            reason=CommandReason.CANCELLED,
            fingerprint="cancelled",
        )
        attributes = {"dead_letter_reason": "PermanentError: 400", "dead_letter_error": "PermanentError"}
        publisher.publish(
            settings.topic_conference_commands_dead, command.to_bytes(), ordering_key="", attributes=attributes
        )
        looks = [len(dead_letters.peek()) for _ in range(6)]
        assert looks == [1] * 6
        replayed = dead_letters.replay(publisher, ids=None)
        assert [entry.conference_id for entry in replayed] == ["cnf_1"]
        assert dead_letters.peek() == []
    finally:
        dead_letters.close()
        publisher.close()
