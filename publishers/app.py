"""The publisher service: ConferenceCommand -> conferencing API, served the way Pub/Sub
delivers: push (``POST /pubsub/conference-commands``, OIDC-verified unless local mode, and
``GET /healthz``) or streaming pull (``confsync serve publisher``)."""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from confsync.ports import ConferenceProvider, Publisher, Store
from confsync.settings import Settings
from confsync.transport.base import DeadLetter
from confsync.transport.push import push_route, push_verifier
from publishers.apply import CommandApplier
from publishers.breaker import CircuitBreaker
from publishers.retry import retry_policy

__all__ = ["build_applier", "create_publisher_app", "publisher_push_route"]


_PUSH_SHARE = 0.5  # of the ack deadline, for retries: the last call and the answer need the rest


def build_applier(settings: Settings, store: Store, provider: ConferenceProvider) -> CommandApplier:
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
    )


def create_publisher_app(applier: CommandApplier, settings: Settings, dead_letters: Publisher) -> Starlette:
    async def healthz(_request: Request) -> Response:
        return JSONResponse({"ok": True, "breaker": applier.breaker.state})

    return Starlette(routes=[publisher_push_route(applier, settings, dead_letters), Route("/healthz", healthz)])


def publisher_push_route(applier: CommandApplier, settings: Settings, dead_letters: Publisher) -> Route:
    """``POST /pubsub/<conference-commands topic>``: one ConferenceCommand per push request."""
    return push_route(
        f"/pubsub/{settings.topic_conference_commands}",
        applier,
        verifier=push_verifier(settings),
        dead_letter=DeadLetter(dead_letters, settings.topic_conference_commands_dead, "push:conference-commands"),
        max_attempts=settings.pubsub_max_delivery_attempts,
        project_id=settings.project_id,
    )
