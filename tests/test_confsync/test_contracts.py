"""The wire contracts: what one stage writes, the next reads back exactly; anything else is
an InvalidMessage that names the field, never a crash."""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests_support import meeting

from confsync.contracts import (
    MAX_MESSAGE_BYTES,
    CalendarChanged,
    ChannelScan,
    ChannelSweep,
    ChannelWork,
    CommandKind,
    CommandReason,
    ConferenceCommand,
    ConferencePayload,
    EventTime,
    ResourceState,
    Source,
    make_command_id,
    read_channel_message,
)
from confsync.errors import InvalidMessage, PermanentError

WHEN = datetime(2026, 11, 24, 18, 9, 47, 123000, tzinfo=UTC)


def payload(**changes: Any) -> ConferencePayload:
    values = meeting(
        "Weekly sync",
        recurrence=("RRULE:FREQ=WEEKLY;BYDAY=TU",),
        html_link="https://www.google.com/calendar/event?eid=abc",
    )
    return ConferencePayload(**{**values, **changes})


def command_for(kind: CommandKind, reason: CommandReason, **changes: Any) -> ConferenceCommand:
    """A command for conf-1, the conference of evt1 on alice's calendar, at WHEN."""
    values = {"conference_id": "conf-1", "calendar_id": "alice@example.com", "event_id": "evt1", "event_updated": WHEN}
    return ConferenceCommand.create(kind=kind, reason=reason, **{**values, **changes})


def update_command(**changes: Any) -> ConferenceCommand:
    return command_for(CommandKind.UPDATE, CommandReason.CHANGED, **{"payload": payload(), **changes})


def push_notification() -> CalendarChanged:
    return CalendarChanged(
        calendar_id="alice@example.com",
        source=Source.PUSH,
        received_at=WHEN,
        channel_id="9f3c",
        resource_state=ResourceState.EXISTS,
        message_number=42,
    )


# -- round trips --------------------------------------------------------------------------------


def test_a_push_notification_round_trips() -> None:
    message = push_notification()
    assert CalendarChanged.from_bytes(message.to_bytes()) == message


def test_a_backfill_request_needs_no_channel() -> None:
    message = CalendarChanged(calendar_id="team@group.calendar.google.com", source=Source.BACKFILL, received_at=WHEN)
    assert CalendarChanged.from_bytes(message.to_bytes()) == message


def test_a_backfill_jobs_request_round_trips_and_other_messages_carry_no_job_keys() -> None:
    cal = "team@group.calendar.google.com"
    request = CalendarChanged(cal, Source.BACKFILL, WHEN, job_id="bf-20261207-0800-ab12", window_days=30)
    assert CalendarChanged.from_bytes(request.to_bytes()) == request
    assert "job_id" not in json.loads(push_notification().to_bytes()), "read as before by an older processor"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"job_id": "bf\n1"}, "job_id"),
        ({"job_id": "x" * 65}, "job_id"),
        ({"job_id": "bf-1", "window_days": 0}, "window_days"),
        ({"job_id": "bf-1", "window_days": 2**40}, "window_days"),
        ({"window_days": 30}, "window_days"),
        ({"job_id": "bf-1", "source": "push", "channel_id": "c", "resource_state": "exists"}, "job_id"),
    ],
)
def test_a_malformed_backfill_request_is_refused_by_field(fields: dict[str, object], named: str) -> None:
    wire = json.loads(CalendarChanged("a@example.com", Source.BACKFILL, WHEN).to_bytes()) | fields
    with pytest.raises(InvalidMessage) as refused:
        CalendarChanged.from_bytes(json.dumps(wire).encode())
    assert refused.value.field == named


def test_folded_notifications_carry_their_count_and_a_single_one_reads_as_before() -> None:
    folded = replace(push_notification(), notifications=7)
    assert CalendarChanged.from_bytes(folded.to_bytes()) == folded
    assert "notifications" not in json.loads(push_notification().to_bytes()), "read as before by an older processor"
    assert CalendarChanged.from_bytes(push_notification().to_bytes()).notifications == 1


