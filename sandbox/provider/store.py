"""The conferencing sandbox's state: conferences and idempotency records in SQLite (WAL).

Every rule of the REST contract that concerns state lives here, each applied in one
transaction: idempotent create on ``request_id``; PATCH and DELETE answered once per
(method, conference, Idempotency-Key) and replayed from the record afterwards; a PATCH
whose ``event_updated`` is older than the stored one refused as ``stale``. With a file path
the state survives restarts; ``:memory:`` keeps it for the life of the process.

Vendor accounts live here too: the ``users`` table, and each conference's ``owner`` (the
account a user's token created it in; NULL for one the app's API key created). A call made
as a user (``as_user``) sees only that user's conferences: any other is "not found". The
``request_id`` column is the create's idempotency key within its owner's account (a user's
is stored as ``owner NUL request_id``), so two accounts never share a conference through it.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confsync.rfc3339 import format_rfc3339

__all__ = ["Answer", "ProviderStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conferences (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    last_event_updated TEXT
);
CREATE TABLE IF NOT EXISTS idempotency (
    method TEXT NOT NULL,
    conference_id TEXT NOT NULL,
    key TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT,
    PRIMARY KEY (method, conference_id, key)
);
CREATE TABLE IF NOT EXISTS users (
    email TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
"""
_PUBLIC = ("id", "video_uri", "passcode", "phone_number", "phone_pin", "admin_email", "legal_notice", "version")
LEGAL_NOTICE = "Calls on My Web Conferencing may be recorded. See https://mywebconf.test/legal."


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer decided by the store: status and JSON body (None for 204)."""

    status: int
    body: dict[str, Any] | None


def error(status: int, code: str, message: str, *, retryable: bool = False, **extra: Any) -> Answer:
    return Answer(status, {"error": {"code": code, "message": message, "retryable": retryable, **extra}})


class ProviderStore:
    def __init__(self, path: str = ":memory:") -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(conferences)")}
        if "owner" not in columns:  # a file from before vendor accounts
            self._db.execute("ALTER TABLE conferences ADD COLUMN owner TEXT")
        self._lock = threading.Lock()

    def create(self, request: dict[str, Any], now: datetime, *, owner: str | None = None) -> Answer:
        """A conference in ``owner``'s account (None: the app's own, no account)."""
        scoped = request["request_id"] if owner is None else f"{owner}\x00{request['request_id']}"
        with self._lock, self._transaction():
            row = self._db.execute("SELECT * FROM conferences WHERE request_id = ?", (scoped,)).fetchone()
            if row is not None:
                return Answer(200, _created(_view(row)))
            conference_id = "cnf_" + secrets.token_hex(10)
            data = {
                **request,
                "id": conference_id,
                "video_uri": f"https://mywebconf.test/j/{conference_id}",
                "passcode": f"{secrets.randbelow(10**6):06d}",
                "phone_number": "15555550100",
                "phone_pin": f"{secrets.randbelow(10**8):08d}",
                "admin_email": "admin@mywebconf.test",
                "legal_notice": LEGAL_NOTICE,
            }
            stamp = _stamp(now)
            self._db.execute(
                "INSERT INTO conferences (id, request_id, data, state, version, updated_at, owner)"
                " VALUES (?, ?, ?, 'active', 1, ?, ?)",
                (conference_id, scoped, json.dumps(data), stamp, owner),
            )
            return Answer(201, _created({**data, "version": 1}))

    def get(self, conference_id: str, *, as_user: str | None = None) -> Answer:
        with self._lock:
            row = self._db.execute("SELECT * FROM conferences WHERE id = ?", (conference_id,)).fetchone()
        if row is None or _hidden(row, as_user):
            return error(404, "not_found", f"no conference {conference_id}")
        return Answer(200, _view(row))

    def patch(  # noqa: PLR0913 - the contract's inputs, and who asks
        self,
        conference_id: str,
        key: str,
        changes: dict[str, Any],
        event_updated: datetime,
        now: datetime,
        *,
        as_user: str | None = None,
    ) -> Answer:
        with self._lock, self._transaction():
            if self._hidden_from(conference_id, as_user):
                return error(404, "not_found", f"no conference {conference_id}")
            replay = self._replay("PATCH", conference_id, key)
            if replay is not None:
                return replay
            answer = self._apply_patch(conference_id, changes, event_updated, now)
            return self._remember("PATCH", conference_id, key, answer)

    def _apply_patch(
        self, conference_id: str, changes: dict[str, Any], event_updated: datetime, now: datetime
    ) -> Answer:
        row = self._db.execute("SELECT * FROM conferences WHERE id = ?", (conference_id,)).fetchone()
        if row is None:
            return error(404, "not_found", f"no conference {conference_id}")
        if row["state"] == "deleted":
            return error(409, "deleted", f"conference {conference_id} was deleted")
        stored = row["last_event_updated"]
        if stored is not None and event_updated < datetime.fromisoformat(stored):
            return error(409, "stale", f"event_updated {_stamp(event_updated)} is older than the stored {stored}")
        data = {**json.loads(row["data"]), **changes}
        stamp, updated_at, version = _stamp(event_updated), _stamp(now), row["version"] + 1
        self._db.execute(
            "UPDATE conferences SET data = ?, version = ?, updated_at = ?, last_event_updated = ? WHERE id = ?",
            (json.dumps(data), version, updated_at, stamp, conference_id),
        )
        data.pop("request_id", None)
        view = {
            "owner": row["owner"],
            "state": "active",
            "version": version,
            "updated_at": updated_at,
            "last_event_updated": stamp,
        }
        return Answer(200, {**data, **view})

    def delete(self, conference_id: str, key: str, now: datetime, *, as_user: str | None = None) -> Answer:
        with self._lock, self._transaction():
            if self._hidden_from(conference_id, as_user):
                return error(404, "not_found", f"no conference {conference_id}")
            replay = self._replay("DELETE", conference_id, key)
            if replay is not None:
                return replay
            row = self._db.execute("SELECT state FROM conferences WHERE id = ?", (conference_id,)).fetchone()
            if row is None:
                missing = error(404, "not_found", f"no conference {conference_id}")
                return self._remember("DELETE", conference_id, key, missing)
            if row["state"] != "deleted":
                self._db.execute(
                    "UPDATE conferences SET state = 'deleted', version = version + 1, updated_at = ? WHERE id = ?",
                    (_stamp(now), conference_id),
                )
            return self._remember("DELETE", conference_id, key, Answer(204, None))

    def reset(self) -> None:
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM conferences")
            self._db.execute("DELETE FROM idempotency")
            self._db.execute("DELETE FROM users")

    # -- vendor accounts ---------------------------------------------------------------------

    def add_user(self, email: str, now: datetime) -> bool:
        """True if the account is new, False if it existed."""
        with self._lock:
            added = self._db.execute(
                "INSERT OR IGNORE INTO users (email, created_at) VALUES (?, ?)", (email, _stamp(now))
            )
            return added.rowcount == 1

    def has_user(self, email: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM users WHERE email = ?", (email,)).fetchone() is not None

    def users(self) -> list[str]:
        with self._lock:
            return [row["email"] for row in self._db.execute("SELECT email FROM users ORDER BY email")]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM conferences").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def _hidden_from(self, conference_id: str, as_user: str | None) -> bool:
        """A conference that exists in another account than ``as_user``'s (never for the app)."""
        if as_user is None:
            return False
        row = self._db.execute("SELECT owner FROM conferences WHERE id = ?", (conference_id,)).fetchone()
        return row is not None and _hidden(row, as_user)

    def _replay(self, method: str, conference_id: str, key: str) -> Answer | None:
        row = self._db.execute(
            "SELECT status, body FROM idempotency WHERE method = ? AND conference_id = ? AND key = ?",
            (method, conference_id, key),
        ).fetchone()
        if row is None:
            return None
        return Answer(row["status"], None if row["body"] is None else json.loads(row["body"]))

    def _remember(self, method: str, conference_id: str, key: str, answer: Answer) -> Answer:
        body = None if answer.body is None else json.dumps(answer.body)
        self._db.execute(
            "INSERT INTO idempotency VALUES (?, ?, ?, ?, ?)", (method, conference_id, key, answer.status, body)
        )
        return answer

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


def _view(row: sqlite3.Row) -> dict[str, Any]:
    data = json.loads(row["data"])
    data.pop("request_id", None)
    return {
        **data,
        "owner": row["owner"],
        "state": row["state"],
        "version": row["version"],
        "updated_at": row["updated_at"],
        "last_event_updated": row["last_event_updated"],
    }


def _hidden(row: sqlite3.Row, as_user: str | None) -> bool:
    return as_user is not None and row["owner"] != as_user


def _created(data: dict[str, Any]) -> dict[str, Any]:
    return {key: data[key] for key in _PUBLIC}


def _stamp(value: datetime) -> str:
    return format_rfc3339(value)
