"""Watch channels over HTTP: events.watch and channels.stop
(https://developers.google.com/calendar/api/guides/push).

With auth on, a channel records the principal that opened it, and channels.stop from any other
principal is Google's 404 ``notFound`` (as if the channel were another project's)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.calendar.access import EVENTS_READ
from sandbox.calendar.notify import Notifier
from sandbox.calendar.serving import CalendarSandbox, api, calendar_for, json_answer, read_body
from sandbox.identity import Principal

__all__ = ["channel_routes"]


def channel_routes(sandbox: CalendarSandbox, notifier: Notifier) -> list[Route]:
    model = sandbox.model

    async def watch(request: Request, principal: Principal | None) -> Response:
        calendar_id = calendar_for(sandbox, request, principal, EVENTS_READ)
        base = str(request.base_url)
        channel, notifications = model.watch(calendar_id, await read_body(request), base_url=base, principal=principal)
        notifier.enqueue(notifications)
        return json_answer(channel)

    async def stop(request: Request, principal: Principal | None) -> Response:
        model.stop_channel(await read_body(request), principal)
        return Response(status_code=204)

    return [
        Route("/calendar/v3/calendars/{calendarId}/events/watch", api(sandbox, watch), methods=["POST"]),
        Route("/calendar/v3/channels/stop", api(sandbox, stop), methods=["POST"]),
    ]
