"""The conferencing vendor's OAuth 2.0 endpoints and its account admin routes (outside the spec).

OAuth, as the vendor serves it: ``GET|POST /oauth/authorize`` (the consent page, "Sign in to
My Web Conferencing as {email}", Allow or Deny), ``POST /oauth/token`` (``authorization_code``
with PKCE S256, ``refresh_token`` with rotation) and ``POST /oauth/revoke`` (RFC 7009).

Admin, under ``/_sandbox/``: ``POST users`` ``{"email"}`` -> 201 ``{"email"}`` (200 if the
account exists, 400 for a bad address) and ``GET users``; ``POST oauth-clients``
``{"redirect_uris": [...], "name"?}`` -> 201 ``{"client_id", "client_secret"}``;
``POST users/{email}/revoke`` (the user disconnects the app in their settings) ->
``{"revoked_grants": N}``, 404 without such a user; ``POST clock`` ``{"advance_s": N}`` moves
the clock tokens expire by (N a finite number of seconds from 0 to ten years; 400 otherwise,
or when the clock cannot go that far).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.oauth import OAuthError, OAuthSurface, oauth_routes
from sandbox.provider.accounts import SCOPE_NAMES, VendorAccounts, normal_email

__all__ = ["HEADING", "account_routes"]

HEADING = "Sign in to My Web Conferencing as {email}"
Handler = Callable[[Request], Awaitable[Response]]
MAX_ADVANCE_S = 315_576_000  # ten years of 365.25 days, the most sandbox/clock.py moves at once
_HEADROOM = timedelta(days=366)  # room left after the clock for the expiry times reckoned from it


def account_routes(accounts: VendorAccounts) -> list[BaseRoute]:
    surface = OAuthSurface(
        server=accounts.oauth,
        principal_for=accounts.principal_for,
        heading=HEADING,
        authorize_path="/oauth/authorize",
        token_path="/oauth/token",  # noqa: S106 - a path, not a secret
        revoke_path="/oauth/revoke",
        scope_names=SCOPE_NAMES,
    )

    async def users(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"users": accounts.users()})
        email = normal_email((await _body(request)).get("email"))
        if email is None:
            return _error(400, "invalid_email", "email: an email address is required")
        created = accounts.add_user(email)
        return JSONResponse({"email": email}, status_code=201 if created else 200)

    async def new_client(request: Request) -> Response:
        body = await _body(request)
        uris = body.get("redirect_uris")
        if not isinstance(uris, list) or not all(isinstance(uri, str) for uri in uris):
            return _error(400, "invalid_request", "redirect_uris: a list of URLs is required")
        client = accounts.oauth.register_client(uris, str(body.get("name", "")))
        return JSONResponse({"client_id": client.client_id, "client_secret": client.client_secret}, 201)

    async def disconnect(request: Request) -> Response:
        email = normal_email(request.path_params["email"]) or ""
        ended = accounts.disconnect(email)
        if ended is None:
            return _error(404, "not_found", f"no user {request.path_params['email']}")
        return JSONResponse({"revoked_grants": ended})

    async def clock(request: Request) -> Response:
        seconds = (await _body(request)).get("advance_s")
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or not 0 <= seconds <= MAX_ADVANCE_S
        ):
            return _error(400, "invalid_request", f"advance_s: a number of seconds from 0 to {MAX_ADVANCE_S}")
        try:
            accounts.clock.now() + timedelta(seconds=seconds) + _HEADROOM  # representable, before moving
            accounts.clock.advance(float(seconds))
            now = accounts.clock.now().isoformat()
        except (ValueError, OverflowError) as err:  # the clock cannot go that far
            return _error(400, "invalid_request", f"advance_s: {err}")
        return JSONResponse({"now": now})

    return [
        *oauth_routes(surface),
        Route("/_sandbox/users", _admin(users), methods=["GET", "POST"]),
        Route("/_sandbox/users/{email}/revoke", _admin(disconnect), methods=["POST"]),
        Route("/_sandbox/oauth-clients", _admin(new_client), methods=["POST"]),
        Route("/_sandbox/clock", _admin(clock), methods=["POST"]),
    ]


def _admin(handler: Handler) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except OAuthError as err:
            return _error(err.status, err.code, err.description)

    return endpoint


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error(status: int, code: str, message: str) -> Response:
    """The sandbox's error shape (``sandbox.provider.store.error``)."""
    return JSONResponse({"error": {"code": code, "message": message, "retryable": False}}, status_code=status)
