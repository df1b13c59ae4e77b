"""Applying commands against the provider sandbox with fault injection: retries reuse one
Idempotency-Key and change the conference once, Retry-After is honoured, stale commands never
reach the provider, permanent failures are dead-lettered with the provider's answer, the
breaker opens and closes, and shuffled duplicates end at the newest version."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests_support import PROVIDER_KEY, RunningProvider

from confsync.contracts import CommandKind, CommandReason, ConferenceCommand, ConferencePayload, EventTime
from confsync.errors import AuthError, Disconnected, PermanentError, TransientError
from confsync.ports import NewConference
from confsync.provider import HttpConferenceProvider
from confsync.serving import ServedApp
from confsync.settings import Secret, Settings
from confsync.store import OutboxEntry
from confsync.store.records import OAuthProvider
from confsync.store.sqlite import SqliteStore
from confsync.transport.base import DeadLetter, Message, Outcome, process
from confsync.transport.memory import MemoryBroker
from publishers.app import build_applier
from publishers.apply import ApplyOutcome, CommandApplier
from publishers.breaker import CircuitBreaker
from publishers.retry import CircuitOpen, retry_policy
from sandbox.provider import create_app
from sandbox.provider.server import build_sandbox

T0 = datetime(2026, 11, 24, 10, tzinfo=UTC)


@dataclass
class Rig:
    provider: RunningProvider
    client: HttpConferenceProvider
    store: SqliteStore
    applier: CommandApplier
    sleeps: list[float] = field(default_factory=list)

    def conference(self, request_id: str = "r1") -> str:
        return self.client.create(NewConference(calendar_id="a@example.com", event_id="e1", request_id=request_id)).id

    def patches(self) -> list[dict[str, object]]:
        return [e for e in self.provider.journal() if e["method"] == "PATCH"]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    sleeps: list[float] = []
    settings = Settings(retry_max_attempts=6, retry_initial_s=0.1, retry_max_s=5.0, retry_max_elapsed_s=60)
    with ServedApp(create_app(build_sandbox(api_key=PROVIDER_KEY))) as served:
        client = HttpConferenceProvider(served.url, Secret(PROVIDER_KEY), timeout_s=5)
        store = SqliteStore(tmp_path / "s.sqlite")
        applier = CommandApplier(store, client, retry_policy(settings, sleep=sleeps.append))
        yield Rig(RunningProvider(served.url), client, store, applier, sleeps)
        applier.close()
        client.close()
        store.close()


def update(conference_id: str, summary: str, at: datetime = T0) -> ConferenceCommand:
    payload = ConferencePayload(start=EventTime(date="2026-12-24"), end=EventTime(date="2026-12-25"), summary=summary)
    return ConferenceCommand.create(
        kind=CommandKind.UPDATE,
        conference_id=conference_id,
        calendar_id="a@example.com",
        event_id="e1",
        event_updated=at,
        reason=CommandReason.CHANGED,
        payload=payload,
    )


def fault(rig: Rig, **rule: object) -> None:
    rig.provider.admin("POST", "/_sandbox/faults", {"path": "^/v1/conferences/", **rule})


def deliver(
    applier: CommandApplier, command: ConferenceCommand, *, attempt: int, dead: MemoryBroker | None = None
) -> Outcome:
    """One delivery through the transports' shared ack / nack / dead-letter rules."""
    message = Message(command.to_bytes(), {}, f"m{attempt}", command.conference_id, attempt)
    broker = dead or MemoryBroker()
    broker.create_topic("dead")
    target = DeadLetter(broker, "dead", "conference-commands-publisher")
    return process(message, applier, dead_letter=target, max_attempts=applier.max_attempts)


def test_a_503_and_429_storm_recovers_with_one_applied_change(rig: Rig) -> None:
    conference = rig.conference()
    fault(rig, method="PATCH", status=503, count=2)
    fault(rig, method="PATCH", status=429, count=2)
    command = update(conference, "after the storm")
    rig.applier.apply(command)
    patches = rig.patches()
    assert [p["status"] for p in patches] == [503, 503, 429, 429, 200]
    assert {p["idempotency_key"] for p in patches} == {command.command_id}, "one key for every retry"
    shown = rig.client.get(conference)
    assert (shown.summary, shown.version) == ("after the storm", 2), "changed exactly once"
    assert rig.store.get_applied(conference).event_updated == T0


def test_retry_after_is_never_cut_short(rig: Rig) -> None:
    conference = rig.conference()
    fault(rig, method="PATCH", status=429, retry_after=3, count=1)
    rig.applier.apply(update(conference, "x"))
    assert rig.sleeps
    assert rig.sleeps[0] >= 3.0


