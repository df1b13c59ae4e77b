"""Events over HTTP: list, insert, get, patch, update, delete and instances
(https://developers.google.com/calendar/api/v3/reference/events)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.calendar.notify import Notifier
from sandbox.calendar.serving import CalendarSandbox, api, cdv, json_answer, list_query, raw_answer, read_body

__all__ = ["event_routes"]

_EVENTS = "/calendar/v3/calendars/{calendarId}/events"


def event_routes(sandbox: CalendarSandbox, notifier: Notifier) -> list[Route]:
    model = sandbox.model

    async def list_or_insert(request: Request, user: str | None) -> Response:
        calendar_id = model.resolve(request.path_params["calendarId"], user)
        if request.method == "GET":
            return raw_answer(model.list_events(calendar_id, list_query(request)).to_bytes())
        resource, notifications = model.insert(
            calendar_id, await read_body(request), conference_data_version=cdv(request)
        )
        notifier.enqueue(notifications)
        return json_answer(resource)

    async def one_event(request: Request, user: str | None) -> Response:
        calendar_id = model.resolve(request.path_params["calendarId"], user)
        event_id = request.path_params["eventId"]
        if request.method == "GET":
            return json_answer(model.get(calendar_id, event_id))
        if request.method == "DELETE":
            notifier.enqueue(model.delete(calendar_id, event_id))
            return Response(status_code=204)
        write = model.patch if request.method == "PATCH" else model.update
        resource, notifications = write(
            calendar_id, event_id, await read_body(request), conference_data_version=cdv(request)
        )
        notifier.enqueue(notifications)
        return json_answer(resource)

    async def instances(request: Request, user: str | None) -> Response:
        calendar_id = model.resolve(request.path_params["calendarId"], user)
        page = model.instances(calendar_id, request.path_params["eventId"], list_query(request))
        return raw_answer(page.to_bytes())

    return [
        Route(_EVENTS, api(sandbox, list_or_insert), methods=["GET", "POST"]),
        Route(f"{_EVENTS}/{{eventId}}", api(sandbox, one_event), methods=["GET", "PATCH", "PUT", "DELETE"]),
        Route(f"{_EVENTS}/{{eventId}}/instances", api(sandbox, instances), methods=["GET"]),
    ]
