"""Pub/Sub's unary RPCs on the hot paths (Publish, Pull, Acknowledge, ModifyAckDeadline), called
on google-cloud-pubsub's own gRPC transport without its generated client's per-call layer.

The generated client rebuilds its retry and timeout decorators, opens a tracing span and
converts proto-plus messages on every call: about half of a Publish's client CPU
(bench/README.md). Here the decorators are built once per RPC and subscription or topic, and
requests are built as raw protobufs. What stays the library's: the channel (emulator host,
credentials), the stubs, the ``x-goog-api-client`` identity and the routing header the generated
client sends, and google.api_core's error mapping and ``Retry``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from google.api_core import grpc_helpers
from google.api_core.gapic_v1 import routing_header
from google.api_core.retry import Retry
from google.pubsub_v1.services.publisher.transports.base import DEFAULT_CLIENT_INFO
from google.pubsub_v1.types import (
    AcknowledgeRequest,
    ModifyAckDeadlineRequest,
    PublishRequest,
    PubsubMessage,
    PullRequest,
)

__all__ = ["Rpc", "acknowledge_request", "modify_request", "publish_request", "pull_request"]

_CLIENT_INFO = DEFAULT_CLIENT_INFO.to_grpc_metadata()  # type: ignore[no-untyped-call]  # one for both services
_MessagePb = PubsubMessage.pb()
_PublishPb = PublishRequest.pb()
_PullPb = PullRequest.pb()
_AcknowledgePb = AcknowledgeRequest.pb()
_ModifyPb = ModifyAckDeadlineRequest.pb()


class Rpc:
    """One of a transport's stubs, for one resource: ``rpc(request, timeout=...)`` sends it with
    the generated client's metadata, google.api_core's exceptions, and ``retry``."""

    def __init__(self, stub: Any, *, field: str, resource: str, retry: Retry) -> None:
        self._metadata = (_CLIENT_INFO, routing_header.to_grpc_metadata(((field, resource),)))  # type: ignore[no-untyped-call]
        self._call: Callable[..., Any] = retry(grpc_helpers.wrap_errors(stub))  # type: ignore[no-untyped-call]

    def __call__(self, request: Any, *, timeout: float) -> Any:
        return self._call(request, timeout=timeout, metadata=self._metadata)


def publish_request(topic: str, messages: list[tuple[bytes, str, Mapping[str, str]]]) -> Any:
    """A Publish request of (data, ordering key, attributes) messages."""
    batch = [_MessagePb(data=data, ordering_key=key, attributes=attributes) for data, key, attributes in messages]
    return PublishRequest.wrap(_PublishPb(topic=topic, messages=batch))


def pull_request(subscription: str, max_messages: int) -> Any:
    return PullRequest.wrap(_PullPb(subscription=subscription, max_messages=max_messages))


def acknowledge_request(subscription: str, ack_ids: list[str]) -> Any:
    return AcknowledgeRequest.wrap(_AcknowledgePb(subscription=subscription, ack_ids=ack_ids))


def modify_request(subscription: str, ack_ids: list[str], deadline_s: int) -> Any:
    return ModifyAckDeadlineRequest.wrap(
        _ModifyPb(subscription=subscription, ack_ids=ack_ids, ack_deadline_seconds=deadline_s)
    )