def test_a_stale_command_never_reaches_the_provider(rig: Rig) -> None:
    conference = rig.conference()
    rig.applier.apply(update(conference, "new", T0 + timedelta(minutes=5)))
    rig.applier.apply(update(conference, "old", T0))
    rig.applier.apply(update(conference, "new", T0 + timedelta(minutes=5)))  # a duplicate delivery
    assert len(rig.patches()) == 1
    assert rig.client.get(conference).summary == "new"
    assert (rig.applier.counts[ApplyOutcome.STALE], rig.applier.counts[ApplyOutcome.DUPLICATE]) == (1, 1)


def test_a_409_stale_answer_and_a_404_on_delete_count_as_done(rig: Rig) -> None:
    conference = rig.conference()
    rig.client.update(
        conference, update(conference, "x").payload, event_updated=T0 + timedelta(hours=1), idempotency_key="other"
    )  # type: ignore[arg-type]
    rig.applier.apply(update(conference, "older", T0))
    assert rig.applier.counts[ApplyOutcome.SUPERSEDED] == 1
    gone = ConferenceCommand.create(
        kind=CommandKind.DELETE, conference_id="cnf_never", calendar_id="a", event_id="e", event_updated=T0,
        reason=CommandReason.CANCELLED, fingerprint="fp",
    )  # fmt: skip
    rig.applier.apply(gone)
    assert rig.applier.counts[ApplyOutcome.ALREADY_GONE] == 1


@pytest.mark.parametrize(("status", "error"), [(401, AuthError), (400, PermanentError)])
def test_permanent_failures_are_dead_lettered_with_the_providers_answer(rig: Rig, status: int, error: type) -> None:
    conference = rig.conference()
    fault(rig, method="PATCH", status=status, count=1)
    broker = MemoryBroker()
    broker.create_topic("dead")
    broker.create_subscription("dead-sub", "dead")
    command = update(conference, "x")
    outcome = process(
        Message(command.to_bytes(), {}, "m1", conference, 1),
        rig.applier,
        dead_letter=DeadLetter(broker, "dead", "conference-commands-publisher"),
        max_attempts=5,
    )
    assert outcome is Outcome.DEAD_LETTER
    ((_, dead),) = broker.pull("dead-sub", 5, 1.0)
    assert dead.data == command.to_bytes()
    assert dead.attributes["dead_letter_status"] == str(status)
    assert dead.attributes["dead_letter_error"] == error.__name__
    assert "injected fault" in dead.attributes["dead_letter_body"]
    assert len(rig.patches()) == 1, "not retried"


def test_giving_up_on_a_transient_outage_hands_the_message_back(rig: Rig) -> None:
    conference = rig.conference()
    fault(rig, method="PATCH", status=503)
    with pytest.raises(TransientError):
        rig.applier.apply(update(conference, "x"))
    assert len(rig.patches()) == 5, "the breaker opened after 5 failures; the 6th attempt never called"


def test_a_command_leaves_the_outbox_once_settled_and_stays_while_it_may_come_back(rig: Rig) -> None:
    conference = rig.conference()
    new, old, refused, unlucky = (
        update(conference, "new", T0 + timedelta(minutes=5)),
        update(conference, "old", T0),
        update(conference, "refused", T0 + timedelta(minutes=6)),
        update(conference, "unlucky", T0 + timedelta(minutes=7)),
    )
    due = T0 - timedelta(days=1)  # all overdue: only what is settled may leave
    rig.store.outbox_add(
        [OutboxEntry(c.command_id, conference, c.to_bytes(), due) for c in (new, old, refused, unlucky)]
    )
    rig.applier.apply(new)
    rig.applier.apply(old)  # stale: settled without a call
    fault(rig, method="PATCH", status=400, count=1)
    assert deliver(rig.applier, refused, attempt=1) is Outcome.DEAD_LETTER  # with the cause: settled
    fault(rig, method="PATCH", status=503)
    assert deliver(rig.applier, unlucky, attempt=1) is Outcome.NACK  # handed back: it may be lost there
    rig.applier.flush()
    assert [e.command_id for e in rig.store.outbox_due(T0)] == [unlucky.command_id]


