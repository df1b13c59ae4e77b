"""The transport contract, on the Pub/Sub emulator and on the in-process transport alike:
ordering per key, nack and redelivery, dead letters with their reason, poison messages,
a shutdown that finishes what it started, and the trace a message carries."""

from __future__ import annotations

import threading
import time

from tests_support.transport import MAX_ATTEMPTS, Harness, Recorder, wait_until

from confsync.contracts import CalendarChanged
from confsync.errors import PermanentError, TransientError
from confsync.tracing import TRACEPARENT, inject, span
from confsync.transport.base import Message


def test_messages_with_one_ordering_key_arrive_in_order(harness: Harness, recorder: Recorder) -> None:
    harness.worker(recorder)
    for seq in range(12):
        for key in ("cal-a", "cal-b", "cal-c"):
            harness.publish(f"{key}:{seq}".encode(), key, {})
    wait_until(lambda: len(recorder.datas()) >= 36, what="36 messages")
    for key in ("cal-a", "cal-b", "cal-c"):
        order = [int(data.split(b":")[1]) for data in recorder.datas() if data.startswith(key.encode())]
        assert order == list(range(12)), f"{key} arrived as {order}"


def test_a_nacked_message_is_delivered_again(harness: Harness, recorder: Recorder) -> None:
    def fail_first_time(message: Message) -> None:
        if message.delivery_attempt in (None, 1) and sum(m.data == message.data for m in recorder.seen) == 1:
            raise TransientError("provider busy")

    recorder.fail = fail_first_time
    harness.worker(recorder)
    harness.publish(b"retry-me", "", {})
    wait_until(lambda: recorder.datas().count(b"retry-me") >= 2, what="a redelivery")
    attempts = [m.delivery_attempt for m in recorder.seen if m.data == b"retry-me"]
    assert attempts[:2] == [1, 2]
    assert harness.dead_letters(1, 1.0) == []


def test_after_the_last_attempt_a_message_is_dead_lettered_with_the_reason(
    harness: Harness, recorder: Recorder
) -> None:
    def always_down(_message: Message) -> None:
        raise TransientError("conferencing API down", status=503)

    recorder.fail = always_down
    harness.worker(recorder)
    harness.publish(b"doomed", "cal-x", {"kind": "ConferenceCommand"})
    (dead,) = harness.dead_letters(1, 60.0)
    assert dead.data == b"doomed"
    assert dead.attributes["kind"] == "ConferenceCommand", "the original attributes travel along"
    assert dead.attributes["dead_letter_reason"] == "conferencing API down"
    assert dead.attributes["dead_letter_error"] == "TransientError"
    assert dead.attributes["dead_letter_attempts"] == str(MAX_ATTEMPTS)
    assert dead.attributes["dead_letter_status"] == "503"
    assert recorder.datas().count(b"doomed") == MAX_ATTEMPTS


def test_a_permanent_error_dead_letters_at_once(harness: Harness, recorder: Recorder) -> None:
    def refuse(_message: Message) -> None:
        raise PermanentError("400 invalid attendee", status=400, body='{"error": "bad"}')

    recorder.fail = refuse
    harness.worker(recorder)
    harness.publish(b"bad-request", "", {})
    (dead,) = harness.dead_letters(1, 30.0)
    assert dead.attributes["dead_letter_reason"] == "400 invalid attendee"
    assert dead.attributes["dead_letter_body"] == '{"error": "bad"}'
    assert recorder.datas() == [b"bad-request"], "handled once, not retried"


