"""The status view (ingest/status.py): one calendar in step or not and why, the totals, and the
same content from ``confsync status --json`` and the scheduler's ``GET /v1/status``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from tests_support.cli import confsync_env, run_confsync
from tests_support.oidc import GOOGLE_CERT, sign

from confsync.errors import NotFound
from confsync.oidc import OidcVerifier
from confsync.provider import HttpConferenceProvider
from confsync.serving import ServedApp
from confsync.settings import Secret, Settings
from confsync.store import CalendarStatus, ChannelRecord, HeldCommand, Link, LinkState, OutboxEntry
from confsync.store.sqlite import SqliteStore
from confsync.transport.memory import MemoryBroker
from ingest.app import IngestParts, ingest_routes
from ingest.channels import ChannelManager
from ingest.status import LinkCounts, StatusReader, Verdict
from ingest.webhook import WebhookStats
from stack.root import Stack

NOW = datetime.now(UTC).replace(microsecond=0)  # the CLI reads the real clock
IN_STEP, LAGGING, OFF = "in-step@example.com", "lagging@example.com", "off@example.com"
PENDING, UNWATCHED = "pending@example.com", "unwatched@example.com"
REVOKED = "invalid_grant: Token has been expired or revoked."


def channel(calendar_id: str, expires_in: timedelta) -> ChannelRecord:
    return ChannelRecord(f"ch-{calendar_id}", calendar_id, "res", Secret("t"), NOW + expires_in)


def listed(store: SqliteStore, calendar_id: str, *, at: datetime, notified: datetime | None = None) -> None:
    """A calendar with its owner, listed at ``at``, notified at ``notified``, one live link, watched."""
    store.ensure_calendar(calendar_id, subject=calendar_id)
    if notified is not None:
        store.record_notification(calendar_id, f"ch-{calendar_id}", 1, notified)
    assert store.save_sync_token(calendar_id, "tok", expected_version=0, at=at)
    store.upsert_link(Link(calendar_id, "evt-1", f"cnf-{calendar_id}"))
    store.add_channel(channel(calendar_id, timedelta(days=6)))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "state.sqlite")
    hour = timedelta(hours=1)
    listed(store, IN_STEP, at=NOW - hour, notified=NOW - 2 * hour)  # notified, then listed
    store.upsert_link(Link(IN_STEP, "evt-2", "cnf-2", state=LinkState.LEAVING))
    store.upsert_link(Link(IN_STEP, "evt-3", "cnf-3", state=LinkState.DELETED))
    listed(store, LAGGING, at=NOW - hour)
    store.record_notification(LAGGING, f"ch-{LAGGING}", 2, NOW - timedelta(seconds=42))
    listed(store, OFF, at=NOW - hour)
    store.set_calendar_status(OFF, CalendarStatus.DISCONNECTED, REVOKED)
    store.hold_command(HeldCommand(OFF, "cmd-held", f"cnf-{OFF}", b"{}", NOW, "vendor grant revoked"))
    listed(store, PENDING, at=NOW - hour)
    store.outbox_add([OutboxEntry("cmd-1", f"cnf-{PENDING}", b"{}", NOW + hour, calendar_id=PENDING)])
    store.ensure_calendar(UNWATCHED, subject=UNWATCHED)
    assert store.save_sync_token(UNWATCHED, "tok", expected_version=0, at=NOW - hour)
    store.upsert_link(Link(UNWATCHED, "evt-1", "cnf-u"))
    store.add_channel(channel(UNWATCHED, timedelta(hours=-1)))  # expired: it hears nothing
    store.add_channel(channel("soon@example.com", timedelta(hours=2)))
    yield store
    store.close()


def reader(store: SqliteStore) -> StatusReader:
    return StatusReader(store, clock=lambda: NOW)


def test_each_calendar_says_whether_it_is_in_step_and_if_not_why(store: SqliteStore) -> None:
    verdicts = {c: reader(store).calendar(c).verdict for c in (IN_STEP, LAGGING, OFF, PENDING, UNWATCHED)}
    assert verdicts == {
        IN_STEP: Verdict.IN_STEP,
        LAGGING: Verdict.LAGGING,
        OFF: Verdict.DISCONNECTED,
        PENDING: Verdict.PENDING,
        UNWATCHED: Verdict.UNWATCHED,
    }


def test_a_calendar_report_has_its_owner_cause_channel_times_lag_links_and_commands(store: SqliteStore) -> None:
    in_step = reader(store).calendar(IN_STEP)
    assert (in_step.owner, in_step.state, in_step.cause, in_step.lag_s) == (IN_STEP, CalendarStatus.ACTIVE, None, None)
    assert [(c.channel_id, c.expiration) for c in in_step.channels] == [(f"ch-{IN_STEP}", NOW + timedelta(days=6))]
    assert (in_step.last_notified_at, in_step.last_synced_at) == (NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    assert in_step.links == LinkCounts(live=1, leaving=1, deleted=1)
    assert (in_step.commands_pending, in_step.owner_commands_held) == (0, 0)
    assert reader(store).calendar(LAGGING).lag_s == 42.0, "since the notification no listing has followed"
    off = reader(store).calendar(OFF)
    assert (off.state, off.cause, off.owner_commands_held) == (CalendarStatus.DISCONNECTED, REVOKED, 1)
    assert reader(store).calendar(PENDING).commands_pending == 1


def test_an_unknown_calendar_is_not_found(store: SqliteStore) -> None:
    with pytest.raises(NotFound, match=r"unknown calendar 'nobody@example\.com'"):
        reader(store).calendar("nobody@example.com")


def test_the_totals(store: SqliteStore) -> None:
    overview = reader(store).overview()
    assert overview.to_json() == {
        "calendars": {"active": 4, "disconnected": 1, "gone": 0, "failed": 0},
        "outbox_depth": 1,
        "commands_held": 1,
        "dead_letters": None,  # nothing to count them with
        "oldest_lag_s": 42.0,
        "oldest_lagging_calendar": LAGGING,
        "channels_expiring": 2,  # the expired one still counts as live until it is renewed or stopped
        "expiring_within_s": 86400,
        "at": NOW.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    }


def test_the_serving_process_counts_the_in_process_dead_letters_and_others_cannot(tmp_path: Path) -> None:
    settings = Settings(transport="memory", store_url=f"sqlite:///{tmp_path / 'state.sqlite'}")
    with Stack(settings) as serving:
        serving.publisher.publish(settings.topic_conference_commands_dead, b"{}")
        assert serving.status(serving=True).overview().dead_letters == 1
        assert serving.status().overview().dead_letters is None, "a command's own queues are empty: unknown"


# -- the CLI ------------------------------------------------------------------------------------


def test_the_cli_shows_a_calendar_aligned_for_a_person(store: SqliteStore) -> None:
    store.close()
    env = confsync_env(store=store.path, CONFSYNC_TRANSPORT="memory")
    text = run_confsync("status", "--calendar", OFF, env=env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert all(line[15] == " " and line[16] != " " for line in lines), "labels in one column, values in the next"
    rows = {line[:15].strip(): line[16:] for line in lines}
    assert rows["verdict"] == "disconnected"
    assert rows["cause"] == REVOKED
    assert rows["links"] == "1 live, 0 leaving, 0 deleted"
    assert rows["commands"] == "0 pending, 1 held for the owner"


def test_the_cli_shows_the_totals_and_refuses_an_unknown_calendar(store: SqliteStore) -> None:
    store.close()
    env = confsync_env(store=store.path, CONFSYNC_TRANSPORT="memory")
    text = run_confsync("status", env=env).stdout
    assert "calendars       4 active, 1 disconnected, 0 gone, 0 failed" in text
    assert f"({LAGGING})" in next(line for line in text.splitlines() if line.startswith("oldest lag "))
    assert "dead letters    unknown here" in text
    assert "outbox          1 command(s) not settled" in text
    assert "channels        2 expiring within 1d" in text
    unknown = run_confsync("status", "--calendar", "nobody@example.com", env=env)
    assert unknown.returncode == 1
    assert "unknown calendar 'nobody@example.com'" in unknown.stderr
    assert unknown.stdout == ""


# -- the route ------------------------------------------------------------------------------------

AUDIENCE, SCHEDULER = "https://ingest.example.run.app", "scheduler@confsync-prod.iam.gserviceaccount.com"


def test_the_route_answers_the_scheduler_only_with_what_the_cli_prints(store: SqliteStore) -> None:
    parts = IngestParts(
        Settings(local_mode=False),
        store,
        MemoryBroker(),
        HttpConferenceProvider("http://127.0.0.1:9", Secret("unused")),
        ChannelManager(store, None, webhook_url="https://x.example/n", ttl_s=3600),  # type: ignore[arg-type]
        WebhookStats(),
        scheduler_verifier=OidcVerifier(
            audience=AUDIENCE, email=SCHEDULER, fetch_certs=lambda: {"google-kid": GOOGLE_CERT}
        ),
        status=reader(store),
    )
    addon_user = sign(aud="addon-client.apps.googleusercontent.com", email=IN_STEP)
    user_for_us = sign(aud=AUDIENCE, email=IN_STEP)
    scheduler = {"Authorization": f"Bearer {sign(aud=AUDIENCE, email=SCHEDULER)}"}
    with ServedApp(Starlette(routes=ingest_routes(parts))) as served:
        url = f"{served.url}/v1/status"
        nobody = httpx.get(url, timeout=10)
        assert (nobody.status_code, bool(nobody.json()["error"])) == (401, True)
        for token in (addon_user, user_for_us):
            refused = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert (refused.status_code, bool(refused.json()["error"])) == (403, True)

        totals = httpx.get(url, headers=scheduler, timeout=10)
        assert totals.status_code == 200
        assert totals.json() == reader(store).overview().to_json()
        one = httpx.get(url, params={"calendar": OFF}, headers=scheduler, timeout=10)
        assert one.json() == reader(store).calendar(OFF).to_json()
        assert (one.json()["verdict"], one.json()["cause"]) == ("disconnected", REVOKED)
        unknown = httpx.get(url, params={"calendar": "nobody@example.com"}, headers=scheduler, timeout=10)
        assert unknown.status_code == 404
        assert "nobody@example.com" in unknown.json()["error"]
        empty = httpx.get(url, params={"calendar": ""}, headers=scheduler, timeout=10)
        assert (empty.status_code, "calendar" in empty.json()["error"]) == (400, True)
        too_long = httpx.get(url, params={"calendar": "/" * 600}, headers=scheduler, timeout=10)
        assert (too_long.status_code, "calendar" in too_long.json()["error"]) == (400, True)
    store.close()