def test_a_command_failing_transiently_on_its_last_delivery_is_dead_lettered_and_leaves_the_outbox(
    rig: Rig,
) -> None:
    """Otherwise ingest/lag.py would publish it again, and it would be dead-lettered again, forever."""
    settings = Settings(pubsub_max_delivery_attempts=3, retry_max_attempts=1)
    applier = build_applier(settings, rig.store, rig.client)
    conference = rig.conference()
    command = update(conference, "x")
    rig.store.outbox_add([OutboxEntry(command.command_id, conference, command.to_bytes(), T0 - timedelta(days=1))])
    fault(rig, method="PATCH", status=503)
    dead = MemoryBroker()
    dead.create_subscription("dead-sub", "dead")

    assert deliver(applier, command, attempt=2, dead=dead) is Outcome.NACK
    applier.flush()
    assert [e.command_id for e in rig.store.outbox_due(T0)] == [command.command_id], "it may come back"

    assert deliver(applier, command, attempt=3, dead=dead) is Outcome.DEAD_LETTER
    applier.flush()
    assert rig.store.outbox_due(T0) == [], "settled: nothing publishes it again"
    ((_, letter),) = dead.pull("dead-sub", 5, 1.0)
    assert letter.data == command.to_bytes()
    assert (letter.attributes["dead_letter_status"], letter.attributes["dead_letter_attempts"]) == ("503", "3")
    applier.close()


