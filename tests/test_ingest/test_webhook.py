"""The webhook against the real app and the Pub/Sub emulator: every row of its contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs
from tests_support import event_body
from tests_support.transport import wait_until

from confsync.contracts import ResourceState, Source
from confsync.errors import CalendarGone
from confsync.settings import Secret
from confsync.store import PENDING_RESOURCE_ID, ChannelRecord
from confsync.tracing import TRACEPARENT
from ingest.channels import ChannelManager

CAL = "alice@example.com"


@pytest.fixture
def channel(ingest) -> ChannelRecord:  # type: ignore[no-untyped-def]
    record = ChannelRecord(
        channel_id="chan-1",
        calendar_id=CAL,
        resource_id="res-1",
        token=Secret("per-channel-secret"),
        expiration=datetime.now(UTC) + timedelta(days=1),
    )
    ingest.store.add_channel(record)
    return record


def headers(number: int = 1, state: str = "exists", **changes: str) -> dict[str, str]:
    values = {
        "X-Goog-Channel-ID": "chan-1",
        "X-Goog-Channel-Token": "per-channel-secret",
        "X-Goog-Resource-ID": "res-1",
        "X-Goog-Resource-State": state,
        "X-Goog-Message-Number": str(number),
        "X-Goog-Resource-URI": "https://www.googleapis.com/calendar/v3/calendars/alice%40example.com/events",
    }
    values.update(changes)
    return {key: value for key, value in values.items() if value != "-"}


@pytest.mark.parametrize("state", ["sync", "exists", "not_exists"])
def test_a_known_channel_publishes_one_calendar_changed(ingest, channel, state: str) -> None:  # type: ignore[no-untyped-def]
    answer = ingest.notify(**headers(7, state))
    assert answer.status_code == 200
    (change,) = ingest.published(1)
    assert change.calendar_id == CAL
    assert change.source is Source.PUSH
    assert change.channel_id == "chan-1"
    assert change.resource_state is ResourceState(state)
    assert change.message_number == 7
    state_after = ingest.store.get_calendar(CAL)
    assert (state_after.last_channel_id, state_after.last_message_number) == ("chan-1", 7)


CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("trace_headers", "continued"),
    [
        ({"traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"}, True),
        ({"X-Cloud-Trace-Context": f"{CALLER_TRACE}/42;o=1"}, True),  # Cloud Run's
        ({}, False),
        ({"traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7"}, False),  # malformed: no flags
        ({"traceparent": b"\xe9t\xe9"}, False),  # Latin-1, as HTTP carries it
        ({"X-Cloud-Trace-Context": f"{CALLER_TRACE};o=1"}, False),
    ],
    ids=["traceparent", "cloud-run", "none", "truncated", "latin-1", "no-span-id"],
)
def test_the_calendar_changed_carries_the_requests_trace_or_a_new_one(  # type: ignore[no-untyped-def]
    ingest, channel, trace_headers: dict[str, str | bytes], continued: bool
) -> None:
    answer = ingest.notify(**headers(3), **trace_headers)
    assert answer.status_code == 200, "a malformed trace header is ignored, never refused"
    ((change, attributes),) = ingest.received(1)
    assert change.message_number == 3
    trace_id = attributes[TRACEPARENT].split("-")[1]
    assert (trace_id == CALLER_TRACE) is continued
    assert len(trace_id) == 32
    assert int(trace_id, 16) != 0


@pytest.mark.parametrize(
    ("changes", "outcome"),
    [
        ({"X-Goog-Channel-Token": "guessed"}, "bad_token"),
        ({"X-Goog-Channel-Token": "-"}, "bad_token"),
        ({"X-Goog-Resource-ID": "res-other"}, "bad_resource"),
    ],
)
def test_a_forged_notification_is_refused_and_the_token_never_logged(ingest, channel, changes, outcome) -> None:  # type: ignore[no-untyped-def]
    with capture_logs() as logs:
        answer = ingest.notify(**headers(**changes))
    assert answer.status_code == 401
    assert ingest.stats.counts[outcome] == 1
    refused = [line for line in logs if line["event"] == "notification refused"]
    assert refused
    assert refused[0]["log_level"] == "warning"
    assert refused[0]["channel_id"] == "chan-1"
    assert "per-channel-secret" not in repr(logs)
    assert "guessed" not in repr(logs)
    assert ingest.published(0) == []


def test_an_unknown_or_stopped_channel_is_acknowledged_and_ignored(ingest, channel) -> None:  # type: ignore[no-untyped-def]
    assert ingest.notify(**headers(**{"X-Goog-Channel-ID": "chan-unknown"})).status_code == 200
    ingest.store.stop_channel("chan-1")
    assert ingest.notify(**headers(2)).status_code == 200
    assert ingest.stats.counts["unknown_channel"] == 2
    assert ingest.published(0) == []


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"X-Goog-Channel-ID": "-"}, "missing header X-Goog-Channel-ID"),
        ({"X-Goog-Resource-State": "-"}, "missing header X-Goog-Resource-State"),
        ({"X-Goog-Resource-State": "deleted"}, "unknown X-Goog-Resource-State"),
        ({"X-Goog-Message-Number": "seven"}, "X-Goog-Message-Number is not a number"),
        ({"X-Goog-Resource-ID": "-"}, "missing header X-Goog-Resource-ID"),
    ],
)
def test_missing_or_malformed_headers_are_a_400_with_the_reason(ingest, channel, changes, reason) -> None:  # type: ignore[no-untyped-def]
    answer = ingest.notify(**headers(**changes))
    assert answer.status_code == 400
    assert reason in answer.json()["error"]
    assert ingest.published(0) == []


@pytest.mark.parametrize("number", [b"\xb2", b"1\xb3", b"\xb9"])  # '²', '1³', '¹': Latin-1, as HTTP carries them
def test_a_message_number_in_other_digits_is_a_400(ingest, channel, number: bytes) -> None:  # type: ignore[no-untyped-def]
    answer = ingest.notify(**headers(**{"X-Goog-Message-Number": number}))
    assert answer.status_code == 400
    assert "X-Goog-Message-Number is not a number" in answer.json()["error"]
    assert ingest.published(0) == []


def test_a_repeated_or_older_number_is_published_again(ingest, channel) -> None:  # type: ignore[no-untyped-def]
    """A number never drops a notification; repeats are cheap, since the processor acknowledges
    one older than the calendar's last completed sync without calling Google."""
    for number in (1, 1, 2, 1):
        assert ingest.notify(**headers(number)).status_code == 200
    assert sorted(change.message_number for change in ingest.published(4)) == [1, 1, 1, 2]
    assert ingest.stats.counts["published"] == 4


