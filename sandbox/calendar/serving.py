"""How the Calendar sandbox serves a request, whatever the resource.

Every API request is authenticated (when auth is on), then checked against the fault rules,
then served; it is journaled (with the principal it acted for, never its token: the values of
query parameters that carry credentials, ``access_token``, ``key``, ``token``, ``client_secret``,
``code``, ``assertion`` and ``refresh_token``, are journaled as ``[redacted]``) and logged as one
structured line (no query) either way. Here too: what a route asks before it touches a calendar
(``calendar_for``: ``primary`` resolved, the caller's role and scopes checked), reading bodies
(with size limits), query parameters, and writing JSON answers and Google-shaped errors. The
routes of each resource live in sandbox/calendar/routes/.

Auth is on with ``require_auth`` or when static ``auth_tokens`` are given: every
``/calendar/v3/`` call then needs ``Authorization: Bearer TOKEN`` that ``authenticator``
accepts (by default an access token the sandbox's own OAuth server issued, to a user who
consented or to a service account, then the static tokens), else Google's 401 ``authError``.
Only the header counts: an ``access_token`` query parameter (which Google also accepts) is
ignored, so a call that carries its token only there is a 401. With auth off, calls act for
nobody: ``primary`` is the default owner's calendar and nothing is checked (a token, in the
header or the query, is ignored).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.calendar.access import Need, Role, check
from sandbox.calendar.errors import GoogleError, error_body, not_found
from sandbox.calendar.identity import GoogleIdentity
from sandbox.calendar.model import CalendarModel, ListQuery
from sandbox.calendar.notify import RetryPolicy
from sandbox.clock import Clock
from sandbox.faults import Faults
from sandbox.identity import AnyOf, Authenticator, Principal, StaticTokens, TokenRefused
from sandbox.journal import Journal

__all__ = [
    "CalendarSandbox",
    "Endpoint",
    "Handler",
    "admin",
    "api",
    "calendar_for",
    "cdv",
    "http_error",
    "json_answer",
    "list_query",
    "raw_answer",
    "read_admin_body",
    "read_body",
]

log = structlog.get_logger(__name__)

_REDACTED = "[redacted]"
_SECRET_PARAMS = frozenset(("access_token", "key", "token", "client_secret", "code", "assertion", "refresh_token"))
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
    authenticator: Authenticator | None = None  # None: tokens the sandbox issued, then auth_tokens
    require_auth: bool = False  # on by itself when auth_tokens are given
    token_ttl_s: int = 3600  # how long an access token the sandbox issues lasts
    identity: GoogleIdentity = field(init=False)  # Google's OAuth, service accounts and ID tokens

    def __post_init__(self) -> None:
        self.identity = GoogleIdentity(self.clock, is_user=self.model.access.is_user, token_ttl_s=self.token_ttl_s)
        if self.authenticator is None:
            self.authenticator = AnyOf(self.identity.oauth, StaticTokens(self.auth_tokens))

    @property
    def auth_on(self) -> bool:
        return self.require_auth or bool(self.auth_tokens)


Handler = Callable[[Request, Principal | None], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def api(sandbox: CalendarSandbox, handler: Handler) -> Endpoint:
    """An API endpoint: authenticated, fault-injected, journaled and logged."""

    async def endpoint(request: Request) -> Response:
        return await _serve(sandbox, request, handler)

    return endpoint


async def _serve(sandbox: CalendarSandbox, request: Request, handler: Handler) -> Response:
    started = time.perf_counter()
    principal: Principal | None = None
    try:
        principal = _authenticate(sandbox, request)
        rule = sandbox.faults.match(request.method, request.url.path)
        if rule is not None and rule.latency_ms:
            await asyncio.sleep(rule.latency_ms / 1000)
        if rule is not None and rule.status is not None:
            response = _error(GoogleError(rule.status, rule.reason))
            if rule.retry_after is not None:
                response.headers["Retry-After"] = str(rule.retry_after)
        else:
            response = await handler(request, principal)
    except GoogleError as err:
        response = _error(err)
    except Exception:
        log.exception("request failed", method=request.method, path=request.url.path)
        response = _error(GoogleError(500, "backendError", "Backend Error"))
    _record(sandbox, request, response.status_code, started, principal)
    return response


def _record(
    sandbox: CalendarSandbox, request: Request, status: int, started: float, principal: Principal | None
) -> None:
    who = None if principal is None else principal.describe()
    query = {key: values if len(values) > 1 else values[0] for key, values in _redacted(_params(request)).items()}
    sandbox.journal.record(
        {
            "method": request.method,
            "path": request.url.path,
            "query": query,
            "status": status,
            "principal": who,
            "at": sandbox.clock.now().isoformat(),
        }
    )
    log.info(
        "request",
        method=request.method,
        path=request.url.path,
        status=status,
        principal=who,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )


def _redacted(params: dict[str, list[str]]) -> dict[str, list[str]]:
    """The query as the journal keeps it: the values of credential parameters replaced."""
    return {
        key: [_REDACTED] * len(values) if key.lower() in _SECRET_PARAMS else values for key, values in params.items()
    }


def _authenticate(sandbox: CalendarSandbox, request: Request) -> Principal | None:
    if not sandbox.auth_on:
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _invalid_credentials()
    authenticator = sandbox.authenticator if sandbox.authenticator is not None else StaticTokens(sandbox.auth_tokens)
    try:
        return authenticator.authenticate(token)
    except TokenRefused as refused:
        log.info("token refused", path=request.url.path, reason=refused.reason)
        raise _invalid_credentials() from None


def _invalid_credentials() -> GoogleError:
    return GoogleError(401, "authError", "Invalid Credentials", location="Authorization", location_type="header")


def calendar_for(sandbox: CalendarSandbox, request: Request, principal: Principal | None, need: Need) -> str:
    """The calendar a request addresses (``primary`` resolved), once the principal it acts for
    may do what ``need`` says there (nothing is checked without a principal). A calendar that
    does not exist is a 404, except a principal's own primary calendar on a write: it is
    created on first use, as without auth."""
    model = sandbox.model
    calendar_id = model.resolve(request.path_params["calendarId"], None if principal is None else principal.email)
    if principal is None:
        return calendar_id
    role = model.role(calendar_id, principal.email)
    if role is None:
        if need.role >= Role.WRITER and calendar_id.lower() == principal.email.lower():
            role = Role.OWNER
        else:
            check(need, Role.OWNER, principal.scopes)  # a scope refusal comes first, as Google's does
            raise not_found()
    check(need, role, principal.scopes)
    return calendar_id


def admin(handler: Endpoint) -> Endpoint:
    """An admin endpoint (``/_sandbox/``): not journaled, no auth, no faults; errors as Google's."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except GoogleError as err:
            return _error(err)

    return endpoint


