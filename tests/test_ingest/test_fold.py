"""Folding a calendar's notifications: the first at once, the rest of a window in one message.

The fold publishes through the in-process broker, a real ``Publisher``; what reached the topic is
read back from its subscription."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import structlog

from confsync.contracts import CalendarChanged, ResourceState, Source
from confsync.errors import TransientError
from confsync.transport.memory import MemoryBroker
from ingest.fold import NotificationFold

WINDOW_S = 0.2
T0 = datetime(2026, 12, 7, 9, tzinfo=UTC)


def _broker() -> MemoryBroker:
    broker = MemoryBroker()
    broker.create_topic("changes")
    broker.create_subscription("changes-sub", "changes")
    return broker


def _published(broker: MemoryBroker) -> list[CalendarChanged]:
    """Everything on the topic so far, in order (a key's next message comes once its last is acked)."""
    got: list[CalendarChanged] = []
    while taken := broker.pull("changes-sub", 100, 0.05):
        for ack_id, message in taken:
            got.append(CalendarChanged.from_bytes(message.data))
            broker.ack("changes-sub", ack_id)
    return got


def _change(number: int, calendar_id: str = "alice@example.com", state: str = "exists") -> CalendarChanged:
    return CalendarChanged(
        calendar_id=calendar_id,
        source=Source.PUSH,
        received_at=T0 + timedelta(milliseconds=number),
        channel_id="chan-1",
        resource_state=ResourceState(state),
        message_number=number,
    )


def test_a_quiet_calendar_is_published_at_once_and_the_rest_of_its_window_in_one_message() -> None:
    broker = _broker()

    async def scenario() -> tuple[list[bool], list[CalendarChanged], list[CalendarChanged], list[CalendarChanged]]:
        fold = NotificationFold(broker, "changes", window_s=WINDOW_S)
        sent = [await fold.send(_change(n)) for n in (1, 2, 3, 4)]
        at_once = _published(broker)
        await asyncio.sleep(WINDOW_S * 1.5)
        at_close = _published(broker)
        await asyncio.sleep(WINDOW_S * 1.5)  # the next window closes with nothing folded
        later = _published(broker)
        return sent, at_once, at_close, later

    sent, at_once, at_close, later = asyncio.run(scenario())
    assert sent == [True, False, False, False]
    assert [(c.message_number, c.notifications) for c in at_once] == [(1, 1)]
    (folded,) = at_close
    assert (folded.message_number, folded.notifications, folded.received_at) == (4, 3, T0 + timedelta(milliseconds=4))
    assert later == []


def test_a_calendar_quiet_again_is_published_at_once() -> None:
    broker = _broker()

    async def scenario() -> list[int | None]:
        fold = NotificationFold(broker, "changes", window_s=WINDOW_S)
        await fold.send(_change(1))
        await asyncio.sleep(WINDOW_S * 1.5)  # closes empty: the calendar is quiet again
        await fold.send(_change(2))
        return [change.message_number for change in _published(broker)]

    assert asyncio.run(scenario()) == [1, 2]


def test_calendars_fold_each_on_its_own_and_only_exists_notifications_fold() -> None:
    broker = _broker()

    async def scenario() -> list[tuple[str, int | None]]:
        fold = NotificationFold(broker, "changes", window_s=WINDOW_S)
        await fold.send(_change(1))
        await fold.send(_change(2, calendar_id="bob@example.com"))
        await fold.send(_change(3, state="sync"))
        await fold.send(_change(4, state="not_exists"))
        return [(change.calendar_id, change.message_number) for change in _published(broker)]

    assert asyncio.run(scenario()) == [
        ("alice@example.com", 1),
        ("bob@example.com", 2),
        ("alice@example.com", 3),
        ("alice@example.com", 4),
    ]


def test_closing_publishes_what_is_folded_at_once_and_folds_nothing_more() -> None:
    broker = _broker()

    async def scenario() -> tuple[list[tuple[int | None, int]], bool]:
        fold = NotificationFold(broker, "changes", window_s=60)
        await fold.send(_change(1))
        await fold.send(_change(2))
        await fold.send(_change(3))
        await fold.close()
        closed = [(change.message_number, change.notifications) for change in _published(broker)]
        return closed, await fold.send(_change(4))

    closed, after = asyncio.run(scenario())
    assert closed == [(1, 1), (3, 2)]
    assert after is True


class _Flaky:
    """The broker as a plain (blocking) ``Publisher`` that can be taken down."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker, self.down = broker, False

    def publish(
        self, topic: str, data: bytes, *, ordering_key: str = "", attributes: Mapping[str, str] | None = None
    ) -> str:
        if self.down:
            raise TransientError("Pub/Sub is unreachable")
        return self.broker.publish(topic, data, ordering_key=ordering_key, attributes=attributes)

    def publish_many(self, topic: str, messages: list[tuple[bytes, str, Mapping[str, str]]]) -> list[str]:
        return [self.publish(topic, data, ordering_key=key, attributes=attrs) for data, key, attrs in messages]


def test_a_blocking_publisher_works_too_and_its_failure_reaches_the_caller() -> None:
    flaky = _Flaky(_broker())

    async def scenario() -> tuple[bool, str]:
        fold = NotificationFold(flaky, "changes", window_s=WINDOW_S)
        first = await fold.send(_change(1))
        flaky.down = True
        try:
            await fold.send(_change(2, calendar_id="bob@example.com"))
        except TransientError as err:
            return first, str(err)
        return first, "no error"

    assert asyncio.run(scenario()) == (True, "Pub/Sub is unreachable")
    assert [change.message_number for change in _published(flaky.broker)] == [1]


def test_a_folded_message_that_cannot_be_published_is_logged_for_lag_repair() -> None:
    flaky = _Flaky(_broker())

    async def scenario() -> NotificationFold:
        fold = NotificationFold(flaky, "changes", window_s=WINDOW_S)
        await fold.send(_change(1))
        await fold.send(_change(2))
        flaky.down = True
        await asyncio.sleep(WINDOW_S * 1.5)
        return fold

    with structlog.testing.capture_logs() as logs:
        fold = asyncio.run(scenario())
    assert fold.counts["fold_failed"] == 1
    (warning,) = [line for line in logs if line["log_level"] == "warning"]
    assert "lag repair" in warning["event"]
    assert (warning["calendar_id"], warning["notifications"]) == ("alice@example.com", 1)
