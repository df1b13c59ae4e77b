"""Users and their OAuth grants in the SQLite store (tables ``users`` and ``grants``).

A mixin of ``SqliteStore``, kept apart so each module stays readable; it uses the store's
connection and write lock (``_db``, ``_write``, ``_write_one``) and its schema migrations.
Compare-and-set on a grant is one conditional statement whose row count says who won.
"""

from __future__ import annotations

import json
import sqlite3
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any

from confsync.settings import Secret
from confsync.store.microseconds import from_us, to_us
from confsync.store.records import Grant, GrantStatus, OAuthProvider, User, UserStatus

__all__ = ["SqliteAccounts"]

_GRANT_COLUMNS = "email, provider, sealed_token, scopes, status, version, updated_at, account_id, account_email"


class SqliteAccounts(ABC):
    """The users and grants part of ``confsync.ports.Store`` over SQLite."""

    @abstractmethod
    def _db(self) -> sqlite3.Connection: ...

    @abstractmethod
    def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

    @abstractmethod
    def _write_one(self, sql: str, args: tuple[Any, ...]) -> int: ...

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
