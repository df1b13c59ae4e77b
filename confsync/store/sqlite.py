"""The embedded ``Store``: one SQLite file (``sqlite:///PATH``), WAL, shared by threads and processes.

Each thread gets its own connection; every write is one ``BEGIN IMMEDIATE`` transaction;
writers of one process queue on a lock, other processes on SQLite's file lock
(``busy_timeout``); compare-and-set is a single
conditional ``UPDATE`` whose row count says who won. ``synchronous=NORMAL`` in WAL mode keeps
every committed write across a killed process (only a power cut can lose the last commits,
never consistency). The schema is versioned in code (``PRAGMA user_version``): ``_MIGRATIONS``
applies each step once, in order, inside a transaction.

Times are stored as integer microseconds since the epoch (UTC), so versions compare exactly.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from confsync.contracts import Occurrence
from confsync.errors import ConfigError
from confsync.settings import Secret
from confsync.store.microseconds import EPOCH as _EPOCH
from confsync.store.microseconds import from_us as _dt
from confsync.store.microseconds import to_us as _us
from confsync.store.records import (
    AppliedVersion,
    CalendarState,
    CalendarStatus,
    ChannelRecord,
    ChannelState,
    Link,
    LinkState,
    OutboxEntry,
    Purged,
)
from confsync.store.sqlite_accounts import SqliteAccounts
from confsync.store.sqlite_backfill import SqliteBackfills

__all__ = ["SqliteStore", "path_from_url"]

_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE calendars (
        calendar_id TEXT PRIMARY KEY,
        subject TEXT,
        sync_token TEXT,
        token_version INTEGER NOT NULL DEFAULT 0,
        last_synced_at INTEGER,
        last_channel_id TEXT,
        last_message_number INTEGER,
        last_notified_at INTEGER,
        status TEXT NOT NULL DEFAULT 'active',
        last_error TEXT
    );
    CREATE TABLE channels (
        channel_id TEXT PRIMARY KEY,
        calendar_id TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        token TEXT NOT NULL,
        expiration INTEGER NOT NULL,
        state TEXT NOT NULL
    );
    CREATE INDEX channels_by_expiration ON channels (state, expiration);
    CREATE INDEX channels_by_calendar ON channels (calendar_id);
    CREATE TABLE links (
        calendar_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        conference_id TEXT NOT NULL,
        last_fingerprint TEXT,
        last_event_updated INTEGER,
        state TEXT NOT NULL,
        PRIMARY KEY (calendar_id, event_id)
    );
    CREATE INDEX links_by_conference ON links (conference_id);
    CREATE TABLE applied (
        conference_id TEXT PRIMARY KEY,
        event_updated INTEGER NOT NULL,
        fingerprint TEXT NOT NULL
    );
    """,
    """
    CREATE INDEX calendars_by_notified ON calendars (last_notified_at);
    CREATE TABLE outbox (
        command_id TEXT PRIMARY KEY,
        conference_id TEXT NOT NULL,
        data BLOB NOT NULL,
        due_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX outbox_by_due ON outbox (due_at);
    """,
    """
    ALTER TABLE links ADD COLUMN created_at INTEGER;
    """,
    """
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        until INTEGER NOT NULL
    );
    """,
    """
    CREATE TABLE users (
        email TEXT PRIMARY KEY,
        domain TEXT,
        created_at INTEGER,
        status TEXT NOT NULL
    );
    CREATE TABLE grants (
        email TEXT NOT NULL,
        provider TEXT NOT NULL,
        sealed_token TEXT NOT NULL,
        scopes TEXT NOT NULL,
        status TEXT NOT NULL,
        version INTEGER NOT NULL,
        updated_at INTEGER,
        account_id TEXT,
        account_email TEXT,
        PRIMARY KEY (email, provider)
    );
    CREATE INDEX grants_by_status ON grants (status);
    """,
    """
    ALTER TABLE links ADD COLUMN request_key TEXT;
    """,
    """
    CREATE INDEX calendars_by_subject ON calendars (subject);
    CREATE TABLE connect_flows (
        flow_id TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        stage TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        browser TEXT NOT NULL,
        verifier TEXT,
        version INTEGER NOT NULL
    );
    CREATE INDEX connect_flows_by_expiry ON connect_flows (expires_at);
    CREATE TABLE held_commands (
        owner TEXT NOT NULL,
        command_id TEXT NOT NULL,
        conference_id TEXT NOT NULL,
        data BLOB NOT NULL,
        held_at INTEGER NOT NULL,
        cause TEXT NOT NULL,
        PRIMARY KEY (owner, command_id)
    );
    CREATE INDEX held_commands_by_age ON held_commands (owner, held_at, command_id);
    """,
    """
    ALTER TABLE outbox ADD COLUMN deferred INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE links ADD COLUMN exceptions TEXT;
    """,
    """
    CREATE INDEX calendars_by_listing ON calendars (status, last_synced_at);
    """,
    """
    CREATE TABLE backfill_jobs (
        job_id TEXT PRIMARY KEY,
        selector TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        window_days INTEGER,
        cursor TEXT,
        requested INTEGER NOT NULL DEFAULT 0,
        paged_all INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX backfill_jobs_by_age ON backfill_jobs (created_at);
    CREATE TABLE backfill_calendars (
        job_id TEXT NOT NULL,
        calendar_id TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        cause TEXT,
        lease_until INTEGER,
        events_read INTEGER NOT NULL DEFAULT 0,
        commands INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (job_id, calendar_id)
    );
    CREATE INDEX backfill_calendars_by_state ON backfill_calendars (job_id, state, calendar_id);
    """,
    """
    ALTER TABLE outbox ADD COLUMN calendar_id TEXT;
    CREATE INDEX outbox_by_calendar ON outbox (calendar_id);
    """,
    """
    ALTER TABLE links ADD COLUMN expires_at INTEGER;
    ALTER TABLE applied ADD COLUMN expires_at INTEGER;
    CREATE INDEX links_by_expiry ON links (expires_at) WHERE expires_at IS NOT NULL;
    CREATE INDEX applied_by_expiry ON applied (expires_at) WHERE expires_at IS NOT NULL;
    """,
)