@pytest.mark.parametrize(
    ("source", "count"),
    [("push", 0), ("push", -1), ("push", "3"), ("backfill", 2)],
)
def test_a_folded_count_is_at_least_one_and_only_for_push_notifications(source: str, count: object) -> None:
    wire = json.loads(push_notification().to_bytes()) | {"source": source, "notifications": count}
    with pytest.raises(InvalidMessage) as refused:
        CalendarChanged.from_bytes(json.dumps(wire).encode())
    assert (refused.value.field or "").endswith("notifications")


def test_an_update_round_trips_with_its_payload() -> None:
    command = update_command()
    assert ConferenceCommand.from_bytes(command.to_bytes()) == command


def test_all_day_times_and_time_zones_are_carried_through_unchanged() -> None:
    all_day = payload(start=EventTime(date="2026-12-24"), end=EventTime(date="2026-12-25"))
    command = update_command(payload=all_day)
    wire = json.loads(command.to_bytes())
    assert wire["payload"]["start"] == {"date": "2026-12-24"}
    zoned = update_command()
    assert json.loads(zoned.to_bytes())["payload"]["start"] == {
        "dateTime": "2026-12-01T10:00:00+01:00",
        "timeZone": "Europe/Warsaw",
    }


def test_the_event_version_keeps_googles_millisecond_format() -> None:
    wire = json.loads(update_command().to_bytes())
    assert wire["event_updated"] == "2026-11-24T18:09:47.123Z"


def test_a_delete_without_payload_round_trips() -> None:
    delete = command_for(CommandKind.DELETE, CommandReason.CANCELLED, fingerprint="last-known-fingerprint")
    assert ConferenceCommand.from_bytes(delete.to_bytes()) == delete


# -- the command id is the idempotency key ------------------------------------------------------


def test_the_same_decision_replayed_after_a_crash_has_the_same_command_id() -> None:
    assert update_command().command_id == update_command().command_id
    assert update_command().to_bytes() == update_command().to_bytes()


def test_a_different_payload_or_kind_or_conference_gets_a_different_command_id() -> None:
    base = update_command().command_id
    assert update_command(payload=payload(summary="Renamed")).command_id != base
    assert update_command(conference_id="conf-2").command_id != base
    fingerprint = payload().fingerprint()
    assert make_command_id("conf-1", CommandKind.DELETE, WHEN, fingerprint) != base


def test_a_reverted_change_gets_a_new_command_id_so_the_provider_applies_it_again() -> None:
    """10:00 -> 15:00 -> 10:00 -> 15:00: the second 15:00 has the first one's fingerprint, and
    reusing its Idempotency-Key would make the provider replay its first answer and keep 10:00."""
    first = update_command(event_updated=WHEN)
    again = update_command(event_updated=WHEN + timedelta(minutes=3))
    assert again.fingerprint == first.fingerprint
    assert again.command_id != first.command_id


def test_a_command_published_before_the_version_joined_its_id_is_still_read() -> None:
    """Commands in outboxes and topics at a deploy keep the id they were sent with."""
    data = _command_dict()
    data["command_id"] = hashlib.sha256(
        json.dumps(["conf-1", "update", payload().fingerprint()], separators=(",", ":")).encode()
    ).hexdigest()[:32]
    command = ConferenceCommand.from_bytes(json.dumps(data).encode())
    assert command.command_id == data["command_id"]
    data["command_id"] = "0" * 32
    with pytest.raises(InvalidMessage, match="command_id"):
        ConferenceCommand.from_bytes(json.dumps(data).encode())


def test_the_fingerprint_ignores_the_version_but_not_the_content() -> None:
    assert update_command(event_updated=datetime(2027, 1, 1, tzinfo=UTC)).fingerprint == update_command().fingerprint
    assert payload(attendees=("alice@example.com",)).fingerprint() != payload().fingerprint()


def test_an_update_without_payload_is_refused_at_construction() -> None:
    with pytest.raises(InvalidMessage, match="payload"):
        command_for(CommandKind.UPDATE, CommandReason.CHANGED, fingerprint="x")


