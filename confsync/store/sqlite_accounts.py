"""Users and their OAuth grants, connect flows, and the commands held for an owner's reconnect in
the SQLite store (tables ``users``, ``grants``, ``connect_flows`` and ``held_commands``).

A mixin of ``SqliteStore``, kept apart so each module stays readable; it uses the store's
connection and write lock (``_db``, ``_write``, ``_write_one``) and its schema migrations.
Compare-and-set on a grant or a flow is one conditional statement whose row count says who
won; starting a flow and holding a command are one ``INSERT ... ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from typing import Any

from confsync.settings import Secret
from confsync.store.microseconds import EPOCH, from_us, to_us
from confsync.store.records import (
    ConnectFlow,
    FlowStage,
    Grant,
    GrantStatus,
    HeldCommand,
    OAuthProvider,
    User,
    UserStatus,
)
from confsync.store.sqlite_parts import SqliteParts

__all__ = ["SqliteAccounts"]

_GRANT_COLUMNS = "email, provider, sealed_token, scopes, status, version, updated_at, account_id, account_email"
_FLOW_COLUMNS = "flow_id, email, stage, expires_at, browser, verifier, version"
_HELD_COLUMNS = "owner, command_id, conference_id, data, held_at, cause"


class SqliteAccounts(SqliteParts):
    """The users, grants, connect flows and held commands of ``confsync.ports.Store`` over SQLite."""

    # -- users ------------------------------------------------------------------------------

    def get_user(self, email: str) -> User | None:
        row = self._db().execute("SELECT * FROM users WHERE email = ?", (email,)).fetchone()
        return None if row is None else _user(row)

    def ensure_user(self, user: User) -> User:
        with self._write() as db:
            db.execute(
                "INSERT INTO users (email, domain, created_at, status) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (user.email, user.domain, _maybe_us(user), user.status.value),
            )
            row = db.execute("SELECT * FROM users WHERE email = ?", (user.email,)).fetchone()
        return _user(row)

    def forget_user(self, email: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM grants WHERE email = ?", (email,))
            db.execute("DELETE FROM users WHERE email = ?", (email,))

    def list_users(self) -> list[User]:
        return [_user(row) for row in self._db().execute("SELECT * FROM users ORDER BY email")]

    # -- grants -----------------------------------------------------------------------------

    def get_grant(self, user: str, provider: OAuthProvider) -> Grant | None:
        row = (
            self._db()
            .execute(
                f"SELECT {_GRANT_COLUMNS} FROM grants WHERE email = ? AND provider = ?",  # noqa: S608 - constant columns
                (user, provider.value),
            )
            .fetchone()
        )
        return None if row is None else _grant(row)

    def put_grant(self, grant: Grant, *, expected_version: int) -> bool:
        values = (
            grant.sealed_token.reveal(),
            json.dumps(list(grant.scopes)),
            grant.status.value,
            None if grant.updated_at is None else to_us(grant.updated_at),
            grant.account_id,
            grant.account_email,
        )
        if expected_version == 0:
            won = self._write_one(
                f"INSERT INTO grants ({_GRANT_COLUMNS}) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)"  # noqa: S608 - as above
                " ON CONFLICT DO NOTHING",
                (grant.user, grant.provider.value, *values),
            )
        else:
            won = self._write_one(
                "UPDATE grants SET sealed_token = ?, scopes = ?, status = ?, updated_at = ?, account_id = ?,"
                " account_email = ?, version = version + 1 WHERE email = ? AND provider = ? AND version = ?",
                (*values, grant.user, grant.provider.value, expected_version),
            )
        return won == 1

    def list_grants(self, *, user: str | None = None, status: GrantStatus | None = None) -> list[Grant]:
        rows = self._db().execute(
            f"SELECT {_GRANT_COLUMNS} FROM grants WHERE (?1 IS NULL OR email = ?1)"  # noqa: S608 - as above
            " AND (?2 IS NULL OR status = ?2) ORDER BY email, provider",
            (user, None if status is None else status.value),
        )
        return [_grant(row) for row in rows]

    def delete_grant(self, user: str, provider: OAuthProvider) -> bool:
        return self._write_one("DELETE FROM grants WHERE email = ? AND provider = ?", (user, provider.value)) == 1

    # -- connect flows ----------------------------------------------------------------------

    def start_flow(self, flow: ConnectFlow) -> bool:
        started = self._write_one(
            f"INSERT INTO connect_flows ({_FLOW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 1)"  # noqa: S608 - constant columns
            " ON CONFLICT DO NOTHING",
            (flow.flow_id, *_flow_values(flow)),
        )
        return started == 1

    def get_flow(self, flow_id: str) -> ConnectFlow | None:
        row = (
            self._db()
            .execute(f"SELECT {_FLOW_COLUMNS} FROM connect_flows WHERE flow_id = ?", (flow_id,))  # noqa: S608 - as above
            .fetchone()
        )
        return None if row is None else _flow(row)

    def put_flow(self, flow: ConnectFlow, *, expected_version: int) -> bool:
        won = self._write_one(
            "UPDATE connect_flows SET email = ?, stage = ?, expires_at = ?, browser = ?, verifier = ?,"
            " version = version + 1 WHERE flow_id = ? AND version = ?",
            (*_flow_values(flow), flow.flow_id, expected_version),
        )
        return won == 1

    def purge_flows(self, before: datetime) -> int:
        return self._write_one("DELETE FROM connect_flows WHERE expires_at < ?", (to_us(before),))

    # -- commands held for an owner's reconnect ---------------------------------------------

    def hold_command(self, held: HeldCommand) -> bool:
        kept = self._write_one(
            f"INSERT INTO held_commands ({_HELD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"  # noqa: S608 - constant columns
            " ON CONFLICT DO NOTHING",
            (held.owner, held.command_id, held.conference_id, held.data, to_us(held.held_at), held.cause),
        )
        return kept == 1

    def held_commands(self, owner: str, limit: int = 500) -> list[HeldCommand]:
        rows = self._db().execute(
            f"SELECT {_HELD_COLUMNS} FROM held_commands WHERE owner = ?"  # noqa: S608 - as above
            " ORDER BY held_at, command_id LIMIT ?",
            (owner, limit),
        )
        return [_held(row) for row in rows]

    def release_held(self, owner: str, command_ids: list[str]) -> None:
        if not command_ids:
            return
        with self._write() as db:
            db.executemany(
                "DELETE FROM held_commands WHERE owner = ? AND command_id = ?",
                [(owner, command_id) for command_id in command_ids],
            )

    def count_held(self, owner: str | None = None) -> int:
        row = self._db().execute("SELECT COUNT(*) FROM held_commands WHERE ?1 IS NULL OR owner = ?1", (owner,))
        return int(row.fetchone()[0])


def _maybe_us(user: User) -> int | None:
    return None if user.created_at is None else to_us(user.created_at)


def _user(row: sqlite3.Row) -> User:
    return User(
        email=row["email"],
        domain=row["domain"],
        created_at=from_us(row["created_at"]),
        status=UserStatus(row["status"]),
    )


def _grant(row: sqlite3.Row) -> Grant:
    return Grant(
        user=row["email"],
        provider=OAuthProvider(row["provider"]),
        sealed_token=Secret(row["sealed_token"]),
        scopes=tuple(json.loads(row["scopes"])),
        status=GrantStatus(row["status"]),
        version=row["version"],
        updated_at=from_us(row["updated_at"]),
        account_id=row["account_id"],
        account_email=row["account_email"],
    )


def _at(value: int) -> datetime:
    """A time from a NOT NULL column."""
    return EPOCH + timedelta(microseconds=value)


def _flow_values(flow: ConnectFlow) -> tuple[Any, ...]:
    """Every column but the key and the version, in ``_FLOW_COLUMNS`` order."""
    verifier = None if flow.verifier is None else flow.verifier.reveal()
    return (flow.user, flow.stage.value, to_us(flow.expires_at), flow.browser, verifier)


def _flow(row: sqlite3.Row) -> ConnectFlow:
    return ConnectFlow(
        flow_id=row["flow_id"],
        user=row["email"],
        stage=FlowStage(row["stage"]),
        expires_at=_at(row["expires_at"]),
        browser=row["browser"],
        verifier=None if row["verifier"] is None else Secret(row["verifier"]),
        version=row["version"],
    )


def _held(row: sqlite3.Row) -> HeldCommand:
    return HeldCommand(
        owner=row["owner"],
        command_id=row["command_id"],
        conference_id=row["conference_id"],
        data=bytes(row["data"]),
        held_at=_at(row["held_at"]),
        cause=row["cause"],
    )
