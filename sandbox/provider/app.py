"""The conferencing sandbox: the REST contract of ``confsync.provider`` served by FastAPI.

The OpenAPI spec is at ``/openapi.json`` (docs at ``/docs``). Admin routes, outside the spec:
``POST /_sandbox/faults`` (``{"method", "path", "status", "probability", "count",
"retry_after", "latency_ms"}``, keys optional except path), ``GET|DELETE /_sandbox/faults``,
``POST /_sandbox/reset`` and ``GET /_sandbox/requests``, a JSON list of
``{method, path, idempotency_key, status, at}`` for every ``/v1`` request, so tests can count
calls. Injected 429 and 503 answers carry ``Retry-After`` (1 s unless the rule says).

FastAPI declares every route and answers every request it is given. A well-formed PATCH or
DELETE of a conference (the calls publishers make, thousands a second in benchmarks) takes a
shortcut past FastAPI's routing and dependency solving, about two thirds of the sandbox's CPU
per call: the same pydantic model, the same store call and the same response class, so the
answer is byte for byte FastAPI's. Anything the shortcut does not accept as valid goes on to
FastAPI, which answers it, errors included, as it always did.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import date as datetime_date
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from starlette.exceptions import HTTPException

from sandbox.faults import Faults
from sandbox.journal import Journal
from sandbox.provider.store import Answer, ProviderStore, error

__all__ = ["ProviderSandbox", "create_app"]

AUTHENTICATION_URL = "https://mywebconf.test/oauth/authorize"
_ID_CHARS = r"[A-Za-z0-9_-]{1,64}"
_ID = f"^{_ID_CHARS}$"
_KEY = r"^[\x21-\x7e]{1,255}$"
_TEXT = 1024
_BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer <api key>")
ConferenceId = Annotated[str, Path(pattern=_ID)]
IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", pattern=_KEY)]


@dataclass
class ProviderSandbox:
    store: ProviderStore
    api_key: str
    faults: Faults = field(default_factory=Faults)
    journal: Journal = field(default_factory=Journal)


# -- the wire models: what the OpenAPI spec shows ------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _rfc3339(value: object) -> datetime:
    """Only an RFC 3339 string with an offset (pydantic alone would also take a number)."""
    if not isinstance(value, str):
        raise ValueError("an RFC 3339 date-time string is required")  # noqa: TRY004 - pydantic turns only ValueError into a 422
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip().replace("z", "Z"))  # keep microseconds
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None or "T" not in text.upper():
        raise ValueError("an RFC 3339 date-time with a UTC offset is required")
    return parsed


def _calendar_date(value: object) -> datetime_date:
    if not isinstance(value, str) or len(value) != len("YYYY-MM-DD"):
        raise ValueError("a YYYY-MM-DD date string is required")
    return datetime_date.fromisoformat(value)


Timestamp = Annotated[datetime, BeforeValidator(_rfc3339), WithJsonSchema({"type": "string", "format": "date-time"})]
CalendarDate = Annotated[
    datetime_date, BeforeValidator(_calendar_date), WithJsonSchema({"type": "string", "format": "date"})
]


class TimedEventTime(_Strict):
    """A moment, shaped like Calendar's ``{"dateTime", "timeZone"}``."""

    dateTime: Timestamp  # noqa: N815 - Calendar's field names
    timeZone: str | None = Field(default=None, max_length=64)  # noqa: N815


class AllDayEventTime(_Strict):
    """An all-day date, shaped like Calendar's ``{"date"}``."""

    date: CalendarDate


EventTime = TimedEventTime | AllDayEventTime


Emails = Annotated[list[Annotated[str, Field(min_length=3, max_length=320)]], Field(max_length=2000)]


class CreateConference(_Strict):
    calendar_id: str = Field(min_length=1, max_length=_TEXT)
    event_id: str = Field(min_length=1, max_length=_TEXT)
    request_id: str = Field(min_length=1, max_length=_TEXT)
    summary: str | None = Field(default=None, max_length=65536)
    start: EventTime | None = None
    end: EventTime | None = None
    attendees: Emails = Field(default_factory=list)
    organizer: str | None = Field(default=None, max_length=320)


class PatchConference(_Strict):
    event_updated: Timestamp
    summary: str | None = Field(default=None, max_length=65536)
    start: EventTime | None = None
    end: EventTime | None = None
    attendees: Emails | None = None
    organizer: str | None = Field(default=None, max_length=320)
    recurrence: Annotated[list[Annotated[str, Field(max_length=_TEXT)]], Field(max_length=100)] | None = None
    html_link: str | None = Field(default=None, max_length=4096)