def test_poison_messages_never_stop_the_worker(harness: Harness, recorder: Recorder) -> None:
    recorder.fail = lambda message: (CalendarChanged.from_bytes(message.data), None)[1]
    harness.worker(recorder)
    for data in (b"\xff\xfe not json", b'{"v": 99}', b"[]"):
        harness.publish(data, "cal-p", {})
    good = b'{"v":1,"calendar_id":"a@example.com","source":"manual","received_at":"2026-11-24T10:00:00Z"}'
    harness.publish(good, "cal-p", {})
    dead = harness.dead_letters(3, 60.0)
    assert sorted(m.data for m in dead) == sorted([b"\xff\xfe not json", b'{"v": 99}', b"[]"])
    assert all(m.attributes["dead_letter_error"] == "InvalidMessage" for m in dead)
    assert any("unknown schema version" in m.attributes["dead_letter_reason"] for m in dead)
    wait_until(lambda: good in recorder.datas(), what="the good message after the poison")


def test_shutdown_finishes_in_flight_work_and_acks_it(harness: Harness) -> None:
    started, release = threading.Event(), threading.Event()
    finished: list[bytes] = []

    def slow(message: Message) -> None:
        started.set()
        release.wait(20)
        finished.append(message.data)

    worker = harness.start_worker(slow)
    harness.publish(b"in-flight", "", {})
    assert started.wait(30), "the handler started"
    stopped: list[bool] = []
    stopper = threading.Thread(target=lambda: stopped.append(worker.stop(15)))
    stopper.start()
    release.set()
    stopper.join(30)
    assert stopped == [True], "stop waited for the handler and reports a clean stop"
    assert finished == [b"in-flight"]

    # A synchronous pull shows what still waits: the sentinel, and not the finished message.
    harness.publish(b"sentinel", "", {})
    if harness.kind == "pubsub":
        # The emulator keeps feeding a closed stream (confsync/transport/pubsub/unary.py): the sentinel may be held
        # there for minutes. Past the subscription's 10 s ack deadline an unacknowledged
        # in-flight message would be back; the unary and memory runs check the sentinel too.
        waiting = []
        until = time.monotonic() + 12
        while time.monotonic() < until:
            waiting += harness.drain(2.0)
    else:
        waiting = harness.drain(5.0)
        assert b"sentinel" in waiting
    assert b"in-flight" not in waiting, "the finished message was acknowledged, not redelivered"


CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_message_carries_its_publishers_trace_to_the_handler(harness: Harness) -> None:
    """What the handler sends on (its traceparent) is in the trace the message was published in."""
    sent_on: dict[bytes, str] = {}

    def handler(message: Message) -> None:
        sent_on[message.data] = inject()[TRACEPARENT]

    harness.worker(handler)
    with span("webhook", parent={"traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"}):
        harness.publish(b"traced", "cal-t", {"kind": "CalendarChanged"})
    harness.publish(b"untraced-1", "cal-t", {})
    harness.publish(b"untraced-2", "cal-t", {})
    harness.publish(b"malformed", "cal-t", {TRACEPARENT: "00-not-a-trace-01"})
    wait_until(lambda: len(sent_on) == 4, what="four messages handled")
    assert sent_on[b"traced"].split("-")[1] == CALLER_TRACE
    others = {sent_on[data].split("-")[1] for data in (b"untraced-1", b"untraced-2", b"malformed")}
    assert len(others) == 3, "a message without a (valid) trace is handled in a new one of its own"
    assert CALLER_TRACE not in others
    assert harness.dead_letters(1, 0.5) == [], "a malformed traceparent is no reason to refuse a message"


def test_a_dead_letter_keeps_the_trace_of_its_change(harness: Harness, recorder: Recorder) -> None:
    def refuse(_message: Message) -> None:
        raise PermanentError("400 invalid attendee", status=400)

    recorder.fail = refuse
    harness.worker(recorder)
    with span("processor", parent={"traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"}):
        harness.publish(b"refused", "", {})
    (dead,) = harness.dead_letters(1, 30.0)
    (seen,) = recorder.seen
    assert seen.attributes[TRACEPARENT].split("-")[1] == CALLER_TRACE, "the attribute arrives as published"
    assert dead.attributes[TRACEPARENT] == seen.attributes[TRACEPARENT]
