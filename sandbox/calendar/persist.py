"""``--db PATH``: the Calendar sandbox's state written through to SQLite, reloaded at start.

Every mutation is committed before the API answers, so a sandbox killed at any moment comes
back with every write it acknowledged: calendars, events (with their change sequence, so
sync tokens issued before the restart keep working), channels (with the principal that opened
each), users and ACL rules. Deliveries in flight, fault rules and the request journal live in
memory only. A file written before the users and acl tables existed loads as it is (they are
created empty), and one written before channels recorded their principal gains the column
(empty for the channels it holds).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

__all__ = ["SqlitePersistence"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calendars (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, seq INTEGER NOT NULL, epoch INTEGER NOT NULL,
    last_updated_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    calendar_id TEXT NOT NULL, event_id TEXT NOT NULL, seq INTEGER NOT NULL,
    created_seq INTEGER NOT NULL, resource TEXT NOT NULL, PRIMARY KEY (calendar_id, event_id));
CREATE TABLE IF NOT EXISTS channels (
    id TEXT PRIMARY KEY, calendar_id TEXT NOT NULL, resource_id TEXT NOT NULL,
    resource_uri TEXT NOT NULL, address TEXT NOT NULL, token TEXT, expiration_ms INTEGER NOT NULL,
    state TEXT NOT NULL, next_number INTEGER NOT NULL, principal TEXT);
CREATE TABLE IF NOT EXISTS users (email TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS acl (
    calendar_id TEXT NOT NULL, email TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (calendar_id, email));
"""


class SqlitePersistence:
    """Write-through SQLite (WAL); the model calls it under its own lock."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED")
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {str(row[1]) for row in self._db.execute("PRAGMA table_info(channels)")}
        if "principal" not in columns:  # a file from before channels recorded who opened them
            self._db.execute("ALTER TABLE channels ADD COLUMN principal TEXT")
        self._db.commit()

    def load(self) -> tuple[str | None, list[dict[str, Any]], list[tuple[Any, ...]], list[dict[str, Any]]]:
        meta = self._db.execute("SELECT value FROM meta WHERE key = 'nonce'").fetchone()
        calendars = [dict(row) for row in self._db.execute("SELECT * FROM calendars")]
        events = [tuple(row) for row in self._db.execute("SELECT * FROM events")]
        channels = [dict(row) for row in self._db.execute("SELECT * FROM channels")]
        return (None if meta is None else str(meta[0])), calendars, events, channels

    def load_access(self) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
        """The users (email, name) and ACL rules (calendar id, email, role) saved."""
        users = [(str(row[0]), str(row[1])) for row in self._db.execute("SELECT email, name FROM users")]
        rules = [
            (str(r[0]), str(r[1]), str(r[2])) for r in self._db.execute("SELECT calendar_id, email, role FROM acl")
        ]
        return users, rules

    def save_meta(self, nonce: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('nonce', ?)", (nonce,))

    def save_calendar(self, row: dict[str, Any]) -> None:
        self._db.execute("INSERT OR REPLACE INTO calendars VALUES (:id, :owner, :seq, :epoch, :last_updated_ms)", row)

    def save_event(self, calendar_id: str, event_id: str, seq: int, created_seq: int, resource: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?)", (calendar_id, event_id, seq, created_seq, resource)
        )

    def save_channel(self, row: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO channels (id, calendar_id, resource_id, resource_uri, address, token,"
            " expiration_ms, state, next_number, principal) VALUES (:id, :calendar_id, :resource_id,"
            " :resource_uri, :address, :token, :expiration_ms, :state, :next_number, :principal)",
            row,
        )

    def save_user(self, email: str, name: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO users VALUES (?, ?)", (email, name))

    def save_acl(self, calendar_id: str, email: str, role: str | None) -> None:
        if role is None:
            self._db.execute("DELETE FROM acl WHERE calendar_id = ? AND email = ?", (calendar_id, email))
        else:
            self._db.execute("INSERT OR REPLACE INTO acl VALUES (?, ?, ?)", (calendar_id, email, role))

    def commit(self) -> None:
        self._db.commit()

    def clear(self) -> None:
        self._db.executescript(
            "DELETE FROM meta; DELETE FROM calendars; DELETE FROM events; DELETE FROM channels;"
            " DELETE FROM users; DELETE FROM acl;"
        )

    def close(self) -> None:
        self._db.close()
