"""The Calendar sandbox's HTTP surface: Google Calendar API v3 under ``/calendar/v3/``.

google-api-python-client works against it unchanged::

    build("calendar", "v3", credentials=AnonymousCredentials(), static_discovery=True,
          client_options={"api_endpoint": "http://127.0.0.1:PORT/calendar/v3/"})

``create_app`` composes the routes of each resource (sandbox/calendar/routes/: events,
channels, ACLs and the calendar list, and admin and fault injection under ``/_sandbox/``)
with Google's batch endpoint ``POST /batch/calendar/v3`` (sandbox/calendar/batch.py), and
runs the notifier that delivers push notifications while the app is up. How each request is
served (auth, faults, journal, logging) is sandbox/calendar/serving.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from sandbox.calendar.batch import batch_route_handler
from sandbox.calendar.notify import Notifier
from sandbox.calendar.routes import admin_routes, channel_routes, event_routes, sharing_routes
from sandbox.calendar.routes.identity import identity_routes
from sandbox.calendar.serving import CalendarSandbox, http_error

__all__ = ["CalendarSandbox", "create_app"]


def create_app(sandbox: CalendarSandbox) -> Starlette:
    notifier = Notifier(sandbox.model, sandbox.retry)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await notifier.start()
        try:
            yield
        finally:
            await notifier.stop()

    routes = [
        *channel_routes(sandbox, notifier),  # before events: events/watch is not an event id
        *event_routes(sandbox, notifier),
        *sharing_routes(sandbox),
        *admin_routes(sandbox, notifier),
        *identity_routes(sandbox.identity),
        Route("/batch/calendar/v3", batch_route_handler(lambda: app), methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    return app
