"""The processor's push route, ``POST /pubsub/calendar-changes`` (OIDC-verified unless local
mode), which ``confsync serve processor --push`` mounts; pulled, the worker is a transport's
handler instead (stack/services.py)."""

from __future__ import annotations

from starlette.routing import Route

from confsync.ports import Publisher
from confsync.settings import Settings
from confsync.transport.base import DeadLetter
from confsync.transport.push import push_route, push_verifier
from processors.worker import CalendarWorker

__all__ = ["processor_push_route"]


def processor_push_route(worker: CalendarWorker, settings: Settings, dead_letters: Publisher) -> Route:
    """``POST /pubsub/<calendar-changes topic>``: one CalendarChanged per push request."""
    return push_route(
        f"/pubsub/{settings.topic_calendar_changes}",
        worker,
        verifier=push_verifier(settings),
        dead_letter=DeadLetter(dead_letters, settings.topic_calendar_changes_dead, "push:calendar-changes"),
        max_attempts=settings.pubsub_max_delivery_attempts,
    )