# A 2 s window: the four round trips fit in it however loaded the machine.
@pytest.mark.parametrize("ingest", [{"notify_fold_s": 2.0, "sync_min_interval_s": 2.0}], indirect=True)
def test_a_storm_s_notifications_fold_into_one_message_each_recorded_before_its_answer(ingest, channel) -> None:  # type: ignore[no-untyped-def]
    answers = [ingest.notify(**headers(number)) for number in (1, 2, 3, 4)]
    assert [answer.status_code for answer in answers] == [200] * 4
    # Answered before the fold closes, yet remembered: lag repair would find them after a crash.
    assert ingest.store.get_calendar(CAL).last_message_number == 4
    assert [(change.message_number, change.notifications) for change in ingest.published(2)] == [(1, 1), (4, 3)]
    assert (ingest.stats.counts["published"], ingest.stats.counts["folded"]) == (1, 3)


@pytest.mark.parametrize(
    "ingest", [{"notify_fold_s": 30.0, "sync_min_interval_s": 30.0, "sync_max_interval_s": 30.0}], indirect=True
)
def test_stopping_ingest_publishes_what_it_folded(ingest, channel) -> None:  # type: ignore[no-untyped-def]
    assert [ingest.notify(**headers(number)).status_code for number in (1, 2, 3)] == [200] * 3
    assert [change.message_number for change in ingest.published(1, timeout=1.0)] == [1]
    ingest.served.stop()  # long before the window closes
    assert [(change.message_number, change.notifications) for change in ingest.published(1)] == [(3, 2)]


def test_a_forged_huge_message_number_cannot_silence_the_channel(ingest, channel) -> None:  # type: ignore[no-untyped-def]
    """Whoever holds a channel's token can send any number: the genuine notifications after it
    are still published, and lag repair still waits for a sync that covers them."""
    forged = 999_999_999_999_999_999
    assert ingest.notify(**headers(forged)).status_code == 200
    state = ingest.store.get_calendar(CAL)
    assert ingest.store.save_sync_token(CAL, "tok-1", expected_version=state.token_version, at=datetime.now(UTC))
    for genuine in (2, 3):
        assert ingest.notify(**headers(genuine)).status_code == 200
    assert sorted(change.message_number for change in ingest.published(3)) == [2, 3, forged]
    lagging = ingest.store.lagging_calendars(datetime.now(UTC) + timedelta(minutes=1))
    assert [s.calendar_id for s in lagging] == [CAL], "no sync has covered the genuine notifications yet"


