"""ConferenceCommand -> the conferencing API, exactly once as the provider sees it.

- A command older than the version already applied to its conference is dropped as stale
  (logged, counted); one equal in version and fingerprint is a duplicate, dropped too.
- update -> PATCH with the payload, delete -> DELETE, each with Idempotency-Key = command_id,
  so a retried or redelivered command changes nothing twice.
- Transient failures are retried by the one policy (``publishers.retry``) behind a circuit
  breaker and a concurrency limit; when the policy gives up, the error goes back to the
  transport (nack: Pub/Sub redelivers later).
- 404 on delete and 409 ``stale`` count as done. Other permanent errors and 401 propagate:
  the transport dead-letters them with the provider's status and body.
- With users' accounts on (``as_owner``), a command goes out with its calendar owner's vendor
  token. An owner whose vendor grant is revoked (``Disconnected``) gets the command held in the
  store (``Store.hold_command``), settled here, neither dead-lettered nor lost: the connect
  flow sends the owner's held commands again, oldest first, when they reconnect.
- After success the applied version is recorded with compare-and-set, with its expiry
  (``CONFSYNC_RETAIN_DAYS`` after the event ends, or after a delete: confsync/retention.py).
- Past retention, records go (SQLite's sweep, Firestore's TTL): a record past its ``expires_at``
  counts as gone already. A command for a conference with no applied version left is dropped as
  ``expired``, calling nothing and writing nothing, if its event ended longer ago than
  ``CONFSYNC_RETAIN_DAYS`` (an update's payload says when) or if its version is that old and no
  link names the conference with a version as new: a copy redelivered after its conference's
  records expired (a held command, a replayed dead letter) neither re-applies nor re-creates.
- A delete whose conference has a live owning link again is dropped (``seen_again``): its
  event came back while the delete waited out the grace (an undo: the link is live with a newer
  version than the delete's), or moved to another of the owner's calendars (the live link is
  another (calendar, event)). After a delete, a link that was waiting for it is marked deleted.
- A settled command (applied, dropped, or on its way to the dead-letter topic) leaves the
  store's outbox (processors/worker.py writes it there; ingest/lag.py republishes what stays).
  Whether a failure is dead-lettered is the transport's call (``decide``): a permanent error,
  or any error on the last delivery attempt (``max_attempts``), transient ones included.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TypeVar

import structlog
from tenacity import Retrying

from confsync.contracts import CommandKind, ConferenceCommand, ConferencePayload
from confsync.errors import ConfsyncError, Disconnected, NotFound, PermanentError, Stale, TransientError
from confsync.ports import ConferenceProvider, Store
from confsync.retention import Retention
from confsync.store import AppliedVersion, Link, LinkState
from confsync.store.records import GrantStatus, HeldCommand, OAuthProvider
from confsync.transport.base import Message, Outcome, decide
from publishers.breaker import CircuitBreaker
from publishers.retry import CircuitOpen

__all__ = ["ApplyOutcome", "CommandApplier"]

log = structlog.get_logger(__name__)


_LOCK_STRIPES = 64
_SETTLE_EVERY_S = 0.05


class ApplyOutcome(StrEnum):
    """How a command settled without error; the value is what logs and counts show."""

    APPLIED = "applied"
    STALE = "stale"  # older than the version already applied
    DUPLICATE = "duplicate"  # same version and fingerprint as the one applied
    SUPERSEDED = "superseded"  # the provider already holds a newer version
    ALREADY_GONE = "already_gone"  # a delete the provider answered 404
    HELD = "held"  # its owner's vendor grant is revoked: kept for their reconnect
    SEEN_AGAIN = "seen_again"  # a delete whose event came back, or moved within its owner's calendars
    EXPIRED = "expired"  # older than CONFSYNC_RETAIN_DAYS, its conference's records gone: nothing to order it by


@dataclass
class CommandApplier:
    store: Store
    provider: ConferenceProvider
    retrying: Retrying
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    concurrency: int = 16
    max_attempts: int = 5  # the transport's: a failure on this delivery is dead-lettered, not retried
    counts: Counter[ApplyOutcome] = field(default_factory=Counter)
    as_owner: Callable[[str], ConferenceProvider] | None = None  # users' accounts: the API acting as one
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    retention: Retention | None = None  # when applied versions expire (confsync/retention.py); None: never

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(self.concurrency)
        # One conference's commands run one at a time in this process: a duplicate delivered
        # alongside the original (no ordering key on the emulator, redeliveries) then finds the
        # version already applied instead of calling the provider a second time.
        self._conference_locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        # Settled commands leave the outbox in batches, off the message's path: one write per
        # batch instead of one per command. A crash loses at most a batch of removals; those
        # commands are republished later and dropped as duplicates.
        self._settled_ids: list[str] = []
        self._settled_lock = threading.Lock()
        self._flushing = threading.Lock()  # a flush returns only once any flush under way is written
        self._closing = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="outbox-settler", daemon=True)
        self._flusher.start()

    def _settled(self, command_id: str) -> None:
        with self._settled_lock:
            self._settled_ids.append(command_id)

    def _flush_loop(self) -> None:
        while not self._closing.wait(_SETTLE_EVERY_S):
            self.flush()

    def flush(self) -> None:
        """Remove the commands settled so far from the outbox (now, not at the next tick).

        Flushes run one at a time: one that finds nothing new still waits for the settler
        thread's write under way, which may hold the very commands the caller settled."""
        with self._flushing:
            with self._settled_lock:
                done, self._settled_ids = self._settled_ids, []
            if not done:
                return
            try:
                self.store.outbox_done(done)
            except Exception:
                log.warning("could not settle commands in the outbox; will retry", count=len(done), exc_info=True)
                with self._settled_lock:
                    self._settled_ids[:0] = done

    def close(self) -> None:
        """Stop the settler after a last flush (call after the workers have drained)."""
        self._closing.set()
        self._flusher.join(timeout=5)
        self.flush()

    def __call__(self, message: Message) -> None:
        """The transport handler: one ConferenceCommand message."""
        command = ConferenceCommand.from_bytes(message.data)
        try:
            self.apply(command)
        except Exception as error:
            outcome = decide(error, delivery_attempt=message.delivery_attempt, max_attempts=self.max_attempts)
            if outcome is Outcome.DEAD_LETTER:
                self._settled(command.command_id)  # on its way to the dead-letter topic, with the cause
            raise  # otherwise redelivered later (CircuitOpen too): it stays in the outbox

    def apply(self, command: ConferenceCommand) -> None:
        """Apply one command; it is settled if this returns (a failure is left to ``__call__``)."""
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(
            conference_id=command.conference_id, command_id=command.command_id
        ):
            try:
                outcome = self._apply(command)
            except Disconnected as err:
                if err.provider != OAuthProvider.VENDOR.value:
                    raise
                self._hold(command, err)
                outcome = ApplyOutcome.HELD
            self._settled(command.command_id)
            self.counts[outcome] += 1
            log.info(
                "command applied" if outcome is ApplyOutcome.APPLIED else f"command {outcome.value}",
                kind=command.kind.value,
                outcome=outcome.value,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )

    def _apply(self, command: ConferenceCommand) -> ApplyOutcome:
        with self._conference_locks[hash(command.conference_id) % _LOCK_STRIPES]:
            return self._apply_locked(command)

    def _apply_locked(self, command: ConferenceCommand) -> ApplyOutcome:
        now = self.clock()  # one moment: a delete's applied version and its link expire together
        if command.kind is not CommandKind.DELETE:
            return self._applied(command, now)
        if self._seen_again(command, now):
            return ApplyOutcome.SEEN_AGAIN
        outcome = self._applied(command, now)
        if outcome is ApplyOutcome.EXPIRED:
            return outcome
        # Settled, however (applied, gone already, or a redelivery of one that was): a link waiting
        # for this delete is deleted now.
        waiting = self.store.get_link(command.calendar_id, command.event_id)
        if (
            waiting is not None
            and waiting.state is LinkState.LEAVING
            and waiting.conference_id == command.conference_id
        ):
            self.store.mark_link_deleted(command.calendar_id, command.event_id, expires_at=self._expiry(None, now))
        return outcome

    def _applied(self, command: ConferenceCommand, now: datetime) -> ApplyOutcome:
        applied = _unexpired(self.store.get_applied(command.conference_id), now)
        if applied is None and self._expired(command, now):
            return ApplyOutcome.EXPIRED
        if applied is not None and command.event_updated < applied.event_updated:
            return ApplyOutcome.STALE
        if (
            applied is not None
            and command.event_updated == applied.event_updated
            and command.fingerprint == applied.fingerprint
        ):
            return ApplyOutcome.DUPLICATE
        try:
            with self._slots:
                self.retrying(self._call, command)
        except Stale:
            return ApplyOutcome.SUPERSEDED  # the provider already holds a newer version: nothing to do
        except NotFound:
            if command.kind is not CommandKind.DELETE:
                raise
            outcome = ApplyOutcome.ALREADY_GONE
        else:
            outcome = ApplyOutcome.APPLIED
        expires_at = self._expiry(command.payload, now)
        self.store.apply_if_newer(
            AppliedVersion(command.conference_id, command.event_updated, command.fingerprint, expires_at)
        )
        return outcome

    def _expiry(self, payload: ConferencePayload | None, now: datetime) -> datetime | None:
        return None if self.retention is None else self.retention.expiry(payload, now)

    def _expired(self, command: ConferenceCommand, now: datetime) -> bool:
        """With no applied version to order it by: the command's event ended, or its version
        is, longer ago than retention, and no link remembers a version as new as it."""
        retention = self.retention
        if retention is None or command.kind is CommandKind.DELETE:
            return False  # a delete is safe however late (404: already gone), and a held one must go out
        if command.payload is not None and retention.ended(command.payload, now):
            return True
        if command.event_updated + retention.keep > now:
            return False  # recent: whatever it is, it is not a copy of a command whose records expired
        owning = _unexpired(self.store.link_for_conference(command.conference_id), now)
        if owning is None:
            return True
        return owning.last_event_updated is not None and command.event_updated < owning.last_event_updated

    def _seen_again(self, command: ConferenceCommand, now: datetime) -> bool:
        """The conference's owning link is live again: elsewhere (a move), or here with a version
        newer than the delete's (the event came back while its delete waited)."""
        owning = _unexpired(self.store.link_for_conference(command.conference_id), now)
        if owning is None or owning.state is not LinkState.LIVE:
            return False
        if (owning.calendar_id, owning.event_id) != (command.calendar_id, command.event_id):
            return True
        return owning.last_event_updated is not None and owning.last_event_updated > command.event_updated

    def _hold(self, command: ConferenceCommand, err: Disconnected) -> None:
        held = HeldCommand(
            owner=err.user,
            command_id=command.command_id,
            conference_id=command.conference_id,
            data=command.to_bytes(),
            held_at=self.clock(),
            cause=str(err),
        )
        self.store.hold_command(held)
        grant = self.store.get_grant(err.user, OAuthProvider.VENDOR)
        if grant is not None and grant.status is GrantStatus.ACTIVE:
            # They reconnected while this was being held, after their reconnect sent what was
            # held then: nothing would send this one. It goes now, through the transport's retry.
            self.store.release_held(err.user, [command.command_id])
            raise TransientError("its owner reconnected while the command was held: sent again") from err
        log.warning("command held until its owner reconnects their vendor account", owner=err.user)

    def _provider_for(self, command: ConferenceCommand) -> ConferenceProvider:
        if self.as_owner is None:
            return self.provider
        state = self.store.get_calendar(command.calendar_id)
        owner = state.subject if state is not None else None
        if owner is None:  # forgotten (its owner left) or never owned: nobody to act for, not even the app
            raise PermanentError(f"calendar {command.calendar_id} has no owner whose vendor account to act in")
        return self.as_owner(owner)

    def _call(self, command: ConferenceCommand) -> None:
        provider = self._provider_for(command)
        self.breaker.before_call()
        try:
            if command.kind is CommandKind.DELETE:
                provider.delete(command.conference_id, idempotency_key=command.command_id)
            else:
                assert command.payload is not None  # noqa: S101 - contracts require it for updates
                provider.update(
                    command.conference_id,
                    command.payload,
                    event_updated=command.event_updated,
                    idempotency_key=command.command_id,
                )
        except CircuitOpen:
            raise
        except TransientError:
            self.breaker.failure()
            raise
        except ConfsyncError:
            self.breaker.success()  # the provider answered, even if it said no: it is up
            raise
        self.breaker.success()


_Expiring = TypeVar("_Expiring", AppliedVersion, Link)


def _unexpired(record: _Expiring | None, now: datetime) -> _Expiring | None:
    """The record, or None once past its expiry: the sweep or the TTL policy may delete it any time."""
    if record is None or (record.expires_at is not None and record.expires_at <= now):
        return None
    return record