_IN_LIMIT = 500  # ids per IN (...): well under SQLite's bound on a statement's variables


def path_from_url(url: str) -> Path:
    """``sqlite:///abs/path`` or ``sqlite:///rel/path`` -> the file's Path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ConfigError(f"not a sqlite:///PATH store URL: {url!r}", variable="CONFSYNC_STORE_URL")
    rest = url[len(prefix) :]
    return Path("/" + rest.lstrip("/")) if url.startswith("sqlite:////") else Path(rest)


class SqliteStore(SqliteAccounts, SqliteBackfills):
    """``confsync.ports.Store`` over one SQLite file (users, grants, connect flows and held
    commands: ``SqliteAccounts``; backfill jobs: ``SqliteBackfills``)."""

    local = True  # calls take microseconds: an event loop may make them directly

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = path
        self._busy_ms = int(busy_timeout_s * 1000)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._registry = threading.Lock()
        self._writer = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        return cls(path_from_url(url))

    # -- plumbing ---------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=self._busy_ms / 1000, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout={self._busy_ms}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
            with self._registry:
                self._connections.append(db)
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # Threads of one process queue on a Python lock: SQLite's own busy handler sleeps in
        # steps of up to 100 ms, which turns contention between threads into latency.
        # Other processes still wait on SQLite's file lock (busy_timeout).
        db = self._db()
        with self._writer:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _write_one(self, sql: str, args: tuple[Any, ...]) -> int:
        """One write statement, atomic on its own (autocommit): no BEGIN/COMMIT round trips."""
        db = self._db()
        with self._writer:
            return db.execute(sql, args).rowcount

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db().execute(sql, args).fetchone()
        return row

    def _count(self, sql: str, *args: Any) -> int:
        row = self._one(sql, *args)
        return 0 if row is None else int(row[0])

    def _migrate(self) -> None:
        with self._write() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={number}")

    def schema_version(self) -> int:
        return int(self._db().execute("PRAGMA user_version").fetchone()[0])

    def integrity_check(self) -> str:
        return str(self._db().execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        with self._registry:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    # -- calendars --------------------------------------------------------------------------

    def get_calendar(self, calendar_id: str) -> CalendarState | None:
        row = self._one("SELECT * FROM calendars WHERE calendar_id = ?", calendar_id)
        return None if row is None else _calendar(row)

    def ensure_calendar(self, calendar_id: str, subject: str | None = None) -> CalendarState:
        with self._write() as db:
            db.execute(
                "INSERT INTO calendars (calendar_id, subject) VALUES (?, ?) ON CONFLICT (calendar_id) DO UPDATE"
                " SET subject = COALESCE(excluded.subject, calendars.subject)",
                (calendar_id, subject),
            )
            row = db.execute("SELECT * FROM calendars WHERE calendar_id = ?", (calendar_id,)).fetchone()
        return _calendar(row)

    def claim_calendar(self, calendar_id: str, subject: str) -> CalendarState:
        with self._write() as db:
            db.execute(
                "INSERT INTO calendars (calendar_id, subject) VALUES (?, ?) ON CONFLICT (calendar_id) DO UPDATE"
                " SET subject = excluded.subject WHERE calendars.subject IS NULL",
                (calendar_id, subject),
            )
            row = db.execute("SELECT * FROM calendars WHERE calendar_id = ?", (calendar_id,)).fetchone()
        return _calendar(row)

    def list_calendars(self, status: CalendarStatus | None = None) -> list[CalendarState]:
        if status is None:
            rows = self._db().execute("SELECT * FROM calendars ORDER BY calendar_id")
        else:
            rows = self._db().execute("SELECT * FROM calendars WHERE status = ? ORDER BY calendar_id", (status.value,))
        return [_calendar(row) for row in rows]

    def calendars_after(self, cursor: str | None, limit: int) -> list[CalendarState]:
        rows = self._db().execute(
            "SELECT * FROM calendars WHERE calendar_id > ? ORDER BY calendar_id LIMIT ?", (cursor or "", limit)
        )
        return [_calendar(row) for row in rows]

    def calendars_page(
        self, status: CalendarStatus, *, after: str | None = None, limit: int = 500
    ) -> list[CalendarState]:
        rows = self._db().execute(
            "SELECT * FROM calendars WHERE status = ? AND calendar_id > ? ORDER BY calendar_id LIMIT ?",
            (status.value, after or "", limit),
        )
        return [_calendar(row) for row in rows]

    def save_sync_token(self, calendar_id: str, token: str | None, *, expected_version: int, at: datetime) -> bool:
        with self._write() as db:
            if expected_version == 0:
                db.execute("INSERT OR IGNORE INTO calendars (calendar_id) VALUES (?)", (calendar_id,))
            cursor = db.execute(
                "UPDATE calendars SET sync_token = ?, token_version = token_version + 1, last_synced_at = ?"
                " WHERE calendar_id = ? AND token_version = ?",
                (token, _us(at), calendar_id, expected_version),
            )
            return cursor.rowcount == 1

    def record_notification(self, calendar_id: str, channel_id: str, message_number: int, at: datetime) -> bool:
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO calendars (calendar_id) VALUES (?)", (calendar_id,))
            # Every arrival counts for lag repair, whatever its number: a number alone proves nothing.
            db.execute(
                "UPDATE calendars SET last_notified_at = ?"
                " WHERE calendar_id = ? AND (last_notified_at IS NULL OR last_notified_at < ?)",
                (_us(at), calendar_id, _us(at)),
            )
            cursor = db.execute(
                "UPDATE calendars SET last_channel_id = ?, last_message_number = ?"
                " WHERE calendar_id = ? AND NOT (last_channel_id IS ? AND last_message_number >= ?)",
                (channel_id, message_number, calendar_id, channel_id, message_number),
            )
            return cursor.rowcount == 1

    def lagging_calendars(self, notified_before: datetime, limit: int = 500) -> list[CalendarState]:
        rows = self._db().execute(
            "SELECT * FROM calendars WHERE status = 'active' AND last_notified_at < ?"
            " AND (last_synced_at IS NULL OR last_synced_at <= last_notified_at)"
            " ORDER BY last_notified_at LIMIT ?",
            (_us(notified_before), limit),
        )
        return [_calendar(row) for row in rows]

    def quiet_calendars(self, listed_before: datetime, limit: int = 500) -> list[CalendarState]:
        rows = self._db().execute(
            "SELECT * FROM calendars WHERE status = 'active' AND (last_synced_at IS NULL OR last_synced_at < ?)"
            " ORDER BY last_synced_at LIMIT ?",
            (_us(listed_before), limit),
        )
        return [_calendar(row) for row in rows]

    def set_calendar_status(self, calendar_id: str, status: CalendarStatus, error: str | None = None) -> None:
        self._write_one(
            "INSERT INTO calendars (calendar_id, status, last_error) VALUES (?, ?, ?) ON CONFLICT (calendar_id)"
            " DO UPDATE SET status = excluded.status, last_error = excluded.last_error",
            (calendar_id, status.value, error),
        )

    def count_calendars(self, status: CalendarStatus) -> int:
        return self._count("SELECT COUNT(*) FROM calendars WHERE status = ?", status.value)

    def calendars_of(self, subject: str) -> list[CalendarState]:
        rows = self._db().execute("SELECT * FROM calendars WHERE subject = ? ORDER BY calendar_id", (subject,))
        return [_calendar(row) for row in rows]

    def forget_calendar(self, calendar_id: str) -> None:
        with self._write() as db:
            for table in ("links", "channels", "calendars"):
                db.execute(f"DELETE FROM {table} WHERE calendar_id = ?", (calendar_id,))  # noqa: S608 - constant names

    # -- channels ---------------------------------------------------------------------------

    def add_channel(self, channel: ChannelRecord) -> None:
        self._write_one(
            "INSERT OR REPLACE INTO channels VALUES (?, ?, ?, ?, ?, ?)",
            (
                channel.channel_id,
                channel.calendar_id,
                channel.resource_id,
                channel.token.reveal(),
                _us(channel.expiration),
                channel.state.value,
            ),
        )

    def get_channel(self, channel_id: str) -> ChannelRecord | None:
        row = self._one("SELECT * FROM channels WHERE channel_id = ?", channel_id)
        return None if row is None else _channel(row)

    def live_channels(self, calendar_id: str) -> list[ChannelRecord]:
        # Left to choose, SQLite walks every live channel in (state, expiration) order to skip a sort.
        rows = self._db().execute(
            "SELECT * FROM channels INDEXED BY channels_by_calendar"
            " WHERE calendar_id = ? AND state = 'live' ORDER BY expiration",
            (calendar_id,),
        )
        return [_channel(row) for row in rows]

    def channels_expiring_before(self, when: datetime) -> list[ChannelRecord]:
        rows = self._db().execute(
            "SELECT * FROM channels WHERE state = 'live' AND expiration < ? ORDER BY expiration", (_us(when),)
        )
        return [_channel(row) for row in rows]

    def count_channels_expiring_before(self, when: datetime) -> int:
        return self._count("SELECT COUNT(*) FROM channels WHERE state = 'live' AND expiration < ?", _us(when))

    def channels_due(
        self, before: datetime, *, after: tuple[datetime, str] | None = None, limit: int = 500
    ) -> list[ChannelRecord]:
        since, after_id = (_us(after[0]), after[1]) if after is not None else (-(2**63), "")
        rows = self._db().execute(
            "SELECT * FROM channels WHERE state = 'live' AND expiration < ? AND (expiration, channel_id) > (?, ?)"
            " ORDER BY expiration, channel_id LIMIT ?",
            (_us(before), since, after_id, limit),
        )
        return [_channel(row) for row in rows]

    def stop_channel(self, channel_id: str) -> None:
        self._write_one("UPDATE channels SET state = 'stopped' WHERE channel_id = ?", (channel_id,))

    # -- leases -----------------------------------------------------------------------------

    def take_lease(self, name: str, holder: str, *, now: datetime, until: datetime) -> bool:
        taken = self._write_one(
            "INSERT INTO leases (name, holder, until) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE"
            " SET holder = excluded.holder, until = excluded.until"
            " WHERE leases.until <= ? OR leases.holder = excluded.holder",
            (name, holder, _us(until), _us(now)),
        )
        return taken == 1

    def release_lease(self, name: str, holder: str) -> None:
        self._write_one("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

    # -- links ------------------------------------------------------------------------------

    def upsert_link(self, link: Link) -> None:
        self._write_one(_UPSERT_LINK, _link_row(link))

    def upsert_links(self, links: Sequence[Link]) -> None:
        if not links:
            return
        with self._write() as db:
            db.executemany(_UPSERT_LINK, [_link_row(link) for link in links])

    def add_link(self, link: Link) -> Link:
        with self._write() as db:
            db.execute(_UPSERT_LINK + " WHERE links.state <> 'live'", _link_row(link))
            row = db.execute(
                "SELECT * FROM links WHERE calendar_id = ? AND event_id = ?", (link.calendar_id, link.event_id)
            ).fetchone()
        return _link(row)

    def get_link(self, calendar_id: str, event_id: str) -> Link | None:
        row = self._one("SELECT * FROM links WHERE calendar_id = ? AND event_id = ?", calendar_id, event_id)
        return None if row is None else _link(row)

    def get_links(self, calendar_id: str, event_ids: list[str]) -> dict[str, Link]:
        links: dict[str, Link] = {}
        for first in range(0, len(event_ids), _IN_LIMIT):
            chunk = event_ids[first : first + _IN_LIMIT]
            rows = self._db().execute(
                f"SELECT * FROM links WHERE calendar_id = ? AND event_id IN ({', '.join('?' * len(chunk))})",  # noqa: S608 - placeholders only
                (calendar_id, *chunk),
            )
            links.update((row["event_id"], _link(row)) for row in rows)
        return links

    def link_for_conference(self, conference_id: str) -> Link | None:
        row = self._one(
            "SELECT * FROM links WHERE conference_id = ?"
            " ORDER BY CASE state WHEN 'live' THEN 0 WHEN 'leaving' THEN 1 ELSE 2 END, last_event_updated DESC LIMIT 1",
            conference_id,
        )
        return None if row is None else _link(row)

    def live_links(self, calendar_id: str, *, excluding: Collection[str] = ()) -> list[Link]:
        rows = self._db().execute(
            "SELECT * FROM links WHERE calendar_id = ? AND state = 'live' ORDER BY event_id", (calendar_id,)
        )
        return [_link(row) for row in rows if row["event_id"] not in excluding]

    def mark_link_deleted(self, calendar_id: str, event_id: str, *, expires_at: datetime | None = None) -> None:
        self._write_one(
            "UPDATE links SET state = 'deleted', expires_at = ? WHERE calendar_id = ? AND event_id = ?",
            (None if expires_at is None else _us(expires_at), calendar_id, event_id),
        )

    def count_links(self, calendar_id: str, state: LinkState) -> int:
        return self._count("SELECT COUNT(*) FROM links WHERE calendar_id = ? AND state = ?", calendar_id, state.value)

    # -- applied versions -------------------------------------------------------------------

    def get_applied(self, conference_id: str) -> AppliedVersion | None:
        row = self._one("SELECT * FROM applied WHERE conference_id = ?", conference_id)
        if row is None:
            return None
        return AppliedVersion(
            row["conference_id"],
            _EPOCH + timedelta(microseconds=row["event_updated"]),
            row["fingerprint"],
            _dt(row["expires_at"]),
        )

    def apply_if_newer(self, applied: AppliedVersion) -> bool:
        expires_at = None if applied.expires_at is None else _us(applied.expires_at)
        changed = self._write_one(
            "INSERT INTO applied (conference_id, event_updated, fingerprint, expires_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (conference_id) DO UPDATE SET event_updated = excluded.event_updated,"
            " fingerprint = excluded.fingerprint, expires_at = excluded.expires_at"
            " WHERE excluded.event_updated > applied.event_updated",
            (applied.conference_id, _us(applied.event_updated), applied.fingerprint, expires_at),
        )
        return changed == 1

    # -- retention ----------------------------------------------------------------------------

    def purge_expired(self, now: datetime, *, batch: int = 500, dry_run: bool = False) -> Purged:
        return Purged(
            links=self._purge("links", _us(now), batch, dry_run=dry_run),
            applied=self._purge("applied", _us(now), batch, dry_run=dry_run),
        )

    def _purge(self, table: str, now_us: int, batch: int, *, dry_run: bool) -> int:
        if dry_run:
            row = self._one(f"SELECT COUNT(*) FROM {table} WHERE expires_at <= ?", now_us)  # noqa: S608 - constant names
            return int(row[0]) if row is not None else 0
        # One short write per batch: the sweep never holds the write lock long enough to stall a worker.
        purged = 0
        while True:
            removed = self._write_one(
                f"DELETE FROM {table} WHERE rowid IN"  # noqa: S608 - constant names
                f" (SELECT rowid FROM {table} WHERE expires_at <= ? LIMIT ?)",
                (now_us, batch),
            )
            purged += removed
            if removed < batch:
                return purged

    # -- outbox -------------------------------------------------------------------------------

    def outbox_add(self, entries: list[OutboxEntry]) -> None:
        if not entries:
            return
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO outbox"
                " (command_id, conference_id, data, due_at, attempts, deferred, calendar_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (e.command_id, e.conference_id, e.data, _us(e.due_at), e.attempts, e.deferred, e.calendar_id)
                    for e in entries
                ],
            )

    def outbox_done(self, command_ids: list[str]) -> None:
        if not command_ids:
            return
        with self._write() as db:
            db.executemany("DELETE FROM outbox WHERE command_id = ?", [(command_id,) for command_id in command_ids])

    def outbox_due(self, now: datetime, limit: int = 500) -> list[OutboxEntry]:
        rows = self._db().execute("SELECT * FROM outbox WHERE due_at < ? ORDER BY due_at LIMIT ?", (_us(now), limit))
        return [
            OutboxEntry(
                row["command_id"],
                row["conference_id"],
                bytes(row["data"]),
                _EPOCH + timedelta(microseconds=row["due_at"]),
                row["attempts"],
                bool(row["deferred"]),
                row["calendar_id"],
            )
            for row in rows
        ]

    def outbox_reschedule(self, command_id: str, due_at: datetime, attempts: int) -> None:
        self._write_one(
            "UPDATE outbox SET due_at = ?, attempts = ?, deferred = 0 WHERE command_id = ?",
            (_us(due_at), attempts, command_id),
        )

    def count_outbox(self, calendar_id: str | None = None) -> int:
        if calendar_id is None:
            return self._count("SELECT COUNT(*) FROM outbox")
        return self._count("SELECT COUNT(*) FROM outbox WHERE calendar_id = ?", calendar_id)


_UPSERT_LINK = (
    "INSERT INTO links (calendar_id, event_id, conference_id, last_fingerprint, last_event_updated, state,"
    " created_at, request_key, exceptions, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (calendar_id, event_id) DO UPDATE SET exceptions = excluded.exceptions,"
    " expires_at = excluded.expires_at,"
    " conference_id = excluded.conference_id, last_fingerprint = excluded.last_fingerprint,"
    " last_event_updated = excluded.last_event_updated, state = excluded.state,"
    " created_at = COALESCE(excluded.created_at, links.created_at),"
    " request_key = COALESCE(excluded.request_key, links.request_key)"
)


def _link_row(link: Link) -> tuple[Any, ...]:
    return (
        link.calendar_id,
        link.event_id,
        link.conference_id,
        link.last_fingerprint,
        None if link.last_event_updated is None else _us(link.last_event_updated),
        link.state.value,
        None if link.created_at is None else _us(link.created_at),
        link.request_key,
        json.dumps([occurrence.to_json() for occurrence in link.exceptions]) if link.exceptions else None,
        None if link.expires_at is None else _us(link.expires_at),
    )


def _calendar(row: sqlite3.Row) -> CalendarState:
    return CalendarState(
        calendar_id=row["calendar_id"],
        subject=row["subject"],
        sync_token=row["sync_token"],
        token_version=row["token_version"],
        last_synced_at=_dt(row["last_synced_at"]),
        last_channel_id=row["last_channel_id"],
        last_message_number=row["last_message_number"],
        last_notified_at=_dt(row["last_notified_at"]),
        status=CalendarStatus(row["status"]),
        last_error=row["last_error"],
    )


def _channel(row: sqlite3.Row) -> ChannelRecord:
    return ChannelRecord(
        channel_id=row["channel_id"],
        calendar_id=row["calendar_id"],
        resource_id=row["resource_id"],
        token=Secret(row["token"]),
        expiration=_EPOCH + timedelta(microseconds=row["expiration"]),
        state=ChannelState(row["state"]),
    )


def _link(row: sqlite3.Row) -> Link:
    return Link(
        calendar_id=row["calendar_id"],
        event_id=row["event_id"],
        conference_id=row["conference_id"],
        last_fingerprint=row["last_fingerprint"],
        last_event_updated=_dt(row["last_event_updated"]),
        state=LinkState(row["state"]),
        created_at=_dt(row["created_at"]),
        request_key=row["request_key"],
        exceptions=_occurrences(row["exceptions"]),
        expires_at=_dt(row["expires_at"]),
    )


def _occurrences(text: str | None) -> tuple[Occurrence, ...]:
    if not text:
        return ()
    return tuple(Occurrence.from_json(item, "exceptions") for item in json.loads(text))