def _params(request: Request) -> dict[str, list[str]]:
    return parse_qs(request.url.query, keep_blank_values=True)


def list_query(request: Request) -> ListQuery:
    return ListQuery(_params(request))


def cdv(request: Request) -> int:
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


async def read_body(request: Request) -> Any:
    data = await _read(request, MAX_BODY)
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise GoogleError(400, "parseError", "Parse Error") from err


async def read_admin_body(request: Request) -> dict[str, Any]:
    data = await _read(request, MAX_ADMIN_BODY)
    try:
        parsed = json.loads(data or b"{}")
    except (ValueError, UnicodeDecodeError) as err:
        raise GoogleError(400, "parseError", "Parse Error") from err
    if not isinstance(parsed, dict):
        raise GoogleError(400, "badRequest", "The request body must be a JSON object.")
    return parsed


def json_answer(value: object) -> Response:
    return raw_answer(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def raw_answer(data: bytes, status: int = 200) -> Response:
    return Response(content=data, status_code=status, media_type=_JSON)


def _error(err: GoogleError) -> Response:
    return JSONResponse(err.body(), status_code=err.code)


async def http_error(_request: Request, exc: HTTPException) -> Response:
    return JSONResponse(error_body(exc.status_code), status_code=exc.status_code, headers=exc.headers)
