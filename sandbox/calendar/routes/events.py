"""Events over HTTP: list, insert, get, patch, update, delete, instances and move
(https://developers.google.com/calendar/api/v3/reference/events)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.calendar.access import EVENTS_READ, EVENTS_WRITE, check
from sandbox.calendar.errors import GoogleError, not_found
from sandbox.calendar.notify import Notifier
from sandbox.calendar.partial import Partials, parse_fields, project
from sandbox.calendar.serving import (
    CalendarSandbox,
    api,
    calendar_for,
    cdv,
    json_answer,
    list_query,
    raw_answer,
    read_body,
)
from sandbox.identity import Principal

__all__ = ["event_routes"]

_EVENTS = "/calendar/v3/calendars/{calendarId}/events"


def event_routes(sandbox: CalendarSandbox, notifier: Notifier) -> list[Route]:
    model = sandbox.model
    partials = Partials()  # listings' items as ``fields`` shapes them, kept

    async def list_or_insert(request: Request, principal: Principal | None) -> Response:
        need = EVENTS_READ if request.method == "GET" else EVENTS_WRITE
        calendar_id = calendar_for(sandbox, request, principal, need)
        if request.method == "GET":
            page = model.list_events(calendar_id, list_query(request))
            return raw_answer(page.to_bytes(request.query_params.get("fields"), partials))
        resource, notifications = model.insert(
            calendar_id, await read_body(request), conference_data_version=cdv(request)
        )
        notifier.enqueue(notifications)
        return json_answer(resource)

    async def one_event(request: Request, principal: Principal | None) -> Response:
        need = EVENTS_READ if request.method == "GET" else EVENTS_WRITE
        calendar_id = calendar_for(sandbox, request, principal, need)
        event_id = request.path_params["eventId"]
        if request.method == "GET":
            fields = request.query_params.get("fields")
            resource = model.get(calendar_id, event_id)
            return json_answer(project(resource, parse_fields(fields)) if fields else resource)
        if request.method == "DELETE":
            notifier.enqueue(model.delete(calendar_id, event_id))
            return Response(status_code=204)
        write = model.patch if request.method == "PATCH" else model.update
        resource, notifications = write(
            calendar_id, event_id, await read_body(request), conference_data_version=cdv(request)
        )
        notifier.enqueue(notifications)
        return json_answer(resource)

    async def instances(request: Request, principal: Principal | None) -> Response:
        calendar_id = calendar_for(sandbox, request, principal, EVENTS_READ)
        page = model.instances(calendar_id, request.path_params["eventId"], list_query(request))
        return raw_answer(page.to_bytes(request.query_params.get("fields"), partials))

    async def move(request: Request, principal: Principal | None) -> Response:
        source = calendar_for(sandbox, request, principal, EVENTS_WRITE)
        destination = request.query_params.get("destination")
        if not destination:
            raise GoogleError(400, "required", "Required parameter: destination", location="destination")
        destination = model.resolve(destination, None if principal is None else principal.email)
        if principal is not None:  # writer on the destination too
            role = model.role(destination, principal.email)
            if role is None:
                raise not_found()
            check(EVENTS_WRITE, role, principal.scopes)
        resource, notifications = model.move(source, request.path_params["eventId"], destination)
        notifier.enqueue(notifications)
        return json_answer(resource)

    return [
        Route(_EVENTS, api(sandbox, list_or_insert), methods=["GET", "POST"]),
        Route(f"{_EVENTS}/{{eventId}}/move", api(sandbox, move), methods=["POST"]),
        Route(f"{_EVENTS}/{{eventId}}", api(sandbox, one_event), methods=["GET", "PATCH", "PUT", "DELETE"]),
        Route(f"{_EVENTS}/{{eventId}}/instances", api(sandbox, instances), methods=["GET"]),
    ]
