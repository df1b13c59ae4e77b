"""The processor service, served either way Pub/Sub delivers:

- push: an ASGI app with ``POST /pubsub/calendar-changes`` (OIDC-verified unless local mode)
  and ``GET /healthz``, for Cloud Run behind a push subscription;
- pull: ``run_pull`` streams from the calendar-changes subscription until SIGTERM, then drains.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from confsync.ports import Publisher
from confsync.settings import Settings
from confsync.transport.base import DeadLetter
from confsync.transport.push import push_route, push_verifier
from processors.worker import CalendarWorker

__all__ = ["create_processor_app", "processor_push_route"]


def create_processor_app(worker: CalendarWorker, settings: Settings, dead_letters: Publisher) -> Starlette:
    async def healthz(_request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(routes=[processor_push_route(worker, settings, dead_letters), Route("/healthz", healthz)])


def processor_push_route(worker: CalendarWorker, settings: Settings, dead_letters: Publisher) -> Route:
    """``POST /pubsub/<calendar-changes topic>``: one CalendarChanged per push request."""
    return push_route(
        f"/pubsub/{settings.topic_calendar_changes}",
        worker,
        verifier=push_verifier(settings),
        dead_letter=DeadLetter(dead_letters, settings.topic_calendar_changes_dead, "push:calendar-changes"),
        max_attempts=settings.pubsub_max_delivery_attempts,
        project_id=settings.project_id,
    )
