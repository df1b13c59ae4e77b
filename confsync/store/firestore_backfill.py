"""Backfill jobs in the Firestore store::

    {prefix}backfill_jobs/{job}                     a job: selector, cursor, requested, paged_all
    {prefix}backfill_calendars/{job}%0A{calendar}   one calendar of it: state, cause, lease, counts

A calendar's entry is top-level (not under its job) so that a job's calendars by state are one
query on one collection. Requesting a page is one batched ``create`` per missing entry; a claim
is a transaction that re-reads the entry. Progress is four count aggregations, which read index
entries, not documents. A mixin of ``FirestoreStore``, as ``FirestoreAccounts`` is.

Indexes: a job's calendars in one state, in calendar id order (``BACKFILL_BY_STATE``), need a
composite index in production (listed in ``firestore.COMPOSITE_INDEXES``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.api_core import exceptions as google_exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from confsync.store.firestore_values import BATCH, aware, create, data_of, maybe_aware, transact
from confsync.store.keys import doc_id
from confsync.store.records import BackfillClaim, BackfillEntry, BackfillJob, BackfillProgress, BackfillState

__all__ = ["BACKFILL_BY_STATE", "FirestoreBackfills"]

BACKFILL_BY_STATE = ("job_id", "state", "calendar_id")
_FINISHED = frozenset({BackfillState.DONE.value, BackfillState.FAILED.value})


class FirestoreBackfills:
    """The backfill jobs of ``confsync.ports.Store`` over Firestore."""

    def __init__(self, client: firestore.Client, *, prefix: str = "") -> None:
        self._client = client
        self._jobs = client.collection(f"{prefix}backfill_jobs")
        self._entries = client.collection(f"{prefix}backfill_calendars")

    def _entry_ref(self, job_id: str, calendar_id: str) -> Any:
        return self._entries.document(doc_id(f"{job_id}\n{calendar_id}"))

    def put_backfill_job(self, job: BackfillJob) -> None:
        self._jobs.document(doc_id(job.job_id)).set(
            {
                "job_id": job.job_id,
                "selector": job.selector,
                "created_at": job.created_at,
                "window_days": job.window_days,
                "cursor": job.cursor,
                "requested": job.requested,
                "paged_all": job.paged_all,
            }
        )

    def get_backfill_job(self, job_id: str) -> BackfillJob | None:
        snapshot = self._jobs.document(doc_id(job_id)).get()
        return _job(data_of(snapshot)) if snapshot.exists else None

    def backfill_jobs(self, limit: int = 20) -> list[BackfillJob]:
        query = self._jobs.order_by("created_at", direction=firestore.Query.DESCENDING).limit(limit)
        return [_job(data_of(snapshot)) for snapshot in query.stream()]

    def request_backfill(self, job_id: str, calendar_ids: list[str], at: datetime) -> list[str]:
        refs = {calendar_id: self._entry_ref(job_id, calendar_id) for calendar_id in calendar_ids}
        found = {data_of(s)["calendar_id"]: data_of(s) for s in self._client.get_all(list(refs.values())) if s.exists}
        missing = [calendar_id for calendar_id in calendar_ids if calendar_id not in found]
        for first in range(0, len(missing), BATCH):
            self._create_all(job_id, missing[first : first + BATCH], at, refs)
        requested = {cid for cid, data in found.items() if data["state"] == BackfillState.REQUESTED.value}
        return [cid for cid in calendar_ids if cid in requested or cid not in found]

    def _create_all(self, job_id: str, calendar_ids: list[str], at: datetime, refs: dict[str, Any]) -> None:
        def data(calendar_id: str) -> dict[str, Any]:
            return {
                "job_id": job_id,
                "calendar_id": calendar_id,
                "state": BackfillState.REQUESTED.value,
                "updated_at": at,
            }

        batch = self._client.batch()
        for calendar_id in calendar_ids:
            batch.create(refs[calendar_id], data(calendar_id))
        try:
            batch.commit()
        except google_exceptions.AlreadyExists:  # another run of the job got there: one by one
            for calendar_id in calendar_ids:
                create(refs[calendar_id], data(calendar_id))

    def claim_backfill(self, job_id: str, calendar_id: str, *, now: datetime, until: datetime) -> BackfillClaim:
        ref = self._entry_ref(job_id, calendar_id)

        def work(transaction: Any) -> BackfillClaim:
            snapshot = ref.get(transaction=transaction)
            if not snapshot.exists:
                return BackfillClaim.UNKNOWN
            data = data_of(snapshot)
            if data["state"] in _FINISHED:
                return BackfillClaim.FINISHED
            lease = maybe_aware(data.get("lease_until"))
            if data["state"] == BackfillState.RUNNING.value and lease is not None and lease > now:
                return BackfillClaim.HELD
            transaction.update(ref, {"state": BackfillState.RUNNING.value, "lease_until": until, "updated_at": now})
            return BackfillClaim.CLAIMED

        return transact(self._client, work)

    def finish_backfill(self, entry: BackfillEntry, *, held_until: datetime) -> bool:
        ref = self._entry_ref(entry.job_id, entry.calendar_id)

        def work(transaction: Any) -> bool:
            snapshot = ref.get(transaction=transaction)
            data = data_of(snapshot) if snapshot.exists else {}
            if data.get("state") != BackfillState.RUNNING.value or maybe_aware(data.get("lease_until")) != held_until:
                return False  # its lease ran out and another processor took it: theirs to record
            outcome = {
                "state": entry.state.value,
                "updated_at": entry.updated_at,
                "cause": entry.cause,
                "lease_until": None,
                "events_read": entry.events_read,
                "commands": entry.commands,
            }
            transaction.update(ref, outcome)
            return True

        return transact(self._client, work)

    def backfill_progress(self, job_id: str) -> BackfillProgress:
        counts = {}
        for state in BackfillState:
            query = self._of(job_id, state).count()
            counts[state.name.lower()] = int(query.get()[0][0].value)
        return BackfillProgress(**counts)

    def backfill_entries(
        self, job_id: str, state: BackfillState, limit: int = 100, *, after: str | None = None
    ) -> list[BackfillEntry]:
        query = self._of(job_id, state).order_by("calendar_id")
        if after is not None:
            query = query.start_after({"calendar_id": after})
        query = query.limit(limit)
        return [_entry(data_of(snapshot)) for snapshot in query.stream()]

    def _of(self, job_id: str, state: BackfillState) -> Any:
        return self._entries.where(filter=FieldFilter("job_id", "==", job_id)).where(
            filter=FieldFilter("state", "==", state.value)
        )


def _job(data: dict[str, Any]) -> BackfillJob:
    return BackfillJob(
        job_id=data["job_id"],
        selector=data["selector"],
        created_at=aware(data["created_at"]),
        window_days=data.get("window_days"),
        cursor=data.get("cursor"),
        requested=int(data.get("requested") or 0),
        paged_all=bool(data.get("paged_all")),
    )


def _entry(data: dict[str, Any]) -> BackfillEntry:
    return BackfillEntry(
        job_id=data["job_id"],
        calendar_id=data["calendar_id"],
        state=BackfillState(data["state"]),
        updated_at=aware(data["updated_at"]),
        cause=data.get("cause"),
        lease_until=maybe_aware(data.get("lease_until")),
        events_read=int(data.get("events_read") or 0),
        commands=int(data.get("commands") or 0),
    )
