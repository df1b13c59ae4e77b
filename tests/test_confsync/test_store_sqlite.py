"""The SQLite store across processes: two processes racing one calendar, and a writer killed
with SIGKILL again and again, leave a store that opens, checks clean and lost nothing."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from confsync.store import AppliedVersion, Link
from confsync.store.sqlite import SqliteStore

CAL = "alice@example.com"
T0 = datetime(2026, 11, 24, tzinfo=UTC)

RACER = """
import json, sys
from datetime import UTC, datetime
from confsync.store.sqlite import SqliteStore
import os, time
store = SqliteStore(__import__("pathlib").Path(sys.argv[1]))
print("ready", flush=True)
while not os.path.exists(sys.argv[1] + ".go"):  # start together
    time.sleep(0.001)
won, lost = [], 0
for attempt in range(int(sys.argv[2])):
    state = store.ensure_calendar("alice@example.com")
    time.sleep(0.0002)  # widen the read-then-CAS window so the racers really overlap, even on a busy host
    if store.save_sync_token("alice@example.com", f"{sys.argv[3]}-{attempt}",
                             expected_version=state.token_version, at=datetime.now(UTC)):
        won.append(state.token_version + 1)
    else:
        lost += 1
print(json.dumps({"won": won, "lost": lost}))
"""

WRITER = """
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from confsync.store import AppliedVersion, Link
from confsync.store.sqlite import SqliteStore
store = SqliteStore(Path(sys.argv[1]))
t0 = datetime(2026, 11, 24, tzinfo=UTC)
version = store.ensure_calendar("alice@example.com").token_version
while True:
    version += 1
    assert store.save_sync_token("alice@example.com", f"tok-{version}", expected_version=version - 1, at=t0)
    store.upsert_link(Link("alice@example.com", f"evt{version}", f"cnf_{version}", "fp", t0))
    store.apply_if_newer(AppliedVersion("cnf_all", t0 + timedelta(microseconds=version), f"fp{version}"))
    print(version, flush=True)