class CreatedConference(BaseModel):
    id: str
    video_uri: str
    passcode: str
    phone_number: str
    phone_pin: str
    admin_email: str
    legal_notice: str
    version: int


class ConferenceView(CreatedConference):
    calendar_id: str
    event_id: str
    summary: str | None = None
    start: dict[str, str] | None = None
    end: dict[str, str] | None = None
    attendees: list[str] = []
    organizer: str | None = None
    recurrence: list[str] | None = None
    html_link: str | None = None
    state: str
    updated_at: str
    last_event_updated: str | None = None


class ErrorDetail(BaseModel):
    code: str
    message: str
    retryable: bool
    authentication_url: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in (400, 401, 422, 429, 503, *codes)}


# -- the app -----------------------------------------------------------------------------------


def create_app(sandbox: ProviderSandbox, *, shortcut: bool = True) -> FastAPI:
    """The sandbox's ASGI app; ``shortcut=False`` sends every request through FastAPI."""
    app = FastAPI(
        title="My Web Conferencing API (confsync sandbox)",
        version="1.0.0",
        description=__doc__,
    )
    store = sandbox.store

    # The bearer check itself runs in _Gate, before routing or body parsing; declaring the scheme
    # here puts it in the OpenAPI spec for clients and schemathesis.
    authorized = [Depends(_BEARER)]

    @app.post(
        "/v1/conferences",
        status_code=201,
        response_model=CreatedConference,
        responses={
            200: {"model": CreatedConference, "description": "The conference already created for this request_id."},
            **_errors(),
        },
        dependencies=authorized,
    )
    async def create_conference(request: CreateConference) -> Response:
        body = request.model_dump(mode="json")
        return _answer(store.create(body, _now()))

    @app.get(
        "/v1/conferences/{conference_id}",
        response_model=ConferenceView,
        responses=_errors(404),
        dependencies=authorized,
    )
    async def get_conference(conference_id: ConferenceId) -> Response:
        return _answer(store.get(conference_id))

    @app.patch(
        "/v1/conferences/{conference_id}",
        response_model=ConferenceView,
        responses=_errors(404, 409),
        dependencies=authorized,
    )
    async def patch_conference(
        conference_id: ConferenceId, request: PatchConference, idempotency_key: IdempotencyKey
    ) -> Response:
        return _answer(_patch(store, conference_id, idempotency_key, request))

    @app.delete("/v1/conferences/{conference_id}", status_code=204, responses=_errors(404), dependencies=authorized)
    async def delete_conference(conference_id: ConferenceId, idempotency_key: IdempotencyKey) -> Response:
        return _answer(store.delete(conference_id, idempotency_key, _now()))

    @app.post("/_sandbox/reset", include_in_schema=False)
    async def reset() -> Response:
        store.reset()
        sandbox.faults.clear()
        sandbox.journal.clear()
        return JSONResponse({"reset": True})

    @app.api_route("/_sandbox/faults", methods=["GET", "POST", "DELETE"], include_in_schema=False)
    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            sandbox.faults.clear()
        elif request.method == "POST":
            try:
                rule = sandbox.faults.add(json.loads(await request.body() or b"null"))
            except ValueError as err:  # JSONDecodeError included
                return _answer(error(400, "invalid_fault", f"fault rule: {err}"))
            return JSONResponse(rule.to_json(), status_code=201)
        return JSONResponse({"faults": sandbox.faults.rules()})

    @app.get("/_sandbox/requests", include_in_schema=False)
    async def requests() -> Response:
        return JSONResponse(sandbox.journal.entries())

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in exc.errors()[:5]
        )
        return _answer(error(422, "invalid_request", problems or "invalid request"))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = _answer(error(exc.status_code, code, str(exc.detail)))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:  # Allow names every method of the path, not one route's (RFC 9110)
            response.headers["Allow"] = ", ".join(_methods_for(app, request.url.path))
        return response

    app.add_middleware(_Gate, sandbox=sandbox, shortcut=shortcut)
    return app


def _patch(store: ProviderStore, conference_id: str, key: str, request: PatchConference) -> Answer:
    changes = request.model_dump(mode="json", exclude_unset=True)
    changes.pop("event_updated")
    return store.patch(conference_id, key, changes, request.event_updated, _now())


