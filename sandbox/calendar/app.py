"""The Calendar sandbox's HTTP surface: Google Calendar API v3 under ``/calendar/v3/``.

google-api-python-client works against it unchanged::

    build("calendar", "v3", credentials=AnonymousCredentials(), static_discovery=True,
          client_options={"api_endpoint": "http://127.0.0.1:PORT/calendar/v3/"})

``POST /batch/calendar/v3`` takes Google's batch requests (sandbox/calendar/batch.py).

Admin and fault injection live under ``/_sandbox/`` (never under ``/calendar/v3``):
``POST /_sandbox/reset``, ``POST /_sandbox/calendars`` ``{"id", "owner"?}``,
``POST /_sandbox/calendars/{calendarId}/invalidate-sync-tokens``,
``POST /_sandbox/calendars/{calendarId}/bulk-insert`` ``{"events": [...]}`` (seeding),
``POST|GET|DELETE /_sandbox/faults``, ``GET /_sandbox/channels``, ``GET /_sandbox/requests``,
``POST /_sandbox/notifications`` ``{"duplicates": true}`` (every notification is then
delivered twice with the same message number, as Google may),
``POST /_sandbox/clock`` ``{"advance_s": N}``.

Every API request is checked against the bearer tokens (when any are configured), then the
fault rules, then served; it is journaled and logged as one structured line either way.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.calendar.batch import batch_route_handler
from sandbox.calendar.errors import GoogleError, error_body
from sandbox.calendar.model import CalendarModel, ListQuery, Notification
from sandbox.calendar.notify import Notifier, RetryPolicy
from sandbox.clock import Clock
from sandbox.faults import Faults
from sandbox.journal import Journal

__all__ = ["CalendarSandbox", "create_app"]

log = structlog.get_logger(__name__)

MAX_BODY = 1024 * 1024
MAX_ADMIN_BODY = 256 * 1024 * 1024
_JSON = "application/json; charset=UTF-8"


@dataclass
class CalendarSandbox:
    """Everything one running sandbox holds; ``create_app`` serves it."""

    model: CalendarModel
    clock: Clock = field(default_factory=Clock)
    faults: Faults = field(default_factory=Faults)
    journal: Journal = field(default_factory=Journal)
    auth_tokens: Mapping[str, str] = field(default_factory=dict)  # bearer token -> user email
    retry: RetryPolicy = field(default_factory=RetryPolicy)


Handler = Callable[[Request, str | None], Awaitable[Response]]


def create_app(sandbox: CalendarSandbox) -> Starlette:  # noqa: PLR0915 - one small closure per route
    notifier = Notifier(sandbox.model, sandbox.retry)
    model = sandbox.model

    def deliver(notifications: list[Notification]) -> None:
        notifier.enqueue(notifications)

    def api(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await _serve(sandbox, request, handler)

        return endpoint

    # -- events ----------------------------------------------------------------------------
    async def list_or_insert(request: Request, user: str | None) -> Response:
        calendar_id = model.resolve(request.path_params["calendarId"], user)
        if request.method == "GET":
            return _raw(model.list_events(calendar_id, _query(request)).to_bytes())
        resource, notifications = model.insert(calendar_id, await _body(request), conference_data_version=_cdv(request))
        deliver(notifications)
        return _json(resource)

    async def one_event(request: Request, user: str | None) -> Response:
        calendar_id = model.resolve(request.path_params["calendarId"], user)
        event_id = request.path_params["eventId"]
        if request.method == "GET":
            return _json(model.get(calendar_id, event_id))
        if request.method == "DELETE":
            deliver(model.delete(calendar_id, event_id))
            return Response(status_code=204)
        write = model.patch if request.method == "PATCH" else model.update
        resource, notifications = write(
            calendar_id, event_id, await _body(request), conference_data_version=_cdv(request)
        )
        deliver(notifications)
        return _json(resource)

    async def instances(request: Request, user: str | None) -> Response:
        calendar_id = model.resolve(request.path_params["calendarId"], user)
        return _raw(model.instances(calendar_id, request.path_params["eventId"], _query(request)).to_bytes())

    async def watch(request: Request, user: str | None) -> Response:
        calendar_id = model.resolve(request.path_params["calendarId"], user)
        base = str(request.base_url)
        channel, notifications = model.watch(calendar_id, await _body(request), base_url=base)
        deliver(notifications)
        return _json(channel)

    async def stop(request: Request, _user: str | None) -> Response:
        model.stop_channel(await _body(request))
        return Response(status_code=204)

    # -- admin -----------------------------------------------------------------------------
    async def reset(_request: Request) -> Response:
        model.reset()
        notifier.forget()
        sandbox.faults.clear()
        sandbox.journal.clear()
        return JSONResponse({"reset": True})

    async def create_calendar(request: Request) -> Response:
        data = await _admin_body(request)
        if not isinstance(data.get("id"), str):
            raise GoogleError(400, "required", "id: a calendar id is required")
        created = model.create_calendar(data["id"], data.get("owner"))
        return JSONResponse({"id": data["id"], "created": created}, status_code=201 if created else 200)

    async def invalidate(request: Request) -> Response:
        model.invalidate_sync_tokens(request.path_params["calendarId"])
        return JSONResponse({"invalidated": request.path_params["calendarId"]})

    async def bulk_insert(request: Request) -> Response:
        data = await _admin_body(request)
        events = data.get("events")
        if not isinstance(events, list):
            raise GoogleError(400, "required", "events: a list of event resources is required")
        count, notifications = model.insert_many(
            request.path_params["calendarId"], events, conference_data_version=int(data.get("conferenceDataVersion", 0))
        )
        deliver(notifications)
        return JSONResponse({"inserted": count})

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            sandbox.faults.clear()
            return JSONResponse({"faults": []})
        if request.method == "GET":
            return JSONResponse({"faults": sandbox.faults.rules()})
        try:
            rule = sandbox.faults.add(await _admin_body(request))
        except ValueError as err:
            raise GoogleError(400, "invalid", f"fault rule: {err}") from err
        return JSONResponse(rule.to_json(), status_code=201)

    async def notifications(request: Request) -> Response:
        duplicates = (await _admin_body(request)).get("duplicates")
        if not isinstance(duplicates, bool):
            raise GoogleError(400, "invalid", "duplicates: true or false")
        notifier.duplicates = duplicates
        return JSONResponse({"duplicates": duplicates})

    async def channels(_request: Request) -> Response:
        return JSONResponse(model.channels())

    async def requests(_request: Request) -> Response:
        return JSONResponse(sandbox.journal.entries())

    async def clock(request: Request) -> Response:
        data = await _admin_body(request)
        seconds = data.get("advance_s")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise GoogleError(400, "invalid", "advance_s: a number of seconds >= 0")
        sandbox.clock.advance(float(seconds))
        return JSONResponse({"now": sandbox.clock.now().isoformat()})

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await notifier.start()
        try:
            yield
        finally:
            await notifier.stop()

    v3 = "/calendar/v3"
    routes = [
        Route(f"{v3}/calendars/{{calendarId}}/events", api(list_or_insert), methods=["GET", "POST"]),
        Route(f"{v3}/calendars/{{calendarId}}/events/watch", api(watch), methods=["POST"]),
        Route(
            f"{v3}/calendars/{{calendarId}}/events/{{eventId}}",
            api(one_event),
            methods=["GET", "PATCH", "PUT", "DELETE"],
        ),
        Route(f"{v3}/calendars/{{calendarId}}/events/{{eventId}}/instances", api(instances), methods=["GET"]),
        Route(f"{v3}/channels/stop", api(stop), methods=["POST"]),
        Route("/_sandbox/reset", _admin(reset), methods=["POST"]),
        Route("/_sandbox/calendars", _admin(create_calendar), methods=["POST"]),
        Route("/_sandbox/calendars/{calendarId}/invalidate-sync-tokens", _admin(invalidate), methods=["POST"]),
        Route("/_sandbox/calendars/{calendarId}/bulk-insert", _admin(bulk_insert), methods=["POST"]),
        Route("/_sandbox/faults", _admin(faults), methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/channels", _admin(channels), methods=["GET"]),
        Route("/_sandbox/notifications", _admin(notifications), methods=["POST"]),
        Route("/_sandbox/requests", _admin(requests), methods=["GET"]),
        Route("/_sandbox/clock", _admin(clock), methods=["POST"]),
    ]
    routes.append(Route("/batch/calendar/v3", batch_route_handler(lambda: app), methods=["POST"]))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    return app


async def _serve(sandbox: CalendarSandbox, request: Request, handler: Handler) -> Response:
    started = time.perf_counter()
    try:
        user = _authenticate(sandbox, request)
        rule = sandbox.faults.match(request.method, request.url.path)
        if rule is not None and rule.latency_ms:
            await asyncio.sleep(rule.latency_ms / 1000)
        if rule is not None and rule.status is not None:
            response = _error(GoogleError(rule.status, rule.reason))
            if rule.retry_after is not None:
                response.headers["Retry-After"] = str(rule.retry_after)
        else:
            response = await handler(request, user)
    except GoogleError as err:
        response = _error(err)
    except Exception:
        log.exception("request failed", method=request.method, path=request.url.path)
        response = _error(GoogleError(500, "backendError", "Backend Error"))
    _record(sandbox, request, response.status_code, started)
    return response


def _record(sandbox: CalendarSandbox, request: Request, status: int, started: float) -> None:
    query = {key: values if len(values) > 1 else values[0] for key, values in _params(request).items()}
    sandbox.journal.record(
        {
            "method": request.method,
            "path": request.url.path,
            "query": query,
            "status": status,
            "at": sandbox.clock.now().isoformat(),
        }
    )
    log.info(
        "request",
        method=request.method,
        path=request.url.path,
        status=status,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )


def _authenticate(sandbox: CalendarSandbox, request: Request) -> str | None:
    if not sandbox.auth_tokens:
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    user = sandbox.auth_tokens.get(token) if scheme.lower() == "bearer" else None
    if user is None:
        raise GoogleError(
            401,
            "authError",
            "Invalid Credentials",
            location="Authorization",
            location_type="header",
        )
    return user


def _admin(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except GoogleError as err:
            return _error(err)

    return endpoint


def _params(request: Request) -> dict[str, list[str]]:
    return parse_qs(request.url.query, keep_blank_values=True)


def _query(request: Request) -> ListQuery:
    return ListQuery(_params(request))


def _cdv(request: Request) -> int:
    value = request.query_params.get("conferenceDataVersion", "0")
    if value not in ("0", "1"):
        raise GoogleError(
            400, "invalid", f"Invalid conferenceDataVersion value: {value}", location="conferenceDataVersion"
        )
    return int(value)


async def _read(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise GoogleError(413, "uploadTooLarge", "Request Entity Too Large")
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise GoogleError(413, "uploadTooLarge", "Request Entity Too Large")
    return data


async def _body(request: Request) -> Any:
    data = await _read(request, MAX_BODY)
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise GoogleError(400, "parseError", "Parse Error") from err


async def _admin_body(request: Request) -> dict[str, Any]:
    data = await _read(request, MAX_ADMIN_BODY)
    try:
        parsed = json.loads(data or b"{}")
    except (ValueError, UnicodeDecodeError) as err:
        raise GoogleError(400, "parseError", "Parse Error") from err
    if not isinstance(parsed, dict):
        raise GoogleError(400, "badRequest", "The request body must be a JSON object.")
    return parsed


def _json(value: object) -> Response:
    return _raw(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _raw(data: bytes, status: int = 200) -> Response:
    return Response(content=data, status_code=status, media_type=_JSON)


def _error(err: GoogleError) -> Response:
    return JSONResponse(err.body(), status_code=err.code)


async def _http_error(_request: Request, exc: HTTPException) -> Response:
    return JSONResponse(error_body(exc.status_code), status_code=exc.status_code, headers=exc.headers)
