"""The production ``Store``: Cloud Firestore (``firestore://PROJECT[/DATABASE]``).

Layout (https://cloud.google.com/firestore/docs/best-practices): each calendar is its own
document, with its links in a subcollection beneath it, so one busy calendar's writes never
touch a document another calendar needs::

    {prefix}calendars/{calendar}                 sync token, token_version, last notification, status
    {prefix}calendars/{calendar}/links/{event}   event -> conference link
    {prefix}channels/{channel}                   watch channel (queried by expiration)
    {prefix}conferences/{conference}             applied version + which link points here
                                                 (links and conferences carry expires_at: a TTL policy
                                                 deletes them once past it; confsync/retention.py)
    {prefix}outbox/{command}                     a published command not yet settled (by due_at)
    {prefix}leases/{name}                        who holds a lease (a calendar's watch) until when
    {prefix}users/{email}, {prefix}grants/{...}  people and their OAuth grants (firestore_accounts.py)
    {prefix}connect_flows/{flow}, {prefix}held/{...}  connect flows, commands held (firestore_accounts.py)

Every compare-and-set (sync token, notification, applied version) runs in a transaction
that re-reads the document it decides on. Document ids are the natural ids, escaped where
Firestore forbids them (``/``, ``.``/``..``, ``__x__``). ``prefix`` lets tests and tenants
share one database. ``forget_calendar`` deletes in batched writes (at most 500 each), the
calendar's own document last, so an interrupted forget leaves the calendar to forget again.

Queries that need a composite index in production are in ``COMPOSITE_INDEXES`` (the emulator
needs none): calendars lagging behind (``lagging_calendars``), quiet calendars by their last
listing (``quiet_calendars``), live channels by expiration (``channels_due``, and counted by
``count_channels_expiring_before``), one owner's held commands by age (``held_commands``) and a
backfill job's calendars by state; every other query filters or orders on one field, or filters
on equal values only. Counts are aggregation queries: the store reads no document to count them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from google.api_core import exceptions as google_exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from confsync.contracts import Occurrence
from confsync.errors import ConfigError
from confsync.settings import Secret
from confsync.store.firestore_accounts import HELD_BY_AGE, FirestoreAccounts
from confsync.store.firestore_backfill import BACKFILL_BY_STATE, FirestoreBackfills
from confsync.store.firestore_values import BATCH as _BATCH
from confsync.store.firestore_values import aware as _aware
from confsync.store.firestore_values import data_of as _data
from confsync.store.firestore_values import delete_in_batches, transact
from confsync.store.firestore_values import maybe_aware as _maybe
from confsync.store.keys import MAX_DOCUMENT_ID_BYTES, document_id_fits
from confsync.store.keys import doc_id as _doc_id
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

__all__ = ["COMPOSITE_INDEXES", "MAX_DOCUMENT_ID_BYTES", "FirestoreStore", "document_id_fits"]

# Queries that need a composite index in production (the emulator needs none): (collection,
# fields), equality filters first, the range/order field last. infra/terraform/firestore.tf
# declares each one; tests/test_infra checks they agree.
_LAGGING = ("lagging", "status", "last_notified_at")
_QUIET = ("status", "last_synced_at")
_EXPIRING = ("state", "expiration")
_DUE = ("state", "expiration", "channel_id")
COMPOSITE_INDEXES: frozenset[tuple[str, tuple[str, ...]]] = frozenset(
    {
        ("calendars", _LAGGING),
        ("calendars", _QUIET),
        ("channels", _EXPIRING),
        ("channels", _DUE),
        ("held", HELD_BY_AGE),
        ("backfill_calendars", BACKFILL_BY_STATE),
    }
)

_T = TypeVar("_T")
_LINKS_PER_BATCH = 250  # two writes each (the link, its conference's pointer); a batch takes 500


class FirestoreStore(FirestoreAccounts, FirestoreBackfills):
    """``confsync.ports.Store`` over Firestore; thread-safe (the client is). Users and grants:
    ``FirestoreAccounts``; backfill jobs: ``FirestoreBackfills``."""

    local = False  # every call is a network round trip: call it from a thread

    def __init__(self, client: firestore.Client, *, prefix: str = "") -> None:
        FirestoreAccounts.__init__(self, client, prefix=prefix)
        FirestoreBackfills.__init__(self, client, prefix=prefix)
        self._calendars = client.collection(f"{prefix}calendars")
        self._channels = client.collection(f"{prefix}channels")
        self._conferences = client.collection(f"{prefix}conferences")
        self._outbox = client.collection(f"{prefix}outbox")
        self._leases = client.collection(f"{prefix}leases")

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "") -> FirestoreStore:
        rest = url.removeprefix("firestore://")
        project, _, database = rest.partition("/")
        if not url.startswith("firestore://") or not project:
            raise ConfigError(f"not a firestore://PROJECT[/DATABASE] URL: {url!r}", variable="CONFSYNC_STORE_URL")
        client = firestore.Client(project=project, database=database or "(default)")
        return cls(client, prefix=prefix)

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def _transact(self, work: Callable[[Any], _T]) -> _T:
        return transact(self._client, work)

    def _calendar_ref(self, calendar_id: str) -> Any:
        return self._calendars.document(_doc_id(calendar_id))

    # -- calendars --------------------------------------------------------------------------

    def get_calendar(self, calendar_id: str) -> CalendarState | None:
        snapshot = self._calendar_ref(calendar_id).get()
        return _calendar(_data(snapshot)) if snapshot.exists else None

    def ensure_calendar(self, calendar_id: str, subject: str | None = None) -> CalendarState:
        ref = self._calendar_ref(calendar_id)

        def work(transaction: Any) -> CalendarState:
            snapshot = ref.get(transaction=transaction)
            data = _data(snapshot) if snapshot.exists else _new_calendar(calendar_id)
            if subject is not None:
                data["subject"] = subject
            transaction.set(ref, data)
            return _calendar(data)

        return self._transact(work)

    def claim_calendar(self, calendar_id: str, subject: str) -> CalendarState:
        ref = self._calendar_ref(calendar_id)

        def work(transaction: Any) -> CalendarState:
            snapshot = ref.get(transaction=transaction)
            data = _data(snapshot) if snapshot.exists else _new_calendar(calendar_id)
            if data.get("subject") is None:
                data["subject"] = subject
                transaction.set(ref, data)
            return _calendar(data)

        return self._transact(work)

    def list_calendars(self, status: CalendarStatus | None = None) -> list[CalendarState]:
        query = (
            self._calendars
            if status is None
            else self._calendars.where(filter=FieldFilter("status", "==", status.value))
        )
        states = [_calendar(_data(snapshot)) for snapshot in query.stream()]
        return sorted(states, key=lambda state: state.calendar_id)

    def calendars_after(self, cursor: str | None, limit: int) -> list[CalendarState]:
        query = self._calendars.order_by("calendar_id")
        if cursor is not None:
            query = query.start_after({"calendar_id": cursor})
        return [_calendar(_data(snapshot)) for snapshot in query.limit(limit).stream()]

    def calendars_page(
        self, status: CalendarStatus, *, after: str | None = None, limit: int = 500
    ) -> list[CalendarState]:
        # By document id: an equality filter ordered by id needs only the automatic index.
        query = self._calendars.where(filter=FieldFilter("status", "==", status.value)).order_by(
            FieldPath.document_id()
        )
        if after is not None:
            query = query.start_after({FieldPath.document_id(): self._calendar_ref(after)})
        return [_calendar(_data(snapshot)) for snapshot in query.limit(limit).stream()]

    def save_sync_token(self, calendar_id: str, token: str | None, *, expected_version: int, at: datetime) -> bool:
        ref = self._calendar_ref(calendar_id)

        def work(transaction: Any) -> bool:
            snapshot = ref.get(transaction=transaction)
            data = _data(snapshot) if snapshot.exists else _new_calendar(calendar_id)
            if data["token_version"] != expected_version:
                return False
            data.update(sync_token=token, token_version=expected_version + 1, last_synced_at=at)
            notified = data.get("last_notified_at")
            data["lagging"] = notified is not None and at <= _aware(notified)
            transaction.set(ref, data)
            return True

        return self._transact(work)

    def record_notification(self, calendar_id: str, channel_id: str, message_number: int, at: datetime) -> bool:
        ref = self._calendar_ref(calendar_id)

        def work(transaction: Any) -> bool:
            snapshot = ref.get(transaction=transaction)
            data = _data(snapshot) if snapshot.exists else _new_calendar(calendar_id)
            last, notified = data.get("last_message_number"), data.get("last_notified_at")
            new = data.get("last_channel_id") != channel_id or last is None or last < message_number
            # Every arrival counts for lag repair, whatever its number: a number alone proves nothing.
            later = notified is None or _aware(notified) < at
            if not (new or later):
                return False
            if new:
                data.update(last_channel_id=channel_id, last_message_number=message_number)
            if later:
                data["last_notified_at"] = notified = at
            synced = data.get("last_synced_at")
            data["lagging"] = synced is None or _aware(synced) <= _aware(notified)
            transaction.set(ref, data)
            return new

        return self._transact(work)

    def lagging_calendars(self, notified_before: datetime, limit: int = 500) -> list[CalendarState]:
        lagging, status, notified = _LAGGING  # a composite index: COMPOSITE_INDEXES
        query = (
            self._calendars.where(filter=FieldFilter(lagging, "==", True))  # noqa: FBT003 - a field value
            .where(filter=FieldFilter(status, "==", CalendarStatus.ACTIVE.value))
            .where(filter=FieldFilter(notified, "<", notified_before))
            .order_by(notified)
            .limit(limit)
        )
        return [_calendar(_data(snapshot)) for snapshot in query.stream()]

    def quiet_calendars(self, listed_before: datetime, limit: int = 500) -> list[CalendarState]:
        status, listed = _QUIET  # a composite index: COMPOSITE_INDEXES
        active = self._calendars.where(filter=FieldFilter(status, "==", CalendarStatus.ACTIVE.value))
        never = active.where(filter=FieldFilter(listed, "==", None)).limit(limit)  # a range skips nulls
        quiet = [_calendar(_data(snapshot)) for snapshot in never.stream()]
        if len(quiet) < limit:
            query = active.where(filter=FieldFilter(listed, "<", listed_before)).order_by(listed)
            quiet += [_calendar(_data(snapshot)) for snapshot in query.limit(limit - len(quiet)).stream()]
        return quiet

    def set_calendar_status(self, calendar_id: str, status: CalendarStatus, error: str | None = None) -> None:
        ref = self._calendar_ref(calendar_id)

        def work(transaction: Any) -> None:
            snapshot = ref.get(transaction=transaction)
            data = _data(snapshot) if snapshot.exists else _new_calendar(calendar_id)
            data.update(status=status.value, last_error=error)
            transaction.set(ref, data)

        self._transact(work)

    def count_calendars(self, status: CalendarStatus) -> int:
        return _count(self._calendars.where(filter=FieldFilter("status", "==", status.value)))

    def calendars_of(self, subject: str) -> list[CalendarState]:
        query = self._calendars.where(filter=FieldFilter("subject", "==", subject))
        return sorted((_calendar(_data(snapshot)) for snapshot in query.stream()), key=lambda c: c.calendar_id)

    def forget_calendar(self, calendar_id: str) -> None:
        ref = self._calendar_ref(calendar_id)
        links = ref.collection("links").list_documents()
        channels = self._channels.where(filter=FieldFilter("calendar_id", "==", calendar_id)).stream()
        delete_in_batches(self._client, [*links, *(snapshot.reference for snapshot in channels), ref])

    # -- channels ---------------------------------------------------------------------------

    def add_channel(self, channel: ChannelRecord) -> None:
        self._channels.document(_doc_id(channel.channel_id)).set(
            {
                "channel_id": channel.channel_id,
                "calendar_id": channel.calendar_id,
                "resource_id": channel.resource_id,
                "token": channel.token.reveal(),
                "expiration": channel.expiration,
                "state": channel.state.value,
            }
        )

    def get_channel(self, channel_id: str) -> ChannelRecord | None:
        snapshot = self._channels.document(_doc_id(channel_id)).get()
        return _channel(_data(snapshot)) if snapshot.exists else None

    def live_channels(self, calendar_id: str) -> list[ChannelRecord]:
        query = self._channels.where(filter=FieldFilter("calendar_id", "==", calendar_id))
        channels = [_channel(_data(snapshot)) for snapshot in query.stream()]
        return sorted((c for c in channels if c.state is ChannelState.LIVE), key=lambda c: c.expiration)

    def channels_expiring_before(self, when: datetime) -> list[ChannelRecord]:
        # One range filter on one field needs only Firestore's automatic index; state is
        # filtered here rather than with a composite index.
        query = self._channels.where(filter=FieldFilter("expiration", "<", when)).order_by("expiration")
        channels = (_channel(_data(snapshot)) for snapshot in query.stream())
        return [channel for channel in channels if channel.state is ChannelState.LIVE]

    def count_channels_expiring_before(self, when: datetime) -> int:
        state, expiration = _EXPIRING  # a composite index: COMPOSITE_INDEXES
        live = self._channels.where(filter=FieldFilter(state, "==", ChannelState.LIVE.value))
        return _count(live.where(filter=FieldFilter(expiration, "<", when)))

    def channels_due(
        self, before: datetime, *, after: tuple[datetime, str] | None = None, limit: int = 500
    ) -> list[ChannelRecord]:
        state, expiration, channel_id = _DUE  # a composite index: COMPOSITE_INDEXES
        query = (
            self._channels.where(filter=FieldFilter(state, "==", ChannelState.LIVE.value))
            .where(filter=FieldFilter(expiration, "<", before))
            .order_by(expiration)
            .order_by(channel_id)
        )
        if after is not None:
            query = query.start_after({expiration: after[0], channel_id: after[1]})
        return [_channel(_data(snapshot)) for snapshot in query.limit(limit).stream()]

    def stop_channel(self, channel_id: str) -> None:
        ref = self._channels.document(_doc_id(channel_id))
        if ref.get().exists:
            ref.update({"state": ChannelState.STOPPED.value})

    # -- leases -----------------------------------------------------------------------------

    def take_lease(self, name: str, holder: str, *, now: datetime, until: datetime) -> bool:
        ref = self._leases.document(_doc_id(name))

        def work(transaction: Any) -> bool:
            snapshot = ref.get(transaction=transaction)
            if snapshot.exists:
                data = _data(snapshot)
                if data["holder"] != holder and _aware(data["until"]) > now:
                    return False
            transaction.set(ref, {"holder": holder, "until": until})
            return True

        return self._transact(work)

    def release_lease(self, name: str, holder: str) -> None:
        ref = self._leases.document(_doc_id(name))

        def work(transaction: Any) -> None:
            snapshot = ref.get(transaction=transaction)
            if snapshot.exists and _data(snapshot)["holder"] == holder:
                transaction.delete(ref)

        self._transact(work)

    # -- links ------------------------------------------------------------------------------

    def _link_ref(self, calendar_id: str, event_id: str) -> Any:
        return self._calendar_ref(calendar_id).collection("links").document(_doc_id(event_id))

    def upsert_link(self, link: Link) -> None:
        self.upsert_links([link])

    def upsert_links(self, links: Sequence[Link]) -> None:
        for start in range(0, len(links), _LINKS_PER_BATCH):
            batch = self._client.batch()
            for link in links[start : start + _LINKS_PER_BATCH]:
                # merge: every field is given except a created_at or request_key of None, which keeps the stored one
                batch.set(self._link_ref(link.calendar_id, link.event_id), _link_data(link), merge=True)
                batch.set(self._conferences.document(_doc_id(link.conference_id)), _pointer(link), merge=True)
            batch.commit()

    def add_link(self, link: Link) -> Link:
        ref = self._link_ref(link.calendar_id, link.event_id)
        pointer = self._conferences.document(_doc_id(link.conference_id))

        def work(transaction: Any) -> Link:
            snapshot = ref.get(transaction=transaction)
            standing = _link(_data(snapshot)) if snapshot.exists else None
            if standing is not None and standing.state is LinkState.LIVE:
                return standing
            transaction.set(ref, _link_data(link), merge=True)
            transaction.set(pointer, _pointer(link), merge=True)
            return link if standing is None else _merged(standing, link)

        return self._transact(work)

    def get_link(self, calendar_id: str, event_id: str) -> Link | None:
        snapshot = self._link_ref(calendar_id, event_id).get()
        return _link(_data(snapshot)) if snapshot.exists else None

    def get_links(self, calendar_id: str, event_ids: list[str]) -> dict[str, Link]:
        refs = [self._link_ref(calendar_id, event_id) for event_id in event_ids]
        links = (_link(_data(snapshot)) for snapshot in self._client.get_all(refs) if snapshot.exists)
        return {link.event_id: link for link in links}

    def link_for_conference(self, conference_id: str) -> Link | None:
        snapshot = self._conferences.document(_doc_id(conference_id)).get()
        data = _data(snapshot) if snapshot.exists else None
        if not data or "event_id" not in data:
            return None
        link = self.get_link(data["calendar_id"], data["event_id"])
        return link if link is not None and link.conference_id == conference_id else None  # not re-linked since

    def live_links(self, calendar_id: str, *, excluding: Collection[str] = ()) -> list[Link]:
        query = (
            self._calendar_ref(calendar_id)
            .collection("links")
            .where(filter=FieldFilter("state", "==", LinkState.LIVE.value))
        )
        data = (_data(snapshot) for snapshot in query.stream())
        links = (_link(fields) for fields in data if fields.get("event_id") not in excluding)
        return sorted(links, key=lambda link: link.event_id)

    def mark_link_deleted(self, calendar_id: str, event_id: str, *, expires_at: datetime | None = None) -> None:
        ref = self._link_ref(calendar_id, event_id)
        if ref.get().exists:
            ref.update({"state": LinkState.DELETED.value, "expires_at": expires_at})

    def count_links(self, calendar_id: str, state: LinkState) -> int:
        links = self._calendar_ref(calendar_id).collection("links")
        return _count(links.where(filter=FieldFilter("state", "==", state.value)))

    # -- applied versions -------------------------------------------------------------------

    def get_applied(self, conference_id: str) -> AppliedVersion | None:
        snapshot = self._conferences.document(_doc_id(conference_id)).get()
        data = _data(snapshot) if snapshot.exists else None
        if not data or "applied_event_updated" not in data:
            return None
        return AppliedVersion(
            conference_id,
            _aware(data["applied_event_updated"]),
            data["applied_fingerprint"],
            _maybe(data.get("expires_at")),
        )

    def apply_if_newer(self, applied: AppliedVersion) -> bool:
        ref = self._conferences.document(_doc_id(applied.conference_id))

        def work(transaction: Any) -> bool:
            snapshot = ref.get(transaction=transaction)
            data = (_data(snapshot) if snapshot.exists else None) or {}
            stored = data.get("applied_event_updated")
            if stored is not None and _aware(stored) >= applied.event_updated:
                return False
            transaction.set(
                ref,
                {
                    "applied_event_updated": applied.event_updated,
                    "applied_fingerprint": applied.fingerprint,
                    # The TTL policy's field: the whole document goes, its pointer to the owning
                    # link too; a newer link's write moves it on (``_pointer``).
                    "expires_at": applied.expires_at,
                },
                merge=True,
            )
            return True

        return self._transact(work)

    # -- retention ----------------------------------------------------------------------------

    def purge_expired(self, now: datetime, *, batch: int = 500, dry_run: bool = False) -> Purged:  # noqa: ARG002 - the port's signature
        return Purged(by_ttl=True)  # Firestore's TTL policy on expires_at deletes them (infra/terraform/firestore.tf)

    # -- outbox -------------------------------------------------------------------------------

    def outbox_add(self, entries: list[OutboxEntry]) -> None:
        for start in range(0, len(entries), _BATCH):  # one batched write per 500 entries
            batch = self._client.batch()
            for entry in entries[start : start + _BATCH]:
                batch.set(
                    self._outbox.document(_doc_id(entry.command_id)),
                    {
                        "command_id": entry.command_id,
                        "conference_id": entry.conference_id,
                        "data": entry.data,
                        "due_at": entry.due_at,
                        "attempts": entry.attempts,
                        "deferred": entry.deferred,
                        "calendar_id": entry.calendar_id,
                    },
                )
            batch.commit()

    def outbox_done(self, command_ids: list[str]) -> None:
        delete_in_batches(self._client, (self._outbox.document(_doc_id(command_id)) for command_id in command_ids))

    def outbox_due(self, now: datetime, limit: int = 500) -> list[OutboxEntry]:
        query = self._outbox.where(filter=FieldFilter("due_at", "<", now)).order_by("due_at").limit(limit)
        return [
            OutboxEntry(
                d["command_id"],
                d["conference_id"],
                bytes(d["data"]),
                _aware(d["due_at"]),
                int(d["attempts"]),
                bool(d.get("deferred", False)),
                d.get("calendar_id"),
            )
            for d in (_data(snapshot) for snapshot in query.stream())
        ]

    def outbox_reschedule(self, command_id: str, due_at: datetime, attempts: int) -> None:
        with contextlib.suppress(google_exceptions.NotFound):  # settled meanwhile: stays gone
            self._outbox.document(_doc_id(command_id)).update(
                {"due_at": due_at, "attempts": attempts, "deferred": False}
            )

    def count_outbox(self, calendar_id: str | None = None) -> int:
        query = (
            self._outbox
            if calendar_id is None
            else self._outbox.where(filter=FieldFilter("calendar_id", "==", calendar_id))
        )
        return _count(query)


def _count(query: Any) -> int:
    ((result,),) = query.count().get()  # one aggregation, one result
    return int(result.value)


def _new_calendar(calendar_id: str) -> dict[str, Any]:
    return {
        "calendar_id": calendar_id,
        "subject": None,
        "sync_token": None,
        "token_version": 0,
        "last_synced_at": None,
        "last_channel_id": None,
        "last_message_number": None,
        "last_notified_at": None,
        "status": CalendarStatus.ACTIVE.value,
        "last_error": None,
        "lagging": False,  # a notification no sync has covered yet: Firestore cannot compare two fields
    }


def _calendar(data: dict[str, Any]) -> CalendarState:
    return CalendarState(
        calendar_id=data["calendar_id"],
        subject=data.get("subject"),
        sync_token=data.get("sync_token"),
        token_version=int(data.get("token_version", 0)),
        last_synced_at=_maybe(data.get("last_synced_at")),
        last_channel_id=data.get("last_channel_id"),
        last_message_number=data.get("last_message_number"),
        last_notified_at=_maybe(data.get("last_notified_at")),
        status=CalendarStatus(data.get("status", "active")),
        last_error=data.get("last_error"),
    )


def _channel(data: dict[str, Any]) -> ChannelRecord:
    return ChannelRecord(
        channel_id=data["channel_id"],
        calendar_id=data["calendar_id"],
        resource_id=data["resource_id"],
        token=Secret(data["token"]),
        expiration=_aware(data["expiration"]),
        state=ChannelState(data["state"]),
    )


def _link_data(link: Link) -> dict[str, Any]:
    data: dict[str, Any] = {
        "calendar_id": link.calendar_id,
        "event_id": link.event_id,
        "conference_id": link.conference_id,
        "last_fingerprint": link.last_fingerprint,
        "last_event_updated": link.last_event_updated,
        "state": link.state.value,
        "exceptions": [occurrence.to_json() for occurrence in link.exceptions],
        "expires_at": link.expires_at,  # a timestamp: the TTL policy's field (None: kept)
    }
    for kept in ("created_at", "request_key"):  # None keeps the stored value (merge)
        if getattr(link, kept) is not None:
            data[kept] = getattr(link, kept)
    return data


def _merged(stored: Link, link: Link) -> Link:
    """What a merging write of ``link`` over ``stored`` leaves."""
    return replace(
        link, created_at=link.created_at or stored.created_at, request_key=link.request_key or stored.request_key
    )


def _pointer(link: Link) -> dict[str, Any]:
    """The conference's pointer to its owning link, expiring with the link: the document's TTL
    field then follows whichever was written last, the link or the newest applied version, so a
    link kept longer (moved later, or made unbounded: None) keeps its pointer too."""
    return {"calendar_id": link.calendar_id, "event_id": link.event_id, "expires_at": link.expires_at}


def _link(data: dict[str, Any]) -> Link:
    return Link(
        calendar_id=data["calendar_id"],
        event_id=data["event_id"],
        conference_id=data["conference_id"],
        last_fingerprint=data.get("last_fingerprint"),
        last_event_updated=_maybe(data.get("last_event_updated")),
        state=LinkState(data["state"]),
        created_at=_maybe(data.get("created_at")),
        request_key=data.get("request_key"),
        exceptions=tuple(Occurrence.from_json(item, "exceptions") for item in data.get("exceptions") or ()),
        expires_at=_maybe(data.get("expires_at")),
    )