# -- bad input names the field ------------------------------------------------------------------


def _command_dict() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(update_command().to_bytes())
    return result


def _with(path: str, value: object) -> bytes:
    data = _command_dict()
    target = data
    *parents, last = path.split(".")
    for key in parents:
        target = target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return json.dumps(data).encode()


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("v", 2, "v"),
        ("v", "1", "v"),
        ("v", _DELETE, "v"),
        ("kind", "create", "ConferenceCommand.kind"),
        ("reason", None, "ConferenceCommand.reason"),
        ("conference_id", "", "ConferenceCommand.conference_id"),
        ("conference_id", 17, "ConferenceCommand.conference_id"),
        ("calendar_id", _DELETE, "ConferenceCommand.calendar_id"),
        ("event_updated", "yesterday", "ConferenceCommand.event_updated"),
        ("event_updated", "2026-11-24T18:09:47", "ConferenceCommand.event_updated"),
        ("command_id", "0" * 32, "command_id"),
        ("fingerprint", "tampered", "fingerprint"),
        ("extra", 1, "unknown field(s) extra"),
        ("payload.start", {"dateTime": "2026-12-01T10:00:00"}, "payload.start"),
        ("payload.start", {"date": "2026-12-01", "dateTime": "2026-12-01T10:00:00Z"}, "payload.start"),
        ("payload.end", {"date": "12/25/2026"}, "payload.end"),
        ("payload.attendees", "alice@example.com", "payload.attendees"),
        ("payload.attendees", ["ok@example.com", 5], "payload.attendees[1]"),
        ("payload.summary", "bell\x07", "payload.summary"),
        ("payload.organizer", "unit\x1fseparator@example.com", "payload.organizer"),
        ("payload.colour", "red", "unknown field(s) colour"),
    ],
)
def test_a_malformed_command_is_refused_with_the_field_named(path: str, value: object, named: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        ConferenceCommand.from_bytes(_with(path, value))
    assert named in str(caught.value)


def test_tabs_newlines_and_any_language_in_a_title_are_kept() -> None:
    summary = "Przegląd kwartału\n\tagenda: zażółć gęślą jaźń\r\n"
    command = ConferenceCommand.from_bytes(update_command(payload=payload(summary=summary)).to_bytes())
    assert command.payload is not None
    assert command.payload.summary == summary


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not UTF-8 JSON"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"v": NaN}', "NaN is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not UTF-8 JSON"),
        (b" " * (MAX_MESSAGE_BYTES + 1), "more than"),
    ],
)
def test_garbage_is_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        CalendarChanged.from_bytes(data)


def test_a_push_notification_without_its_channel_is_refused() -> None:
    raw = json.loads(push_notification().to_bytes())
    del raw["channel_id"]
    with pytest.raises(InvalidMessage, match="channel_id"):
        CalendarChanged.from_bytes(json.dumps(raw).encode())


def test_a_negative_or_boolean_message_number_is_refused() -> None:
    for bad in (-1, True, 1.5, 2**64):
        raw = json.loads(push_notification().to_bytes())
        raw["message_number"] = bad
        with pytest.raises(InvalidMessage, match="message_number"):
            CalendarChanged.from_bytes(json.dumps(raw).encode())


