"""What the SQLite store's mixins (accounts, backfill jobs) use of ``SqliteStore``: its
per-thread connection and its write lock."""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any

__all__ = ["SqliteParts"]


class SqliteParts(ABC):
    @abstractmethod
    def _db(self) -> sqlite3.Connection: ...

    @abstractmethod
    def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

    @abstractmethod
    def _write_one(self, sql: str, args: tuple[Any, ...]) -> int: ...
