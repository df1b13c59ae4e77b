"""The publisher's parts built from Settings: the command applier (its retry policy and
breaker chosen for the delivery) and its push route (``POST /pubsub/<conference-commands
topic>``, OIDC-verified unless local mode). ``stack/services.py`` serves them, or runs the
applier as a pull worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from starlette.routing import Route

from confsync.ports import ConferenceProvider, Publisher, Store
from confsync.retention import Retention
from confsync.settings import Settings
from confsync.transport.base import DeadLetter
from confsync.transport.push import push_route, push_verifier
from publishers.apply import CommandApplier
from publishers.breaker import CircuitBreaker
from publishers.retry import retry_policy

__all__ = ["build_applier", "publisher_push_route"]


_PUSH_SHARE = 0.5  # of the ack deadline, for retries: the last call and the answer need the rest


def build_applier(
    settings: Settings,
    store: Store,
    provider: ConferenceProvider,
    *,
    as_owner: Callable[[str], ConferenceProvider] | None = None,
) -> CommandApplier:
    """The applier for ``settings.delivery``. A pull worker waits out an open breaker while its
    lease is extended; a push request cannot outlive its ack deadline (Pub/Sub would deliver it
    again meanwhile), so it retries within a share of it and then answers 503, and the
    subscription's retry policy does the backing off."""
    cooldown_s = settings.breaker_cooldown_s
    push = settings.delivery == "push"
    hold_s = 0.0 if push else 2 * cooldown_s
    breaker = CircuitBreaker(threshold=settings.breaker_threshold, cooldown_s=cooldown_s, hold_s=hold_s)
    budget_s = settings.pubsub_ack_deadline_s * _PUSH_SHARE if push else None
    return CommandApplier(
        store,
        provider,
        retry_policy(settings, sleep=time.sleep, budget_s=budget_s),
        breaker,
        max_attempts=settings.pubsub_max_delivery_attempts,
        as_owner=as_owner,
        retention=Retention(timedelta(days=settings.retain_days)),
    )


def publisher_push_route(applier: CommandApplier, settings: Settings, dead_letters: Publisher) -> Route:
    """``POST /pubsub/<conference-commands topic>``: one ConferenceCommand per push request."""
    return push_route(
        f"/pubsub/{settings.topic_conference_commands}",
        applier,
        verifier=push_verifier(settings),
        dead_letter=DeadLetter(dead_letters, settings.topic_conference_commands_dead, "push:conference-commands"),
        max_attempts=settings.pubsub_max_delivery_attempts,
    )
