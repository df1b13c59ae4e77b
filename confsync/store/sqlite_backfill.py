"""Backfill jobs in the SQLite store (tables ``backfill_jobs`` and ``backfill_calendars``).

A mixin of ``SqliteStore``, as ``SqliteAccounts`` is. A calendar's claim is one conditional
``UPDATE`` whose row count says who won; requesting a page of calendars is one transaction.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from confsync.store.microseconds import EPOCH, from_us, to_us
from confsync.store.records import BackfillClaim, BackfillEntry, BackfillJob, BackfillProgress, BackfillState
from confsync.store.sqlite_parts import SqliteParts

__all__ = ["SqliteBackfills"]

_JOB_COLUMNS = "job_id, selector, created_at, window_days, cursor, requested, paged_all"
_ENTRY_COLUMNS = "job_id, calendar_id, state, updated_at, cause, lease_until, events_read, commands"
_FINISHED = (BackfillState.DONE.value, BackfillState.FAILED.value)


class SqliteBackfills(SqliteParts):
    """The backfill jobs of ``confsync.ports.Store`` over SQLite."""

    def put_backfill_job(self, job: BackfillJob) -> None:
        self._write_one(
            f"INSERT OR REPLACE INTO backfill_jobs ({_JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 - constant columns
            (
                job.job_id,
                job.selector,
                to_us(job.created_at),
                job.window_days,
                job.cursor,
                job.requested,
                int(job.paged_all),
            ),
        )

    def get_backfill_job(self, job_id: str) -> BackfillJob | None:
        row = self._db().execute(f"SELECT {_JOB_COLUMNS} FROM backfill_jobs WHERE job_id = ?", (job_id,)).fetchone()  # noqa: S608 - constant columns
        return None if row is None else _job(row)

    def backfill_jobs(self, limit: int = 20) -> list[BackfillJob]:
        rows = self._db().execute(
            f"SELECT {_JOB_COLUMNS} FROM backfill_jobs ORDER BY created_at DESC, job_id LIMIT ?",  # noqa: S608 - constant columns
            (limit,),
        )
        return [_job(row) for row in rows]

    def request_backfill(self, job_id: str, calendar_ids: list[str], at: datetime) -> list[str]:
        if not calendar_ids:
            return []
        with self._write() as db:
            db.executemany(
                "INSERT INTO backfill_calendars (job_id, calendar_id, state, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                [(job_id, calendar_id, BackfillState.REQUESTED.value, to_us(at)) for calendar_id in calendar_ids],
            )
            marks = ", ".join("?" * len(calendar_ids))
            rows = db.execute(
                f"SELECT calendar_id FROM backfill_calendars WHERE job_id = ? AND state = ?"  # noqa: S608 - placeholders only
                f" AND calendar_id IN ({marks})",
                (job_id, BackfillState.REQUESTED.value, *calendar_ids),
            )
            requested = {row[0] for row in rows}
        return [calendar_id for calendar_id in calendar_ids if calendar_id in requested]

    def claim_backfill(self, job_id: str, calendar_id: str, *, now: datetime, until: datetime) -> BackfillClaim:
        with self._write() as db:
            claimed = db.execute(
                "UPDATE backfill_calendars SET state = ?, lease_until = ?, updated_at = ?"
                " WHERE job_id = ? AND calendar_id = ?"
                " AND (state = ? OR (state = ? AND (lease_until IS NULL OR lease_until <= ?)))",
                (
                    BackfillState.RUNNING.value,
                    to_us(until),
                    to_us(now),
                    job_id,
                    calendar_id,
                    BackfillState.REQUESTED.value,
                    BackfillState.RUNNING.value,
                    to_us(now),
                ),
            ).rowcount
            if claimed:
                return BackfillClaim.CLAIMED
            row = db.execute(
                "SELECT state FROM backfill_calendars WHERE job_id = ? AND calendar_id = ?", (job_id, calendar_id)
            ).fetchone()
        if row is None:
            return BackfillClaim.UNKNOWN
        return BackfillClaim.FINISHED if row[0] in _FINISHED else BackfillClaim.HELD

    def finish_backfill(self, entry: BackfillEntry, *, held_until: datetime) -> bool:
        finished = self._write_one(
            "UPDATE backfill_calendars SET state = ?, updated_at = ?, cause = ?, lease_until = NULL,"
            " events_read = ?, commands = ? WHERE job_id = ? AND calendar_id = ? AND state = ? AND lease_until = ?",
            (
                entry.state.value,
                to_us(entry.updated_at),
                entry.cause,
                entry.events_read,
                entry.commands,
                entry.job_id,
                entry.calendar_id,
                BackfillState.RUNNING.value,
                to_us(held_until),
            ),
        )
        return finished == 1

    def backfill_progress(self, job_id: str) -> BackfillProgress:
        rows = self._db().execute(
            "SELECT state, COUNT(*) FROM backfill_calendars WHERE job_id = ? GROUP BY state", (job_id,)
        )
        counts = {BackfillState(row[0]).name.lower(): int(row[1]) for row in rows}
        return BackfillProgress(**counts)

    def backfill_entries(
        self, job_id: str, state: BackfillState, limit: int = 100, *, after: str | None = None
    ) -> list[BackfillEntry]:
        rows = self._db().execute(
            f"SELECT {_ENTRY_COLUMNS} FROM backfill_calendars WHERE job_id = ? AND state = ?"  # noqa: S608 - constant columns
            " AND calendar_id > ? ORDER BY calendar_id LIMIT ?",
            (job_id, state.value, after or "", limit),
        )
        return [_entry(row) for row in rows]


def _job(row: sqlite3.Row) -> BackfillJob:
    return BackfillJob(
        job_id=row["job_id"],
        selector=row["selector"],
        created_at=EPOCH + timedelta(microseconds=row["created_at"]),
        window_days=row["window_days"],
        cursor=row["cursor"],
        requested=row["requested"],
        paged_all=bool(row["paged_all"]),
    )


def _entry(row: sqlite3.Row) -> BackfillEntry:
    return BackfillEntry(
        job_id=row["job_id"],
        calendar_id=row["calendar_id"],
        state=BackfillState(row["state"]),
        updated_at=EPOCH + timedelta(microseconds=row["updated_at"]),
        cause=row["cause"],
        lease_until=from_us(row["lease_until"]),
        events_read=row["events_read"],
        commands=row["commands"],
    )
