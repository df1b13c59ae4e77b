"""Retention at the publisher, against the provider sandbox: applied versions carry their expiry,
and once a conference's records have expired and been swept, a late copy of one of its old
commands (a held command, a replayed dead letter) calls the provider for nothing and writes
nothing back; fresh commands, and live unbounded series, are never taken for expired ones."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests_support import PROVIDER_KEY, RunningProvider

from confsync.contracts import CommandKind, CommandReason, ConferenceCommand, ConferencePayload, EventTime
from confsync.ports import NewConference
from confsync.provider import HttpConferenceProvider
from confsync.retention import Retention
from confsync.serving import ServedApp
from confsync.settings import Secret, Settings
from confsync.store import Link, LinkState
from confsync.store.sqlite import SqliteStore
from publishers.apply import ApplyOutcome, CommandApplier
from publishers.retry import retry_policy
from sandbox.provider import create_app
from sandbox.provider.server import build_sandbox

T0 = datetime(2026, 11, 24, 10, tzinfo=UTC)
KEEP = timedelta(days=90)
CAL = "a@example.com"


@dataclass
class Rig:
    provider: RunningProvider
    client: HttpConferenceProvider
    store: SqliteStore
    applier: CommandApplier
    now: list[datetime] = field(default_factory=lambda: [T0])

    def conference(self) -> str:
        return self.client.create(NewConference(calendar_id=CAL, event_id="e1", request_id="r1")).id

    def calls(self, method: str) -> int:
        return sum(1 for entry in self.provider.journal() if entry["method"] == method)

    def later(self, by: timedelta) -> None:
        """Time passes, and the sweep runs."""
        self.now[0] += by
        self.store.purge_expired(self.now[0])


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    settings = Settings(retry_max_attempts=3, retry_initial_s=0.1, retry_max_s=1.0, retry_max_elapsed_s=10)
    now = [T0]
    with ServedApp(create_app(build_sandbox(api_key=PROVIDER_KEY))) as served:
        client = HttpConferenceProvider(served.url, Secret(PROVIDER_KEY), timeout_s=5)
        store = SqliteStore(tmp_path / "s.sqlite")
        applier = CommandApplier(
            store, client, retry_policy(settings, sleep=lambda _: None), clock=lambda: now[0], retention=Retention(KEEP)
        )
        yield Rig(RunningProvider(served.url), client, store, applier, now)
        applier.close()
        client.close()
        store.close()


def payload(summary: str, *, day: str = "2026-12-24", recurrence: tuple[str, ...] = ()) -> ConferencePayload:
    return ConferencePayload(
        start=EventTime(date_time=f"{day}T10:00:00Z"),
        end=EventTime(date_time=f"{day}T11:00:00Z"),
        summary=summary,
        attendees=("ann@example.com",),
        recurrence=recurrence,
    )


def update(conference_id: str, body: ConferencePayload, at: datetime) -> ConferenceCommand:
    return ConferenceCommand.create(
        kind=CommandKind.UPDATE, conference_id=conference_id, calendar_id=CAL, event_id="e1", event_updated=at,
        reason=CommandReason.CHANGED, payload=body,
    )  # fmt: skip


def delete(conference_id: str, at: datetime) -> ConferenceCommand:
    return ConferenceCommand.create(
        kind=CommandKind.DELETE, conference_id=conference_id, calendar_id=CAL, event_id="e1", event_updated=at,
        reason=CommandReason.CANCELLED, fingerprint="gone",
    )  # fmt: skip


def test_an_applied_version_expires_retain_days_after_its_event_ends(rig: Rig) -> None:
    conference = rig.conference()
    rig.applier.apply(update(conference, payload("kick-off"), T0))
    applied = rig.store.get_applied(conference)
    assert applied is not None
    assert applied.expires_at == datetime(2026, 12, 24, 11, tzinfo=UTC) + KEEP


def test_an_old_update_redelivered_after_its_records_expired_changes_nothing(rig: Rig) -> None:
    conference = rig.conference()
    first = update(conference, payload("draft"), T0)
    rig.applier.apply(first)
    rig.applier.apply(update(conference, payload("final"), T0 + timedelta(minutes=5)))
    rig.later(timedelta(days=200))  # the event ended 170 days ago: swept
    assert rig.store.get_applied(conference) is None
    patches = rig.calls("PATCH")

    rig.applier.apply(first)  # a late copy of the first version

    assert rig.applier.counts[ApplyOutcome.EXPIRED] == 1
    assert rig.calls("PATCH") == patches, "the provider was not called"
    assert rig.client.get(conference).summary == "final", "the newest version stands"
    assert rig.store.get_applied(conference) is None, "nothing re-created"


def test_a_delete_redelivered_after_its_records_expired_still_goes_out_and_revives_no_link(rig: Rig) -> None:
    """A delete is never dropped as expired (one held for its owner's reconnect must still go out):
    late, it costs one more DELETE, of a conference already gone."""
    conference = rig.conference()
    rig.applier.apply(update(conference, payload("to cancel", day="2027-03-01"), T0))
    rig.store.upsert_link(Link(CAL, "e1", conference, "fp", T0, LinkState.LEAVING))  # its delete waited out the grace
    cancel = delete(conference, T0 + timedelta(hours=1))
    rig.applier.apply(cancel)
    link = rig.store.get_link(CAL, "e1")
    assert link is not None
    assert (link.state, link.expires_at) == (LinkState.DELETED, T0 + KEEP), "a settled delete is kept RETAIN_DAYS"
    rig.applier.apply(cancel)  # a redelivery within retention: still a duplicate
    assert rig.applier.counts[ApplyOutcome.DUPLICATE] == 1
    deletes = rig.calls("DELETE")

    rig.later(KEEP + timedelta(days=1))
    assert (rig.store.get_link(CAL, "e1"), rig.store.get_applied(conference)) == (None, None)
    rig.applier.apply(cancel)

    assert rig.applier.counts[ApplyOutcome.EXPIRED] == 0
    assert rig.calls("DELETE") == deletes + 1
    assert rig.store.get_link(CAL, "e1") is None, "no link comes back"


def test_a_live_unbounded_series_is_never_expired(rig: Rig) -> None:
    conference = rig.conference()
    weekly = update(conference, payload("stand-up", recurrence=("RRULE:FREQ=WEEKLY;BYDAY=MO",)), T0)
    rig.applier.apply(weekly)
    rig.later(timedelta(days=3650))
    applied = rig.store.get_applied(conference)
    assert applied is not None
    assert applied.expires_at is None
    rig.applier.apply(weekly)
    assert rig.applier.counts[ApplyOutcome.DUPLICATE] == 1


def test_a_first_command_carrying_an_old_version_is_applied_while_a_link_remembers_it(rig: Rig) -> None:
    """A series created long ago and never edited gets its first update now (e.g. after a
    reconnect): its version is old, yet its link knows it, so it is no late copy."""
    conference = rig.conference()
    created = T0 - timedelta(days=400)
    rig.store.upsert_link(Link(CAL, "e1", conference, "fp", created))
    series = payload("weekly since last year", day="2025-10-20", recurrence=("RRULE:FREQ=WEEKLY",))
    rig.applier.apply(update(conference, series, created))
    assert rig.applier.counts[ApplyOutcome.APPLIED] == 1
    assert rig.client.get(conference).summary == "weekly since last year"


def test_an_update_of_an_event_that_ended_longer_ago_than_retention_is_not_sent(rig: Rig) -> None:
    conference = rig.conference()
    rig.applier.apply(update(conference, payload("last spring", day="2026-03-01"), T0))
    assert rig.applier.counts[ApplyOutcome.EXPIRED] == 1
    assert rig.calls("PATCH") == 0
    assert rig.store.get_applied(conference) is None
