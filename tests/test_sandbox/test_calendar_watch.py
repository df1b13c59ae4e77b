"""Watch channels on the Calendar sandbox: real POSTs with Google's headers reach a real
webhook, in order, retried when they fail, and stop when the channel stops or expires."""

from __future__ import annotations

import email.utils
import threading
import uuid
from typing import Any

import httpx
import pytest
from googleapiclient.errors import HttpError
from tests_support import RunningCalendar, Webhook, event_body

CAL = "alice@example.com"


def open_channel(
    calendar: Any, webhook: Webhook, *, token: str | None = "s3cret", ttl: int | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"id": str(uuid.uuid4()), "type": "web_hook", "address": webhook.url}
    if token:
        body["token"] = token
    if ttl:
        body["params"] = {"ttl": str(ttl)}
    result: dict[str, Any] = calendar.events().watch(calendarId=CAL, body=body).execute()
    return result


def states(received: list[dict[str, str]]) -> list[str]:
    return [item["x-goog-resource-state"] for item in received]


def test_a_channel_says_sync_first_then_exists_for_each_change(calendar: Any, webhook: Webhook) -> None:
    calendar.events().insert(calendarId=CAL, body=event_body("before watch")).execute()
    channel = open_channel(calendar, webhook)
    assert channel["kind"] == "api#channel"
    assert channel["resourceUri"].endswith("/calendar/v3/calendars/alice%40example.com/events?alt=json")
    webhook.wait_for(lambda got: len(got) == 1)
    first = calendar.events().insert(calendarId=CAL, body=event_body("one")).execute()
    calendar.events().patch(calendarId=CAL, eventId=first["id"], body={"summary": "two"}).execute()
    calendar.events().delete(calendarId=CAL, eventId=first["id"]).execute()

    received = webhook.wait_for(lambda got: len(got) == 4)

    assert states(received) == ["sync", "exists", "exists", "exists"]
    assert [int(item["x-goog-message-number"]) for item in received] == [1, 2, 3, 4]
    for item in received:
        assert item["x-goog-channel-id"] == channel["id"]
        assert item["x-goog-channel-token"] == "s3cret"
        assert item["x-goog-resource-id"] == channel["resourceId"]
        assert item["x-goog-resource-uri"] == channel["resourceUri"]
        assert item["_body"] == ""
        expires = email.utils.parsedate_to_datetime(item["x-goog-channel-expiration"])
        assert int(expires.timestamp()) == int(channel["expiration"]) // 1000


def test_a_slow_receiver_never_blocks_a_write(calendar: Any, webhook: Webhook) -> None:
    calendar.events().insert(calendarId=CAL, body=event_body("x")).execute()
    webhook.gate = threading.Event()  # the receiver hangs until the test lets it go
    open_channel(calendar, webhook)
    written = [calendar.events().insert(calendarId=CAL, body=event_body(f"w{i}")).execute() for i in range(5)]
    assert len(written) == 5, "every write returned while the webhook was still stuck on the first message"
    assert webhook.received == []
    webhook.gate.set()
    received = webhook.wait_for(lambda got: len(got) == 6)
    assert [int(item["x-goog-message-number"]) for item in received] == [1, 2, 3, 4, 5, 6]


def test_two_channels_on_one_calendar_share_the_resource_id(calendar: Any, webhook: Webhook) -> None:
    calendar.events().insert(calendarId=CAL, body=event_body("x")).execute()
    first, second = open_channel(calendar, webhook), open_channel(calendar, webhook, token=None)
    assert first["resourceId"] == second["resourceId"]
    received = webhook.wait_for(lambda got: len(got) == 2)
    assert "x-goog-channel-token" not in [
        key for item in received if item["x-goog-channel-id"] == second["id"] for key in item
    ]


