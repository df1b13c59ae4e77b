"""Watch channels (events.watch, channels.stop) and the notifications every change owes them
(https://developers.google.com/calendar/api/guides/push).

A channel numbers its messages: ``sync`` first, then one ``exists`` per change of its calendar,
until it is stopped or expires. This module decides what to send and keeps the delivery log;
sandbox/calendar/notify.py does the sending.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from sandbox.calendar.errors import GoogleError, bad_request
from sandbox.calendar.event_rules import json_object
from sandbox.calendar.store import ChannelRecord, Store
from sandbox.calendar.tokens import short_hash

__all__ = ["Channels", "Notification"]

MAX_TTL_S = 30 * 24 * 3600
DEFAULT_TTL_S = 7 * 24 * 3600
_LOOPBACK_HOSTS = ("127.", "localhost", "[::1]", "::1")


@dataclass(frozen=True, slots=True)
class Notification:
    """One push message to deliver: everything the webhook POST needs."""

    channel_id: str
    address: str
    token: str | None
    resource_id: str
    resource_uri: str
    expiration_ms: int
    message_number: int
    state: str  # sync | exists


class Channels:
    """The watch channels of a Store; callers hold the store's lock."""

    def __init__(self, store: Store, *, allow_remote_webhooks: bool) -> None:
        self._store = store
        self.allow_remote_webhooks = allow_remote_webhooks

    def watch(
        self, calendar_id: str, body: object, *, base_url: str, principal: str | None = None
    ) -> tuple[dict[str, Any], list[Notification]]:
        """Open a channel; ``principal`` (who opens it) is the only one who may stop it."""
        calendar = self._store.calendar(calendar_id)
        data = json_object(body)
        channel_id, address = data.get("id"), data.get("address")
        if not isinstance(channel_id, str) or not channel_id:
            raise GoogleError(400, "required", "Required", location="id")
        if channel_id in self._store.channels:
            raise GoogleError(400, "channelIdNotUnique", f"Channel id {channel_id} not unique")
        if data.get("type") not in ("web_hook", "webhook"):
            raise bad_request("Invalid value for type: only web_hook is supported.", location="type")
        self._check_address(address)
        token = data.get("token")
        if token is not None and (not isinstance(token, str) or len(token) > 256):
            raise bad_request("Invalid channel token: a string of at most 256 characters.", location="token")
        ttl = _ttl(data.get("params"))
        channel = ChannelRecord(
            id=channel_id,
            calendar_id=calendar.id,
            resource_id=short_hash(f"{self._store.nonce}:{calendar.id}", 20),
            resource_uri=_resource_uri(base_url, calendar.id),
            address=str(address),
            token=token,
            expiration_ms=self._store.now_ms() + ttl * 1000,
            principal=principal,
        )
        self._store.channels[channel_id] = channel
        notifications = [self._next_notification(channel, "sync")]
        answer = {
            "kind": "api#channel",
            "id": channel.id,
            "resourceId": channel.resource_id,
            "resourceUri": channel.resource_uri,
            "expiration": str(channel.expiration_ms),
        }
        if token is not None:
            answer["token"] = token
        return answer, notifications

    def _check_address(self, address: object) -> None:
        if not isinstance(address, str) or not address:
            raise GoogleError(400, "required", "Required", location="address")
        parts = urlsplit(address)
        host = parts.hostname or ""
        loopback = host.startswith(_LOOPBACK_HOSTS) or host == "::1"
        if parts.scheme == "http" and not loopback:
            raise GoogleError(400, "push.webhookUrlNotHttps", f"WebHook callback must be HTTPS: {address}")
        if parts.scheme not in ("http", "https") or not host:
            raise bad_request(f"Invalid webhook address: {address}", location="address")
        if not loopback and not self.allow_remote_webhooks:
            raise GoogleError(
                400,
                "push.webhookUrlNotAllowed",
                "This sandbox delivers only to loopback addresses (127.0.0.0/8, localhost, [::1]).",
            )

    def stop(
        self, body: object, principal: str | None = None, *, may_stop_unowned: Callable[[str], bool] = lambda _: True
    ) -> None:
        """Stop a channel: 404 unless ``principal`` opened it (None: auth is off, anyone may). A
        channel that names no principal (opened without auth) may be stopped by any principal
        ``may_stop_unowned`` allows for its calendar."""
        data = json_object(body)
        channel = self._store.channels.get(str(data.get("id")))
        if channel is None or data.get("resourceId") != channel.resource_id or channel.state == "stopped":
            raise _channel_not_found(data.get("id"))
        owned_by_another = channel.principal is not None or not may_stop_unowned(channel.calendar_id)
        if principal is not None and principal != channel.principal and owned_by_another:
            raise _channel_not_found(data.get("id"))
        channel.state = "stopped"
        self._store.save_channel(channel)

    def drop(self, channel_id: str) -> bool:
        """Google stops delivering on a channel that still looks live (to watch and stop alike):
        it sends nothing from now on. False if there is no such channel."""
        channel = self._store.channels.get(channel_id)
        if channel is None:
            return False
        channel.dropped = True
        return True

    def is_deliverable(self, channel_id: str) -> bool:
        channel = self._store.channels.get(channel_id)
        return channel is not None and channel.state == "live" and not self._expired(channel)

    def record_delivery(self, channel_id: str, message_number: int, outcome: dict[str, Any]) -> None:
        channel = self._store.channels.get(channel_id)
        if channel is None:
            return
        for delivery in channel.deliveries:
            if delivery["message_number"] == message_number:
                delivery.update(outcome)
                return

    def describe(self) -> list[dict[str, Any]]:
        """Every channel with its state and delivery log (``GET /_sandbox/channels``)."""
        return [
            {
                "id": channel.id,
                "calendarId": channel.calendar_id,
                "resourceId": channel.resource_id,
                "address": channel.address,
                "expiration": str(channel.expiration_ms),
                "state": "expired" if channel.state == "live" and self._expired(channel) else channel.state,
                "principal": channel.principal,
                "lastMessageNumber": channel.next_number - 1,
                "dropped": channel.dropped,
                "deliveries": [dict(delivery) for delivery in channel.deliveries],
            }
            for channel in self._store.channels.values()
        ]

    def notify(self, calendar_id: str, state: str) -> list[Notification]:
        """The next message of every live channel on the calendar."""
        return [
            self._next_notification(channel, state)
            for channel in self._store.channels.values()
            if channel.calendar_id == calendar_id
            and channel.state == "live"
            and not channel.dropped
            and not self._expired(channel)
        ]

    def _expired(self, channel: ChannelRecord) -> bool:
        return channel.expiration_ms <= self._store.now_ms()

    def _next_notification(self, channel: ChannelRecord, state: str) -> Notification:
        number = channel.next_number
        channel.next_number += 1
        channel.deliveries.append(
            {"message_number": number, "state": state, "status": None, "attempts": 0, "delivered": False, "error": None}
        )
        self._store.save_channel(channel)
        return Notification(
            channel.id,
            channel.address,
            channel.token,
            channel.resource_id,
            channel.resource_uri,
            channel.expiration_ms,
            number,
            state,
        )


def _channel_not_found(channel_id: object) -> GoogleError:
    return GoogleError(404, "notFound", f"Channel '{str(channel_id)[:256]}' not found for project 'sandbox'")


def _ttl(params: object) -> int:
    if params is None:
        return DEFAULT_TTL_S
    if not isinstance(params, dict):
        raise bad_request("Invalid channel params.", location="params")
    raw = params.get("ttl")
    if raw is None:
        return DEFAULT_TTL_S
    if not str(raw).isdigit() or int(raw) < 1:
        raise bad_request(f"Invalid ttl value: {raw}", location="params.ttl")
    return min(int(raw), MAX_TTL_S)


def _resource_uri(base_url: str, calendar_id: str) -> str:
    return f"{base_url.rstrip('/')}/calendar/v3/calendars/{quote(calendar_id, safe='')}/events?alt=json"