@pytest.mark.parametrize(
    "message",
    [
        ChannelWork("alice@example.com", ChannelSweep.RENEW, WHEN),
        ChannelWork("c_1@group.calendar.google.com", ChannelSweep.WATCH, WHEN),
        ChannelScan(ChannelSweep.RENEW, WHEN + timedelta(days=1), WHEN),
        ChannelScan(ChannelSweep.RENEW, WHEN, WHEN, after_id="9f3c", after_expiration=WHEN - timedelta(hours=1)),
        ChannelScan(ChannelSweep.WATCH, WHEN, WHEN, after_id="alice@example.com"),
    ],
)
def test_channel_work_and_pages_round_trip(message: ChannelWork | ChannelScan) -> None:
    assert read_channel_message(message.to_bytes()) == message


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"type": "listing"}, "type"),
        ({"after_expiration": None}, "after"),  # a renew cursor with its id but not its expiration
        ({"sweep": "all"}, "sweep"),
        ({"started_at": "yesterday"}, "started_at"),
        ({"calendar_id": "alice@example.com"}, "calendar_id"),  # a page names no calendar
    ],
)
def test_a_malformed_channel_page_is_refused_with_the_field_named(change: dict[str, object], named: str) -> None:
    raw = json.loads(ChannelScan(ChannelSweep.RENEW, WHEN, WHEN, after_id="9f3c", after_expiration=WHEN).to_bytes())
    with pytest.raises(InvalidMessage, match=named):
        read_channel_message(json.dumps({**raw, **change}).encode())


def test_invalid_messages_are_permanent_errors_so_workers_dead_letter_them() -> None:
    assert issubclass(InvalidMessage, PermanentError)


# -- property-based: nothing but InvalidMessage ever escapes ------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.binary(max_size=512))
def test_random_bytes_are_refused_or_read_never_crash(data: bytes) -> None:
    for reader in (CalendarChanged.from_bytes, ConferenceCommand.from_bytes, read_channel_message):
        with contextlib.suppress(InvalidMessage):
            reader(data)


@settings(max_examples=300)
@given(json_values)
def test_random_json_is_refused_with_invalid_message(value: object) -> None:
    data = json.dumps(value).encode()
    for reader in (CalendarChanged.from_bytes, ConferenceCommand.from_bytes, read_channel_message):
        with pytest.raises(InvalidMessage):
            reader(data)


_FIELDS = [*sorted(_command_dict()), "payload.summary", "payload.start", "payload.attendees", "payload.end"]


@settings(max_examples=400)
@given(st.sampled_from(_FIELDS), json_values)
def test_one_corrupted_field_is_either_harmless_or_refused(path: str, value: object) -> None:
    """A valid command with one field replaced by random JSON: read back intact or refused."""
    try:
        command = ConferenceCommand.from_bytes(_with(path, value))
    except InvalidMessage:
        return
    assert ConferenceCommand.from_bytes(command.to_bytes()) == command


@settings(max_examples=200)
@given(
    summary=st.none() | st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"))),
    attendees=st.lists(st.emails(), max_size=5).map(tuple),
    conference_id=st.text(min_size=1, max_size=40, alphabet=st.characters(blacklist_categories=("Cc", "Cs"))),
    when=st.datetimes(timezones=st.just(UTC)),
)
def test_any_valid_command_round_trips(
    summary: str | None, attendees: tuple[str, ...], conference_id: str, when: datetime
) -> None:
    command = update_command(
        payload=payload(summary=summary, attendees=attendees), conference_id=conference_id, event_updated=when
    )
    assert ConferenceCommand.from_bytes(command.to_bytes()) == command


_time_texts = (
    st.sampled_from(
        [
            "2026-12-01T09:00:00Z",
            "2026-12-01T09:00:00+01:00",
            "2026-12-01T09:00:00",
            "2026-12-01",
            "2026-12-1",
            "Europe/Warsaw",
            "",
            "2026-12-01T09:00:00Z\x00",
            "2026-12-01\t",
            "Europe/Zürich",
            "\ud800",
            "x" * 1025,
        ]
    )
    | st.text(max_size=30)
    | st.none()
    | st.integers()
)


@settings(max_examples=400)
@given(
    st.dictionaries(st.sampled_from(["dateTime", "date", "timeZone", "other"]), _time_texts, max_size=4) | json_values
)
def test_an_event_time_is_read_exactly_as_its_field_by_field_checks_read_it(value: object) -> None:
    """The shortcut for Calendar's usual start/end shape accepts and refuses what the checks do."""

    def outcome(read: Any) -> object:
        try:
            return read(value, "start")
        except InvalidMessage as err:
            return (str(err), err.field)

    assert outcome(EventTime.from_json) == outcome(EventTime._field_by_field)