"""


def test_two_processes_racing_win_each_version_once(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    SqliteStore(db).close()  # migrate once before the race
    racers = [
        subprocess.Popen([sys.executable, "-c", RACER, str(db), "1500", name], stdout=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    for racer in racers:
        assert racer.stdout is not None
        assert racer.stdout.readline().strip() == "ready"
    Path(f"{db}.go").touch()
    outputs = [json.loads(racer.communicate(timeout=120)[0]) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers)
    won = [version for output in outputs for version in output["won"]]
    store = SqliteStore(db)
    state = store.get_calendar(CAL)
    assert state is not None
    assert sorted(won) == list(range(1, state.token_version + 1)), "no version won twice, none lost"
    assert all(output["won"] for output in outputs), "both processes won some versions"
    assert sum(output["lost"] for output in outputs) > 0, "the processes really did contend"


def test_a_writer_killed_mid_write_leaves_a_clean_store_that_lost_nothing(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    rng = random.Random(3)
    acknowledged = 0
    for _round in range(6):
        with subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True) as writer:
            assert writer.stdout is not None
            target = acknowledged + rng.randint(20, 200)
            for line in writer.stdout:
                acknowledged = int(line)
                if acknowledged >= target:
                    break
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait(timeout=10)

        store = SqliteStore(db)
        assert store.integrity_check() == "ok"
        state = store.get_calendar(CAL)
        assert state is not None
        assert state.token_version >= acknowledged, "a write the writer saw committed is there"
        assert store.get_link(CAL, f"evt{acknowledged}") == Link(
            CAL, f"evt{acknowledged}", f"cnf_{acknowledged}", "fp", T0
        )
        applied = store.get_applied("cnf_all")
        assert applied is not None
        assert applied.fingerprint in (f"fp{state.token_version}", f"fp{state.token_version - 1}")
        acknowledged = state.token_version
        store.close()


def test_migrations_run_once_and_reopening_keeps_data(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    store = SqliteStore(db)
    assert store.schema_version() >= 1
    store.apply_if_newer(AppliedVersion("cnf_1", T0, "fp"))
    store.close()
    reopened = SqliteStore(db)
    assert reopened.schema_version() == store.schema_version()
    assert reopened.get_applied("cnf_1") == AppliedVersion("cnf_1", T0, "fp")
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened.close()


def test_a_store_of_an_older_version_is_migrated_and_keeps_its_links(tmp_path: Path) -> None:
    """A store made before links had created_at (schema 2) opens, migrates, and its links read
    back with no age (they are never taken for orphans: classify.sweepable)."""
    from confsync.store import Link  # noqa: PLC0415
    from confsync.store import sqlite as sqlite_module  # noqa: PLC0415

    db = tmp_path / "state.sqlite"
    with sqlite3.connect(db) as raw:
        for script in sqlite_module._MIGRATIONS[:2]:
            raw.executescript(script)
        raw.execute("PRAGMA user_version=2")
        raw.execute("INSERT INTO links VALUES ('a@example.com', 'evt1', 'cnf_1', NULL, NULL, 'live')")
    store = SqliteStore(db)
    try:
        assert store.schema_version() == len(sqlite_module._MIGRATIONS)
        assert store.get_link("a@example.com", "evt1") == Link("a@example.com", "evt1", "cnf_1")
    finally:
        store.close()


def test_a_store_from_before_accounts_gains_users_and_grants_and_keeps_its_state(tmp_path: Path) -> None:
    """A store of schema 4 (no users, no grants) opens, migrates once, and stores grants."""
    from confsync.settings import Secret  # noqa: PLC0415
    from confsync.store import Grant, OAuthProvider  # noqa: PLC0415
    from confsync.store import sqlite as sqlite_module  # noqa: PLC0415

    db = tmp_path / "state.sqlite"
    with sqlite3.connect(db) as raw:
        for script in sqlite_module._MIGRATIONS[:4]:
            raw.executescript(script)
        raw.execute("PRAGMA user_version=4")
        raw.execute("INSERT INTO applied VALUES ('cnf_1', 1, 'fp')")
    store = SqliteStore(db)
    try:
        assert store.schema_version() == len(sqlite_module._MIGRATIONS)
        assert store.get_applied("cnf_1") is not None
        assert store.put_grant(Grant(CAL, OAuthProvider.GOOGLE, Secret("sealed")), expected_version=0)
        assert store.get_grant(CAL, OAuthProvider.GOOGLE) == Grant(
            CAL, OAuthProvider.GOOGLE, Secret("sealed"), version=1
        )
    finally:
        store.close()


def test_a_store_from_before_connect_flows_gains_flows_and_held_commands_and_keeps_its_state(tmp_path: Path) -> None:
    """A store of schema 6 (no connect flows, no held commands) opens, migrates once to 7, keeps
    its calendars, links and users, and finds calendars by subject."""
    from confsync.store import ConnectFlow, FlowStage, HeldCommand, User  # noqa: PLC0415
    from confsync.store import sqlite as sqlite_module  # noqa: PLC0415

    db = tmp_path / "state.sqlite"
    with sqlite3.connect(db) as raw:
        for script in sqlite_module._MIGRATIONS[:6]:
            raw.executescript(script)
        raw.execute("PRAGMA user_version=6")
        raw.execute("INSERT INTO calendars (calendar_id, subject) VALUES (?, ?)", (CAL, CAL))
        raw.execute("INSERT INTO links VALUES (?, 'evt1', 'cnf_1', NULL, NULL, 'live', NULL, 'key-1')", (CAL,))
        raw.execute("INSERT INTO users VALUES (?, 'example.com', NULL, 'active')", (CAL,))
    store = SqliteStore(db)
    try:
        assert store.schema_version() == len(sqlite_module._MIGRATIONS) == 12
        assert [c.calendar_id for c in store.calendars_of(CAL)] == [CAL]
        assert store.get_link(CAL, "evt1") == Link(CAL, "evt1", "cnf_1", request_key="key-1")
        assert store.list_users() == [User(CAL, "example.com")]
        assert store.start_flow(ConnectFlow("flow-1", CAL, FlowStage.GOOGLE, T0, "browser"))
        assert store.hold_command(HeldCommand(CAL, "cmd-1", "cnf_1", b"{}", T0, "revoked"))
        assert (store.get_flow("flow-1") is not None, store.count_held(CAL)) == (True, 1)
    finally:
        store.close()
    reopened = SqliteStore(db)
    try:
        assert reopened.schema_version() == 12, "migrated once"
        assert reopened.count_held() == 1
    finally:
        reopened.close()


def test_a_store_works_from_many_threads_at_once(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    store = SqliteStore(tmp_path / "state.sqlite")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: store.upsert_link(Link(CAL, f"evt{n}", f"cnf_{n}")), range(400)))
    assert len(store.live_links(CAL)) == 400
    store.close()


def test_the_sweep_deletes_every_expired_row_in_batches_and_counts_them(tmp_path: Path) -> None:
    from datetime import timedelta  # noqa: PLC0415

    store = SqliteStore(tmp_path / "state.sqlite")
    try:
        for n in range(7):
            store.upsert_link(Link(CAL, f"evt{n}", f"cnf_{n}", expires_at=T0 + timedelta(days=n)))
            store.apply_if_newer(AppliedVersion(f"cnf_{n}", T0, "fp", T0 + timedelta(days=n)))
        now = T0 + timedelta(days=4, hours=1)  # evt0..evt4 expired
        counted = store.purge_expired(now, dry_run=True)
        assert (counted.links, counted.applied) == (5, 5)
        assert len(store.live_links(CAL)) == 7, "a dry run deletes nothing"
        purged = store.purge_expired(now, batch=2)  # three batches: 2, 2, 1
        assert (purged.links, purged.applied, purged.by_ttl) == (5, 5, False)
        assert [link.event_id for link in store.live_links(CAL)] == ["evt5", "evt6"]
        assert [store.get_applied(f"cnf_{n}") is None for n in range(7)] == [True] * 5 + [False] * 2
    finally:
        store.close()


def test_a_store_from_before_retention_keeps_its_rows_until_they_are_written_again(tmp_path: Path) -> None:
    """Schema 9 (no expires_at) migrates once; its links and applied versions have no expiry, so
    no sweep removes them, until a write gives them one."""
    from confsync.store import sqlite as sqlite_module  # noqa: PLC0415

    db = tmp_path / "state.sqlite"
    with sqlite3.connect(db) as raw:
        for script in sqlite_module._MIGRATIONS[:9]:
            raw.executescript(script)
        raw.execute("PRAGMA user_version=9")
        raw.execute(
            "INSERT INTO links (calendar_id, event_id, conference_id, state) VALUES (?, 'evt1', 'cnf_1', 'live')",
            (CAL,),
        )
        raw.execute("INSERT INTO applied VALUES ('cnf_1', 1, 'fp')")
    store = SqliteStore(db)
    try:
        far = datetime(2100, 1, 1, tzinfo=UTC)
        assert store.purge_expired(far) == store.purge_expired(far, dry_run=True)
        assert store.get_link(CAL, "evt1") == Link(CAL, "evt1", "cnf_1")
        assert store.get_applied("cnf_1") is not None
        store.mark_link_deleted(CAL, "evt1", expires_at=T0)
        assert store.purge_expired(far).links == 1
    finally:
        store.close()