def test_a_failed_delivery_is_retried_without_holding_up_the_next(
    calendar_sandbox: RunningCalendar, calendar: Any, webhook: Webhook
) -> None:
    calendar.events().insert(calendarId=CAL, body=event_body("x")).execute()
    open_channel(calendar, webhook)
    webhook.wait_for(lambda got: len(got) == 1)
    webhook.answers = [503, 200, 200]  # message 2's first attempt fails
    calendar.events().insert(calendarId=CAL, body=event_body("y")).execute()
    calendar.events().insert(calendarId=CAL, body=event_body("z")).execute()

    received = webhook.wait_for(lambda got: sum(item["_status"] == "200" for item in got) == 3)

    numbers = [(item["x-goog-message-number"], item["_status"]) for item in received]
    assert numbers[1] == ("2", "503")
    assert ("2", "200") in numbers[2:]
    (channel,) = calendar_sandbox.admin("GET", "/_sandbox/channels")
    delivery = next(d for d in channel["deliveries"] if d["message_number"] == 2)
    assert delivery["delivered"] is True
    assert delivery["attempts"] == 2


def test_a_stopped_channel_gets_nothing_more(calendar: Any, webhook: Webhook) -> None:
    calendar.events().insert(calendarId=CAL, body=event_body("x")).execute()
    channel = open_channel(calendar, webhook)
    webhook.wait_for(lambda got: len(got) == 1)
    calendar.channels().stop(body={"id": channel["id"], "resourceId": channel["resourceId"]}).execute()
    calendar.events().insert(calendarId=CAL, body=event_body("unseen")).execute()
    probe = open_channel(calendar, webhook)  # a second channel proves deliveries still flow
    calendar.events().insert(calendarId=CAL, body=event_body("seen by the probe only")).execute()
    received = webhook.wait_for(
        lambda got: any(i["x-goog-channel-id"] == probe["id"] and i["x-goog-resource-state"] == "exists" for i in got)
    )
    assert [i["x-goog-resource-state"] for i in received if i["x-goog-channel-id"] == channel["id"]] == ["sync"]
    with pytest.raises(HttpError) as caught:
        calendar.channels().stop(body={"id": channel["id"], "resourceId": channel["resourceId"]}).execute()
    assert caught.value.resp.status == 404


def test_a_dropped_channel_looks_live_and_delivers_nothing(
    calendar_sandbox: RunningCalendar, calendar: Any, webhook: Webhook
) -> None:
    calendar.events().insert(calendarId=CAL, body=event_body("x")).execute()
    channel = open_channel(calendar, webhook)
    webhook.wait_for(lambda got: len(got) == 1)
    assert calendar_sandbox.admin("POST", f"/_sandbox/channels/{channel['id']}/drop") == {
        "id": channel["id"],
        "dropped": True,
    }
    calendar.events().insert(calendarId=CAL, body=event_body("unseen")).execute()
    probe = open_channel(calendar, webhook)  # a second channel proves deliveries still flow
    calendar.events().insert(calendarId=CAL, body=event_body("seen by the probe only")).execute()
    received = webhook.wait_for(
        lambda got: any(i["x-goog-channel-id"] == probe["id"] and i["x-goog-resource-state"] == "exists" for i in got)
    )
    assert [i["x-goog-resource-state"] for i in received if i["x-goog-channel-id"] == channel["id"]] == ["sync"]
    (view,) = [v for v in calendar_sandbox.admin("GET", "/_sandbox/channels") if v["id"] == channel["id"]]
    assert (view["state"], view["dropped"], view["lastMessageNumber"]) == ("live", True, 1), "live on paper"
    calendar.channels().stop(body={"id": channel["id"], "resourceId": channel["resourceId"]}).execute()
    with pytest.raises(httpx.HTTPStatusError) as unknown:
        calendar_sandbox.admin("POST", "/_sandbox/channels/no-such-channel/drop")
    assert unknown.value.response.status_code == 404