def test_a_flush_returns_only_once_the_settlers_write_under_way_is_done(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settler thread may hold the very commands a caller settled: a flush finding nothing
    new must still wait until their removal is written."""
    conference = rig.conference()
    command = update(conference, "x")
    rig.store.outbox_add([OutboxEntry(command.command_id, conference, command.to_bytes(), T0 - timedelta(days=1))])
    original = rig.store.outbox_done
    writing = threading.Event()

    def slow_write(ids: list[str]) -> None:
        writing.set()
        time.sleep(0.3)
        original(ids)

    monkeypatch.setattr(rig.store, "outbox_done", slow_write)
    rig.applier.apply(command)
    assert writing.wait(5), "the settler thread takes settled commands within 50 ms"
    rig.applier.flush()
    assert rig.store.outbox_due(T0) == []


def test_the_breaker_opens_on_an_outage_and_closes_after_the_cool_down(rig: Rig) -> None:
    now = [0.0]
    rig.applier.breaker = CircuitBreaker(threshold=3, cooldown_s=30, clock=lambda: now[0])
    conference = rig.conference()
    fault(rig, method="PATCH", status=503, count=3)
    with pytest.raises(CircuitOpen):
        rig.applier.apply(update(conference, "x"))
    assert rig.applier.breaker.state == "open"
    calls = len(rig.patches())
    with pytest.raises(CircuitOpen):
        rig.applier.apply(update(conference, "y", T0 + timedelta(seconds=1)))
    assert len(rig.patches()) == calls, "an open breaker does not call the provider"
    now[0] = 31.0
    rig.applier.apply(update(conference, "z", T0 + timedelta(seconds=2)))
    assert rig.applier.breaker.state == "closed"
    assert rig.client.get(conference).summary == "z"


def test_the_services_breaker_takes_its_threshold_and_cool_down_from_settings(rig: Rig) -> None:
    settings = Settings(breaker_threshold=2, breaker_cooldown_s=0.3, retry_max_attempts=1)
    applier = build_applier(settings, rig.store, rig.client)
    conference = rig.conference()
    fault(rig, method="PATCH", status=503, count=2)
    for n in range(2):
        with pytest.raises(TransientError):
            applier.apply(update(conference, f"x{n}", T0 + timedelta(seconds=n)))
    assert applier.breaker.state == "open", "two consecutive failures open it, as set"
    started = time.monotonic()
    applier.apply(update(conference, "y", T0 + timedelta(seconds=5)))  # held until the trial call
    assert 0.2 <= time.monotonic() - started < 5, "the cool-down is the 0.3 s set, not the default 30 s"
    assert applier.breaker.state == "closed"
    assert rig.client.get(conference).summary == "y"
    applier.close()


def test_during_a_short_outage_the_message_is_held_not_nacked(rig: Rig) -> None:
    """A nack spends one of the message's few delivery attempts; holding it until the breaker
    lets a trial call through does not, so a short outage dead-letters nothing."""
    rig.applier.breaker = CircuitBreaker(threshold=1, cooldown_s=0.3, hold_s=5)
    conference = rig.conference()
    fault(rig, method="PATCH", status=503, count=1)  # opens the breaker at once
    started = time.monotonic()
    rig.applier.apply(update(conference, "x"))  # held through the cool-down, then the trial call
    assert time.monotonic() - started >= 0.3
    assert rig.applier.breaker.state == "closed"
    assert rig.client.get(conference).summary == "x"
    assert [entry["status"] for entry in rig.patches()] == [503, 200]


def test_a_duplicate_delivered_alongside_the_original_calls_the_provider_once(rig: Rig) -> None:
    conference = rig.conference()
    fault(rig, method="PATCH", latency_ms=300, count=1)  # the first call is slow: the copy overlaps it
    command = update(conference, "x")
    copies = [threading.Thread(target=rig.applier.apply, args=(command,)) for _ in range(2)]
    for copy in copies:
        copy.start()
    for copy in copies:
        copy.join()
    assert len(rig.patches()) == 1
    assert rig.applier.counts == {ApplyOutcome.APPLIED: 1, ApplyOutcome.DUPLICATE: 1}


def test_shuffled_duplicated_deliveries_end_at_the_newest_version(rig: Rig) -> None:
    conference = rig.conference()
    commands = [update(conference, f"v{n}", T0 + timedelta(seconds=n)) for n in range(10)]
    deliveries = commands * 3
    random.Random(4).shuffle(deliveries)
    for command in deliveries:
        rig.applier.apply(command)
    assert rig.client.get(conference).summary == "v9"
    assert rig.store.get_applied(conference).event_updated == T0 + timedelta(seconds=9)


def test_a_retry_after_of_an_hour_waits_no_longer_than_the_longest_backoff(rig: Rig) -> None:
    """An uncapped Retry-After held a request far past any deadline the caller has."""
    sleeps: list[float] = []
    settings = Settings(retry_max_attempts=2, retry_initial_s=0.1, retry_max_s=5.0, retry_max_elapsed_s=60)
    applier = CommandApplier(rig.store, rig.client, retry_policy(settings, sleep=sleeps.append))
    conference = rig.conference()
    fault(rig, method="PATCH", status=429, retry_after=3600, count=1)
    applier.apply(update(conference, "x"))
    assert sleeps == [5.0]
    assert rig.client.get(conference).summary == "x"
    applier.close()


def test_a_push_delivery_gives_up_within_its_share_of_the_ack_deadline(rig: Rig) -> None:
    """Pub/Sub delivers a push request again once its ack deadline passes, so retrying past it
    would run two copies at once: a push applier answers in time and leaves the backing off to
    the subscription."""
    sleeps: list[float] = []
    settings = Settings(retry_max_attempts=50, retry_initial_s=1.0, retry_max_s=30.0, retry_max_elapsed_s=120)
    applier = CommandApplier(rig.store, rig.client, retry_policy(settings, sleep=sleeps.append, budget_s=30))
    conference = rig.conference()
    fault(rig, method="PATCH", status=503, retry_after=20)
    with pytest.raises(TransientError):
        applier.apply(update(conference, "x"))
    assert sleeps, "it retried"
    assert sum(sleeps) < 30, f"slept {sum(sleeps)} s of a 30 s budget"
    applier.close()


@pytest.mark.parametrize(("delivery", "held"), [("push", False), ("pull", True)])
def test_only_a_pull_worker_waits_for_an_open_breaker(rig: Rig, delivery: str, held: bool) -> None:
    settings = Settings(delivery=delivery, breaker_threshold=1, breaker_cooldown_s=0.5, retry_max_attempts=1)
    applier = build_applier(settings, rig.store, rig.client)
    conference = rig.conference()
    fault(rig, method="PATCH", status=503, count=1)
    with pytest.raises(TransientError):
        applier.apply(update(conference, "x"))
    started = time.monotonic()
    if held:
        applier.apply(update(conference, "y", T0 + timedelta(seconds=1)))
        assert time.monotonic() - started >= 0.4, "held until the trial call"
    else:
        with pytest.raises(CircuitOpen):
            applier.apply(update(conference, "y", T0 + timedelta(seconds=1)))
        assert time.monotonic() - started < 0.4, "answered at once: Pub/Sub backs off"
    applier.close()


def test_a_command_held_just_as_its_owner_reconnects_goes_out_instead_of_waiting_for_good(
    rig: Rig, tmp_path: Path
) -> None:
    """The owner's reconnect sends what was held before it; a command whose hold lands after
    that (it read the revoked grant just before the reconnect) must not wait for the next one."""
    from accounts.grants import Grants  # noqa: PLC0415 - the test's way to store a grant
    from accounts.vault import LocalKeyFile, Vault  # noqa: PLC0415

    owner = "owner@example.com"
    rig.store.claim_calendar("a@example.com", owner)
    Grants(rig.store, Vault(LocalKeyFile(tmp_path / "k"))).save(owner, OAuthProvider.VENDOR, Secret("rt"), ["c"])

    def revoked_then_reconnected(_user: str) -> HttpConferenceProvider:
        raise Disconnected("revoked when this command read it", user=owner, provider="vendor")

    applier = CommandApplier(
        rig.store, rig.client, retry_policy(Settings(), sleep=rig.sleeps.append), as_owner=revoked_then_reconnected
    )
    try:
        with pytest.raises(TransientError, match="reconnected"):
            applier.apply(update(rig.conference(), "Planning"))
    finally:
        applier.close()
    assert rig.store.count_held(owner) == 0  # not left behind: the transport delivers it again
