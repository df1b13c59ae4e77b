"""The retention sweep as an operator meets it: the ingest service's background loop removes
expired links and applied versions on its own, and ``confsync retention sweep`` shows (or, with
``--dry-run``, only counts) what it removes; a bad CONFSYNC_RETAIN_DAYS stops it at start."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from structlog.testing import capture_logs
from tests_support.cli import confsync_env, run_confsync

from confsync.store import AppliedVersion, Link
from confsync.store.sqlite import SqliteStore
from confsync.transport.memory import MemoryBroker
from ingest.lag import LagLoop, LagRepair
from ingest.retention import RetentionSweep

CAL = "alice@example.com"
PAST = datetime.now(UTC) - timedelta(days=1)


def seeded(path: Path) -> SqliteStore:
    """One expired link and applied version, one kept until next year, one kept for good."""
    store = SqliteStore(path)
    store.upsert_link(Link(CAL, "ended", "cnf_1", expires_at=PAST))
    store.apply_if_newer(AppliedVersion("cnf_1", PAST, "fp", PAST))
    store.upsert_link(Link(CAL, "next-year", "cnf_2", expires_at=PAST + timedelta(days=365)))
    store.upsert_link(Link(CAL, "weekly", "cnf_3"))
    return store


def test_the_background_loop_removes_what_expired(tmp_path: Path) -> None:
    store = seeded(tmp_path / "state.sqlite")
    broker = MemoryBroker()
    broker.create_topic("changes")
    loop = LagLoop(LagRepair(store, broker, "changes"), 60, retention=RetentionSweep(store).run_once)
    with capture_logs() as logs:
        loop.tick()
    assert [link.event_id for link in store.live_links(CAL)] == ["next-year", "weekly"]
    assert store.get_applied("cnf_1") is None
    (removed,) = [entry for entry in logs if entry["event"] == "expired records removed"]
    assert (removed["links"], removed["applied"]) == (1, 1)
    store.close()


def test_the_sweep_command_counts_then_removes_what_expired(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    seeded(db).close()
    env = confsync_env(store=db)

    dry = run_confsync("retention", "sweep", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == {"links": 1, "applied": 1, "by_ttl": False}

    swept = run_confsync("retention", "sweep", env=env)
    assert swept.returncode == 0, swept.stderr
    assert "removed 1 link(s) and 1 applied version(s) expired (90 days kept)" in swept.stdout
    store = SqliteStore(db)
    assert [link.event_id for link in store.live_links(CAL)] == ["next-year", "weekly"]
    store.close()


def test_a_retention_that_is_not_a_positive_whole_number_of_days_stops_the_command(tmp_path: Path) -> None:
    result = run_confsync("retention", "sweep", env=confsync_env(store=tmp_path / "s.sqlite", CONFSYNC_RETAIN_DAYS="0"))
    assert result.returncode == 2
    assert "CONFSYNC_RETAIN_DAYS" in result.stderr
    assert "must be positive" in result.stderr
    assert "Traceback" not in result.stderr
