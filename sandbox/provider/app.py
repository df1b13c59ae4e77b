"""The conferencing sandbox: the REST contract of ``confsync.provider`` served by FastAPI.

The OpenAPI spec is at ``/openapi.json`` (docs at ``/docs``). Admin routes, outside the spec:
``POST /_sandbox/faults`` (``{"method", "path", "status", "probability", "count",
"retry_after", "latency_ms"}``, keys optional except path), ``GET|DELETE /_sandbox/faults``,
``POST /_sandbox/reset`` (conferences, faults, journal and vendor users gone, users' grants
ended; OAuth clients stay) and ``GET /_sandbox/requests``, a JSON list of
``{method, path, idempotency_key, status, principal, traceparent, at}`` for every ``/v1``
request, so tests can count calls and follow a change's trace to them. Injected 429 and 503
answers carry ``Retry-After`` (1 s unless the rule says). Faults also fire on the OAuth
endpoints (``/oauth/...``, not journalled), so a busy token endpoint can be shown.
The vendor's account routes (users, OAuth clients, a user disconnecting the app, the clock
tokens expire by) are listed in sandbox/provider/routes.py.

Who calls: the app's API key (the app itself: it sees every conference, and those it creates
belong to no user, ``"owner": null``), or a vendor user's OAuth access token (sandbox/provider/
accounts.py; endpoints and admin routes in sandbox/provider/routes.py): the call acts for that
user, a create lands in their account (``"owner": EMAIL``) and another account's conference
is a 404. An expired or revoked access token gets 401 ``{"error": {"code": "invalid_token",
...}}`` with ``WWW-Authenticate: Bearer error="invalid_token"``; a missing or unknown one the
401 ``unauthenticated`` it always got. A user's token without the scope a call needs
(``conferences`` to create, change or delete; ``conferences`` or ``conferences:read`` to read)
gets 403 ``insufficient_scope`` with ``WWW-Authenticate: Bearer error="insufficient_scope"``;
the API key is not scoped. The journal's ``principal`` says whom each call acted
for (``app``, ``user:EMAIL``, or null when nobody was authenticated), never with what token.

FastAPI declares every route and answers every request it is given. A well-formed PATCH or
DELETE of a conference (the calls publishers make, thousands a second in benchmarks) takes a
shortcut past FastAPI's routing and dependency solving, about two thirds of the sandbox's CPU
per call: the same pydantic model, the same store call and the same response class, so the
answer is byte for byte FastAPI's. Anything the shortcut does not accept as valid goes on to
FastAPI, which answers it, errors included, as it always did.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException
from starlette.routing import Route

from sandbox.clock import Clock
from sandbox.faults import Faults
from sandbox.identity import Principal, PrincipalKind, TokenRefused
from sandbox.journal import Journal
from sandbox.provider.accounts import VendorAccounts, journal_name, missing_scope
from sandbox.provider.models import ConferenceView, CreateConference, CreatedConference, PatchConference, errors
from sandbox.provider.routes import account_routes
from sandbox.provider.store import Answer, ProviderStore, error

__all__ = ["ProviderSandbox", "create_app"]

AUTHENTICATION_URL = "https://mywebconf.test/oauth/authorize"
_ID_CHARS = r"[A-Za-z0-9_-]{1,64}"
_ID = f"^{_ID_CHARS}$"
_KEY = r"^[\x21-\x7e]{1,255}$"
_BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer <api key or a user's access token>")
_PRINCIPAL = "confsync.principal"  # the scope key _Gate leaves the caller's Principal under
ConferenceId = Annotated[str, Path(pattern=_ID)]
IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", pattern=_KEY)]


@dataclass
class ProviderSandbox:
    """``token_ttl_s``: how long a user's access token lives; ``refresh_grace_s``: how long a
    refresh token still works once a refresh has replaced it."""

    store: ProviderStore
    api_key: str
    faults: Faults = field(default_factory=Faults)
    journal: Journal = field(default_factory=Journal)
    clock: Clock = field(default_factory=Clock)
    token_ttl_s: int = 3600
    refresh_grace_s: float = 30.0
    accounts: VendorAccounts = field(init=False)

    def __post_init__(self) -> None:
        self.accounts = VendorAccounts(
            self.store,
            self.api_key,
            self.clock,
            token_ttl_s=self.token_ttl_s,
            refresh_grace_s=self.refresh_grace_s,
        )


def _acting_user(request: Request) -> str | None:
    """The user a /v1 call acts for (None: the app's API key)."""
    return _user_of(request.scope)


def _user_of(scope: Scope) -> str | None:
    principal: Principal | None = scope.get(_PRINCIPAL)
    return None if principal is None or principal.kind is PrincipalKind.APP else principal.email


ActingUser = Annotated[str | None, Depends(_acting_user)]


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
            **errors(),
        },
        dependencies=authorized,
    )
    async def create_conference(request: CreateConference, user: ActingUser) -> Response:
        body = request.model_dump(mode="json")
        return _answer(store.create(body, _now(), owner=user))

    @app.get(
        "/v1/conferences/{conference_id}",
        response_model=ConferenceView,
        responses=errors(404),
        dependencies=authorized,
    )
    async def get_conference(conference_id: ConferenceId, user: ActingUser) -> Response:
        return _answer(store.get(conference_id, as_user=user))

    @app.patch(
        "/v1/conferences/{conference_id}",
        response_model=ConferenceView,
        responses=errors(404, 409),
        dependencies=authorized,
    )
    async def patch_conference(
        conference_id: ConferenceId, request: PatchConference, idempotency_key: IdempotencyKey, user: ActingUser
    ) -> Response:
        return _answer(_patch(store, conference_id, idempotency_key, request, user))

    @app.delete("/v1/conferences/{conference_id}", status_code=204, responses=errors(404), dependencies=authorized)
    async def delete_conference(
        conference_id: ConferenceId, idempotency_key: IdempotencyKey, user: ActingUser
    ) -> Response:
        return _answer(store.delete(conference_id, idempotency_key, _now(), as_user=user))

    @app.post("/_sandbox/reset", include_in_schema=False)
    async def reset() -> Response:
        sandbox.accounts.reset()
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

    app.router.routes.extend(account_routes(sandbox.accounts))  # plain routes: not in the spec
    app.add_middleware(_Gate, sandbox=sandbox, shortcut=shortcut)
    return app