def test_a_failed_publish_is_a_503_and_the_retry_publishes(ingest, channel) -> None:  # type: ignore[no-untyped-def]
    """An outage of the topic: 503 (Google retries), nothing remembered; the retry publishes."""
    from google.cloud import pubsub_v1  # noqa: PLC0415

    admin = pubsub_v1.PublisherClient()
    topic = admin.topic_path("confsync-test", ingest.settings.topic_calendar_changes)
    admin.delete_topic(topic=topic)
    try:
        assert ingest.notify(**headers(5)).status_code == 503
        state = ingest.store.get_calendar(CAL)
        assert state is None or state.last_message_number != 5, "a failed publish is not remembered"
        admin.create_topic(name=topic)
        assert ingest.notify(**headers(5)).status_code == 200, "Google's retry goes through"
        assert ingest.stats.counts["publish_failed"] == 1
    finally:
        admin.transport.close()


def test_the_calendar_sandbox_notifications_reach_the_webhook(ingest) -> None:  # type: ignore[no-untyped-def]
    service = ingest.calendar.service()
    service.events().insert(calendarId=CAL, body=event_body("first")).execute()
    ingest.channels.ensure(CAL)
    seen = collect(ingest, lambda got: any(c.resource_state is ResourceState.SYNC for c in got))
    assert [c.resource_state for c in seen] == [ResourceState.SYNC]
    service.events().insert(calendarId=CAL, body=event_body("second")).execute()
    seen = collect(ingest, lambda got: any(c.resource_state is ResourceState.EXISTS for c in got))
    assert [(c.resource_state, c.message_number) for c in seen] == [(ResourceState.EXISTS, 2)]


class LateWatchAnswer:
    """events.watch whose answer reaches us only after Google's ``sync`` message reached the
    webhook: an order Google's network may choose."""

    def __init__(self, inner, stats, *, fail: bool = False) -> None:  # type: ignore[no-untyped-def]
        self._inner, self._stats, self._fail = inner, stats, fail

    def watch(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        answer = self._inner.watch(*args, **kwargs)
        wait_until(lambda: sum(self._stats.counts.values()) >= 1, timeout=10, what="the sync message")
        if self._fail:
            raise CalendarGone("the answer was lost")
        return answer


def late_manager(ingest, *, fail: bool = False) -> ChannelManager:  # type: ignore[no-untyped-def]
    return ChannelManager(
        ingest.store,
        LateWatchAnswer(ingest.channels._calendar, ingest.stats, fail=fail),
        webhook_url=ingest.settings.webhook_url,
        ttl_s=3600,
    )


def test_a_sync_message_that_beats_the_watch_answer_is_published(ingest) -> None:  # type: ignore[no-untyped-def]
    ingest.calendar.service().events().insert(calendarId=CAL, body=event_body("first")).execute()
    record = late_manager(ingest).ensure(CAL)
    seen = collect(ingest, bool)
    assert [(c.resource_state, c.channel_id) for c in seen] == [(ResourceState.SYNC, record.channel_id)]
    assert ingest.stats.counts["published"] == 1
    stored = ingest.store.get_channel(record.channel_id)
    assert stored.resource_id == record.resource_id != PENDING_RESOURCE_ID, "the answer fills in the resource id"


def test_a_pending_channel_still_refuses_a_wrong_token(ingest) -> None:  # type: ignore[no-untyped-def]
    ingest.store.add_channel(
        ChannelRecord(
            "chan-1", CAL, PENDING_RESOURCE_ID, Secret("per-channel-secret"), datetime.now(UTC) + timedelta(hours=1)
        )
    )
    assert ingest.notify(**headers(**{"X-Goog-Channel-Token": "guessed"})).status_code == 401
    assert ingest.notify(**headers(**{"X-Goog-Resource-ID": "whatever"})).status_code == 200
    assert len(ingest.published(1)) == 1


def test_a_watch_that_fails_leaves_its_channel_due_for_the_next_pass(ingest) -> None:  # type: ignore[no-untyped-def]
    ingest.calendar.service().events().insert(calendarId=CAL, body=event_body("first")).execute()
    with pytest.raises(CalendarGone, match="the answer was lost"):
        late_manager(ingest, fail=True).ensure(CAL)
    (failed,) = ingest.store.channels_expiring_before(datetime.now(UTC))
    assert failed.resource_id == PENDING_RESOURCE_ID
    assert ingest.channels.renew(timedelta(0)).renewed == [CAL]
    (live,) = ingest.store.live_channels(CAL)
    assert live.resource_id != PENDING_RESOURCE_ID


def collect(ingest, done, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    """Published changes, pulled until ``done`` holds (the sandbox delivers asynchronously)."""
    import time  # noqa: PLC0415

    got = []
    deadline = time.monotonic() + timeout
    while not done(got) and time.monotonic() < deadline:
        got += ingest.published(0, timeout=1.0)
    return got
