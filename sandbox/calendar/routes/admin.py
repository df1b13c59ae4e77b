"""Admin and fault injection under ``/_sandbox/`` (never under ``/calendar/v3``).

``POST /_sandbox/reset``, ``POST /_sandbox/calendars`` ``{"id", "owner"?}``,
``POST /_sandbox/users`` ``{"email", "name"?}`` (a user and their primary calendar: 201 with
the user; the same user again is 200 with it, unchanged; the same email with another name is
409), ``GET /_sandbox/users``,
``POST /_sandbox/calendars/{calendarId}/invalidate-sync-tokens``,
``POST /_sandbox/calendars/{calendarId}/bulk-insert`` ``{"events": [...]}`` (seeding),
``POST|GET|DELETE /_sandbox/faults``, ``GET /_sandbox/channels``, ``POST
/_sandbox/channels/{id}/drop`` (the channel stays live and delivers nothing, as when Google
silently stops a channel), ``GET /_sandbox/requests``,
``POST /_sandbox/notifications`` ``{"duplicates": true}`` (every notification is then
delivered twice with the same message number, as Google may),
``POST /_sandbox/clock`` ``{"advance_s": N}`` (a finite number of seconds from 0 to ten years;
the clock never passes the year 9000; anything else is a 400 ``invalid`` and no move).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.calendar.access import is_email
from sandbox.calendar.errors import GoogleError
from sandbox.calendar.model import CalendarModel
from sandbox.calendar.notify import Notifier
from sandbox.calendar.serving import CalendarSandbox, admin, read_admin_body

__all__ = ["admin_routes"]


def _add_user(model: CalendarModel, data: dict[str, Any]) -> Response:
    email, name = data.get("email"), data.get("name", "")
    if not isinstance(email, str) or not is_email(email):
        raise GoogleError(400, "invalid", "email: a valid email address is required", location="email")
    if not isinstance(name, str):
        raise GoogleError(400, "invalid", "name: a string", location="name")
    email = email.lower()
    existing = model.user(email)
    if existing is not None:
        if name and name != existing.name:
            raise GoogleError(409, "duplicate", f"user {email} exists with another name")
        return JSONResponse(existing.to_json())
    return JSONResponse(model.add_user(email, name).to_json(), status_code=201)


def admin_routes(sandbox: CalendarSandbox, notifier: Notifier) -> list[Route]:
    model = sandbox.model

    async def reset(_request: Request) -> Response:
        model.reset()
        notifier.forget()
        sandbox.faults.clear()
        sandbox.journal.clear()
        return JSONResponse({"reset": True})

    async def create_calendar(request: Request) -> Response:
        data = await read_admin_body(request)
        if not isinstance(data.get("id"), str):
            raise GoogleError(400, "required", "id: a calendar id is required")
        created = model.create_calendar(data["id"], data.get("owner"))
        return JSONResponse({"id": data["id"], "created": created}, status_code=201 if created else 200)

    async def users(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse([user.to_json() for user in list(model.access.users.values())])
        return _add_user(model, await read_admin_body(request))

    async def invalidate(request: Request) -> Response:
        model.invalidate_sync_tokens(request.path_params["calendarId"])
        return JSONResponse({"invalidated": request.path_params["calendarId"]})

    async def bulk_insert(request: Request) -> Response:
        data = await read_admin_body(request)
        events = data.get("events")
        if not isinstance(events, list):
            raise GoogleError(400, "required", "events: a list of event resources is required")
        count, notifications = model.insert_many(
            request.path_params["calendarId"], events, conference_data_version=int(data.get("conferenceDataVersion", 0))
        )
        notifier.enqueue(notifications)
        return JSONResponse({"inserted": count})

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            sandbox.faults.clear()
            return JSONResponse({"faults": []})
        if request.method == "GET":
            return JSONResponse({"faults": sandbox.faults.rules()})
        try:
            rule = sandbox.faults.add(await read_admin_body(request))
        except ValueError as err:
            raise GoogleError(400, "invalid", f"fault rule: {err}") from err
        return JSONResponse(rule.to_json(), status_code=201)

    async def notifications(request: Request) -> Response:
        duplicates = (await read_admin_body(request)).get("duplicates")
        if not isinstance(duplicates, bool):
            raise GoogleError(400, "invalid", "duplicates: true or false")
        notifier.duplicates = duplicates
        return JSONResponse({"duplicates": duplicates})

    async def channels(_request: Request) -> Response:
        return JSONResponse(model.channels())

    async def drop_channel(request: Request) -> Response:
        channel_id = request.path_params["channelId"]
        if not model.drop_channel(channel_id):
            raise GoogleError(404, "notFound", f"Channel '{channel_id}' not found for project.")
        return JSONResponse({"id": channel_id, "dropped": True})

    async def requests(_request: Request) -> Response:
        return JSONResponse(sandbox.journal.entries())

    async def clock(request: Request) -> Response:
        data = await read_admin_body(request)
        seconds = data.get("advance_s")
        try:
            sandbox.clock.advance(seconds)  # ValueError unless finite, within ten years, representable
        except ValueError as err:
            raise GoogleError(400, "invalid", f"advance_s: {err}", location="advance_s") from err
        return JSONResponse({"now": sandbox.clock.now().isoformat()})

    return [
        Route("/_sandbox/reset", admin(reset), methods=["POST"]),
        Route("/_sandbox/calendars", admin(create_calendar), methods=["POST"]),
        Route("/_sandbox/users", admin(users), methods=["GET", "POST"]),
        Route("/_sandbox/calendars/{calendarId}/invalidate-sync-tokens", admin(invalidate), methods=["POST"]),
        Route("/_sandbox/calendars/{calendarId}/bulk-insert", admin(bulk_insert), methods=["POST"]),
        Route("/_sandbox/faults", admin(faults), methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/channels", admin(channels), methods=["GET"]),
        Route("/_sandbox/channels/{channelId}/drop", admin(drop_channel), methods=["POST"]),
        Route("/_sandbox/notifications", admin(notifications), methods=["POST"]),
        Route("/_sandbox/requests", admin(requests), methods=["GET"]),
        Route("/_sandbox/clock", admin(clock), methods=["POST"]),
    ]