def _patch(store: ProviderStore, conference_id: str, key: str, request: PatchConference, user: str | None) -> Answer:
    changes = request.model_dump(mode="json", exclude_unset=True)
    changes.pop("event_updated")
    return store.patch(conference_id, key, changes, request.event_updated, _now(), as_user=user)


def _methods_for(app: FastAPI, path: str) -> list[str]:
    methods: set[str] = set()
    for route in app.routes:
        if isinstance(route, Route) and route.path_regex.match(path):  # FastAPI's, and the OAuth ones
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
    """Pure ASGI middleware in front of /v1: faults, then the bearer token, then the app; journals
    each with the principal it acted for."""

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], sandbox: ProviderSandbox, *, shortcut: bool
    ) -> None:
        self._app = app
        self._sandbox = sandbox
        self._shortcut = shortcut

    def _principal(self, scope: Scope) -> Principal | TokenRefused:
        """Whom the call acts for, or why its bearer token is refused."""
        given = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        scheme, _, token = given.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            return TokenRefused("no bearer token")
        try:
            return self._sandbox.accounts.authenticate(token)
        except TokenRefused as refused:
            return refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/oauth/"):  # faults only: no bearer there
            rule = self._sandbox.faults.match(scope["method"], scope["path"])
            if rule is not None and rule.status is not None:
                await _send_fault(send, rule.status, rule.reason, rule.retry_after)
                return
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self._app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        key = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"idempotency-key"), None)
        traceparent = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"traceparent"), None)
        status = 500
        principal = self._principal(scope)
        rule = self._sandbox.faults.match(method, path)
        if rule is not None and rule.latency_ms:
            await asyncio.sleep(rule.latency_ms / 1000)
        try:
            if rule is not None and rule.status is not None:
                status = rule.status
                await _send_fault(send, rule.status, rule.reason, rule.retry_after)
                return
            if isinstance(principal, TokenRefused):
                status = 401
                await _send_refusal(send, principal)
                return
            needed = missing_scope(principal, method)
            if needed is not None:
                status = 403
                await _send_insufficient_scope(send, needed)
                return
            scope[_PRINCIPAL] = principal

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
            who = None if isinstance(principal, TokenRefused) else journal_name(principal)
            self._sandbox.journal.record(
                {
                    "method": method,
                    "path": path,
                    "idempotency_key": key,
                    "status": status,
                    "principal": who,
                    "traceparent": traceparent,
                    "at": _now().isoformat(),
                }
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
        store, user = self._sandbox.store, _user_of(scope)
        if method == "DELETE":
            return store.delete(found[1], key, _now(), as_user=user), receive
        if not _is_json(scope):
            return None, receive
        messages, body = await _read_body(receive)
        replay = _replaying(messages, receive)
        try:
            request = PatchConference.model_validate(json.loads(body))
        except Exception:  # noqa: BLE001 - what the shortcut does not accept, FastAPI answers
            return None, replay
        return _patch(store, found[1], key, request, user), replay


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


_GONE = {"expired token": "the access token expired", "revoked token": "the access token was revoked"}


async def _send_refusal(send: Send, refused: TokenRefused) -> None:
    """401: a token that expired or was revoked is RFC 6750's invalid_token (refresh it, or
    sign the user in again); no token or an unknown one is unauthenticated, as it always was."""
    message = _GONE.get(refused.reason)
    if message is None:
        await _send_json(send, 401, _UNAUTHENTICATED)
        return
    body = {"error": {**_UNAUTHENTICATED["error"], "code": "invalid_token", "message": message}}
    challenge = f'Bearer error="invalid_token", error_description="{message}"'
    await _send_json(send, 401, body, [(b"www-authenticate", challenge.encode())])


async def _send_insufficient_scope(send: Send, needed: str) -> None:
    """403: the user's token is live but was not granted the scope the call needs (RFC 6750 3.1)."""
    message = f"the access token was not granted the {needed!r} scope this call needs"
    body = {"error": {"code": "insufficient_scope", "message": message, "retryable": False}}
    challenge = f'Bearer error="insufficient_scope", scope="{needed}"'
    await _send_json(send, 403, body, [(b"www-authenticate", challenge.encode())])


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
