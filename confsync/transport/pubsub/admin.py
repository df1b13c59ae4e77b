"""Pub/Sub administration (google-cloud-pubsub's admin side): create the topology's topics and
subscriptions.

``bootstrap`` creates what ``confsync.transport.topology`` describes if it is missing and
reports what it created or found; running it twice changes nothing. ``confsync pubsub
bootstrap`` runs it; infra/terraform creates the same topology from ``topology.terraform_vars``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as google_exceptions
from google.api_core.retry import Retry
from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # the package ships no stub for this re-export
from google.protobuf import duration_pb2
from google.pubsub_v1.types import DeadLetterPolicy, ExpirationPolicy, RetryPolicy

from confsync.settings import Settings
from confsync.transport.topology import SubscriptionSpec, Topology

__all__ = ["BootstrapReport", "bootstrap"]


@dataclass(frozen=True, slots=True)
class BootstrapReport:
    created: tuple[str, ...]
    found: tuple[str, ...]


def bootstrap(settings: Settings, topology: Topology, *, push_endpoint: str | None = None) -> BootstrapReport:
    """Create every topic and subscription of ``topology`` that is missing; never change one.

    With ``push_endpoint`` the worker subscriptions push to ``{push_endpoint}/pubsub/{topic}``
    (OIDC-authenticated when ``push_service_account`` is set) instead of waiting to be pulled.
    """
    retry = Retry(timeout=settings.pubsub_timeout_s)
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    created: list[str] = []
    found: list[str] = []
    try:
        for topic in topology.topics:
            path = publisher.topic_path(settings.project_id, topic)
            try:
                publisher.create_topic(name=path, retry=retry, timeout=settings.pubsub_timeout_s)
                created.append(f"topic {topic}")
            except google_exceptions.AlreadyExists:
                found.append(f"topic {topic}")
        for spec in topology.subscriptions:
            request = _subscription_request(settings, spec, publisher, subscriber, push_endpoint)
            try:
                subscriber.create_subscription(request=request, retry=retry, timeout=settings.pubsub_timeout_s)
                created.append(f"subscription {spec.name}")
            except google_exceptions.AlreadyExists:
                found.append(f"subscription {spec.name}")
    finally:
        subscriber.close()
        publisher.transport.close()
    return BootstrapReport(tuple(created), tuple(found))


def _subscription_request(
    settings: Settings,
    spec: SubscriptionSpec,
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    push_endpoint: str | None,
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "name": subscriber.subscription_path(settings.project_id, spec.name),
        "topic": publisher.topic_path(settings.project_id, spec.topic),
        "ack_deadline_seconds": spec.ack_deadline_s,
        "enable_message_ordering": spec.ordered,
        "message_retention_duration": duration_pb2.Duration(seconds=spec.retention_s),
        "expiration_policy": ExpirationPolicy(),  # no ttl: never expires (topology.SubscriptionSpec)
    }
    if spec.min_backoff_s is not None and spec.max_backoff_s is not None:
        request["retry_policy"] = RetryPolicy(
            minimum_backoff=duration_pb2.Duration(seconds=spec.min_backoff_s),
            maximum_backoff=duration_pb2.Duration(seconds=spec.max_backoff_s),
        )
    if spec.dead_letter_topic is not None:
        request["dead_letter_policy"] = DeadLetterPolicy(
            dead_letter_topic=publisher.topic_path(settings.project_id, spec.dead_letter_topic),
            max_delivery_attempts=spec.max_delivery_attempts,
        )
        if push_endpoint:
            push: dict[str, Any] = {"push_endpoint": f"{push_endpoint.rstrip('/')}/pubsub/{spec.topic}"}
            if settings.push_service_account:
                push["oidc_token"] = {
                    "service_account_email": settings.push_service_account,
                    "audience": settings.push_audience or push_endpoint,
                }
            request["push_config"] = push
    return request