def test_an_expired_channel_gets_nothing_more(
    calendar_sandbox: RunningCalendar, calendar: Any, webhook: Webhook
) -> None:
    calendar.events().insert(calendarId=CAL, body=event_body("x")).execute()
    short = open_channel(calendar, webhook, ttl=60)
    long = open_channel(calendar, webhook, ttl=3600)
    webhook.wait_for(lambda got: len(got) == 2)
    calendar_sandbox.admin("POST", "/_sandbox/clock", {"advance_s": 120})
    calendar.events().insert(calendarId=CAL, body=event_body("after expiry")).execute()
    received = webhook.wait_for(
        lambda got: any(i["x-goog-channel-id"] == long["id"] and i["x-goog-resource-state"] == "exists" for i in got)
    )
    assert [i["x-goog-resource-state"] for i in received if i["x-goog-channel-id"] == short["id"]] == ["sync"]
    views = {view["id"]: view["state"] for view in calendar_sandbox.admin("GET", "/_sandbox/channels")}
    assert views == {short["id"]: "expired", long["id"]: "live"}


def test_the_ttl_sets_the_expiration(calendar_sandbox: RunningCalendar, calendar: Any, webhook: Webhook) -> None:
    calendar.events().insert(calendarId=CAL, body=event_body("x")).execute()
    before = calendar_sandbox.sandbox.clock.now().timestamp()
    channel = open_channel(calendar, webhook, ttl=3600)
    assert abs(int(channel["expiration"]) / 1000 - (before + 3600)) < 5


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"address": "http://example.com/hook"}, "push.webhookUrlNotHttps"),
        ({"address": "https://example.com/hook"}, "push.webhookUrlNotAllowed"),
        ({"type": "email"}, "invalid"),
        ({"params": {"ttl": "soon"}}, "invalid"),
        ({"id": ""}, "required"),
    ],
)
def test_a_bad_watch_request_is_refused(calendar: Any, webhook: Webhook, change: dict[str, Any], reason: str) -> None:
    calendar.events().insert(calendarId=CAL, body=event_body("x")).execute()
    body = {"id": str(uuid.uuid4()), "type": "web_hook", "address": webhook.url, **change}
    with pytest.raises(HttpError) as caught:
        calendar.events().watch(calendarId=CAL, body=body).execute()
    assert caught.value.resp.status == 400
    assert caught.value.error_details[0]["reason"] == reason


def test_a_channel_id_is_unique(calendar: Any, webhook: Webhook) -> None:
    calendar.events().insert(calendarId=CAL, body=event_body("x")).execute()
    channel = open_channel(calendar, webhook)
    with pytest.raises(HttpError) as caught:
        calendar.events().watch(
            calendarId=CAL, body={"id": channel["id"], "type": "web_hook", "address": webhook.url}
        ).execute()
    assert caught.value.error_details[0]["reason"] == "channelIdNotUnique"


def test_watching_an_unknown_calendar_is_not_found(calendar: Any, webhook: Webhook) -> None:
    with pytest.raises(HttpError) as caught:
        calendar.events().watch(
            calendarId="nobody@example.com", body={"id": "c1", "type": "web_hook", "address": webhook.url}
        ).execute()
    assert caught.value.resp.status == 404


def test_duplicate_delivery_sends_each_notification_twice_with_one_number(
    calendar_sandbox: RunningCalendar, calendar: Any, webhook: Webhook
) -> None:
    calendar.events().insert(calendarId=CAL, body=event_body("before watch")).execute()
    calendar_sandbox.admin("POST", "/_sandbox/notifications", {"duplicates": True})
    open_channel(calendar, webhook)
    webhook.wait_for(lambda got: len(got) == 2)
    calendar.events().insert(calendarId=CAL, body=event_body("one")).execute()

    received = webhook.wait_for(lambda got: len(got) == 4)

    assert [item["x-goog-message-number"] for item in received] == ["1", "1", "2", "2"]
    with pytest.raises(Exception, match="400"):
        calendar_sandbox.admin("POST", "/_sandbox/notifications", {"duplicates": "yes"})