def _methods_for(app: FastAPI, path: str) -> list[str]:
    methods: set[str] = set()
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path_regex.match(path):
            methods |= route.methods or set()
    return sorted(methods)


def _answer(answer: Answer) -> Response:
    if answer.body is None:
        return Response(status_code=answer.status)
    headers = {"Retry-After": "1"} if answer.status in (429, 503) else None
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


def _now() -> datetime:
    return datetime.now(UTC)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_REASONS = {429: "rate_limited", 500: "internal", 502: "bad_gateway", 503: "unavailable", 504: "timeout"}


class _Gate:
    """Pure ASGI middleware in front of /v1: faults, then the API key, then the app; journals each."""

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], sandbox: ProviderSandbox, *, shortcut: bool
    ) -> None:
        self._app = app
        self._sandbox = sandbox
        self._expected = f"bearer {sandbox.api_key}".encode()
        self._shortcut = shortcut

    def _authorized(self, scope: Scope) -> bool:
        given = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        scheme, _, token = given.partition(b" ")
        return hmac.compare_digest(scheme.lower() + b" " + token, self._expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self._app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        key = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"idempotency-key"), None)
        status = 500
        rule = self._sandbox.faults.match(method, path)
        if rule is not None and rule.latency_ms:
            await asyncio.sleep(rule.latency_ms / 1000)
        try:
            if rule is not None and rule.status is not None:
                status = rule.status
                await _send_fault(send, rule.status, rule.reason, rule.retry_after)
                return
            if not self._authorized(scope):
                status = 401
                await _send_json(send, 401, _UNAUTHENTICATED)
                return

            async def recording_send(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            if self._shortcut:
                answered, receive = await self._try_shortcut(scope, receive, key)
                if answered is not None:
                    await _answer(answered)(scope, receive, recording_send)
                    return
            await self._app(scope, receive, recording_send)
        finally:
            self._sandbox.journal.record(
                {"method": method, "path": path, "idempotency_key": key, "status": status, "at": _now().isoformat()}
            )

    async def _try_shortcut(self, scope: Scope, receive: Receive, key: str | None) -> tuple[Answer | None, Receive]:
        """The answer to a well-formed PATCH or DELETE of a conference, or None for FastAPI to give.

        Returns the receive callable for FastAPI to read the request from: the body the shortcut
        read is replayed to it first.
        """
        method = scope["method"]
        found = _CONFERENCE.fullmatch(scope["path"])
        if found is None or key is None or _KEY_PATTERN.fullmatch(key) is None or method not in ("PATCH", "DELETE"):
            return None, receive
        store = self._sandbox.store
        if method == "DELETE":
            return store.delete(found[1], key, _now()), receive
        if not _is_json(scope):
            return None, receive
        messages, body = await _read_body(receive)
        replay = _replaying(messages, receive)
        try:
            request = PatchConference.model_validate(json.loads(body))
        except Exception:  # noqa: BLE001 - what the shortcut does not accept, FastAPI answers
            return None, replay
        return _patch(store, found[1], key, request), replay


_CONFERENCE = re.compile(f"/v1/conferences/({_ID_CHARS})")
_KEY_PATTERN = re.compile(_KEY)


def _is_json(scope: Scope) -> bool:
    given = next((value for name, value in scope["headers"] if name == b"content-type"), b"")
    return given.partition(b";")[0].strip().lower() == b"application/json"


async def _read_body(receive: Receive) -> tuple[list[Message], bytes]:
    """Every message of the request body as received, and the body they carry."""
    messages = [await receive()]
    while messages[-1]["type"] == "http.request" and messages[-1].get("more_body", False):
        messages.append(await receive())
    return messages, b"".join(message.get("body", b"") for message in messages)


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


_UNAUTHENTICATED = {
    "error": {
        "code": "unauthenticated",
        "message": "a valid API key is required",
        "retryable": False,
        "authentication_url": AUTHENTICATION_URL,
    }
}


async def _send_fault(send: Send, status: int, reason: str | None, retry_after: int | None) -> None:
    retryable = status in (408, 429) or status >= 500
    code = reason or _REASONS.get(status, "injected_fault")
    extra = []
    if status in (429, 503) or retry_after is not None:
        extra.append((b"retry-after", str(1 if retry_after is None else retry_after).encode()))
    await _send_json(
        send, status, {"error": {"code": code, "message": "injected fault", "retryable": retryable}}, extra
    )


async def _send_json(send: Send, status: int, value: object, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(value).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
