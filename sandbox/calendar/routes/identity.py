"""Google's OAuth 2.0 and OpenID Connect endpoints, and their admin routes.

Google's surface: ``GET|POST /o/oauth2/v2/auth`` (the consent page), ``POST /token``
(authorization_code with PKCE, refresh_token, and the JWT bearer grant of service accounts),
``POST /revoke``, ``GET /oauth2/v3/certs`` (JWKS) and ``GET /oauth2/v1/certs`` (PEM).

Admin, under ``/_sandbox/``: ``POST oauth-clients`` ``{"redirect_uris": [...], "name"?}`` ->
``{"client_id", "client_secret"}``; ``POST service-accounts`` ``{"name"}`` -> a key file;
``POST|DELETE domain-wide-delegation`` ``{"client_id", "domain", "scopes"}``;
``POST users/{email}/revoke-grants``; ``POST id-token`` ``{"email", "audience"}`` ->
``{"id_token"}``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.calendar.identity import JWT_BEARER, GoogleIdentity
from sandbox.oauth import OAuthError, OAuthSurface, oauth_routes

__all__ = ["identity_routes"]

_MAX_BODY = 64 * 1024
_SERVICE_ACCOUNT_NAME = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_SCOPE_NAMES = {
    "https://www.googleapis.com/auth/calendar": "See, edit, share and permanently delete all the calendars you can "
    "access using Google Calendar",
    "https://www.googleapis.com/auth/calendar.events": "View and edit events on all your calendars",
    "https://www.googleapis.com/auth/calendar.readonly": "See and download any calendar you can access using your "
    "Google Calendar",
    "https://www.googleapis.com/auth/calendar.events.readonly": "View events on all your calendars",
    "https://www.googleapis.com/auth/calendar.calendarlist.readonly": "See the list of Google calendars you're "
    "subscribed to",
    "openid": "Associate you with your personal info on Google",
    "email": "See your primary Google Account email address",
    "profile": "See your personal info, including any personal info you've made publicly available",
}


def identity_routes(identity: GoogleIdentity) -> list[BaseRoute]:
    surface = OAuthSurface(
        server=identity.oauth,
        principal_for=identity.principal_for,
        heading="Sign in with Google as {email}",
        authorize_path="/o/oauth2/v2/auth",
        token_path="/token",  # noqa: S106 - a path, not a secret
        revoke_path="/revoke",
        scope_names=_SCOPE_NAMES,
        extra_grants={JWT_BEARER: identity.jwt_bearer},
    )

    async def jwks(_request: Request) -> Response:
        return JSONResponse(identity.jwks(), headers={"Cache-Control": "public, max-age=3600"})

    async def pem_certs(_request: Request) -> Response:
        return JSONResponse(identity.pem_certs(), headers={"Cache-Control": "public, max-age=3600"})

    async def new_client(request: Request) -> Response:
        body = await _body(request)
        uris = body.get("redirect_uris")
        if not isinstance(uris, list) or not all(isinstance(uri, str) for uri in uris):
            return _error(400, "redirect_uris: a list of URLs is required")
        client = identity.oauth.register_client(uris, str(body.get("name", "")))
        return JSONResponse({"client_id": client.client_id, "client_secret": client.client_secret}, 201)

    async def new_service_account(request: Request) -> Response:
        name = (await _body(request)).get("name")
        if not isinstance(name, str) or not _SERVICE_ACCOUNT_NAME.fullmatch(name):
            return _error(400, "name: 6-30 lowercase letters, digits or hyphens, starting with a letter")
        return JSONResponse(identity.create_service_account(name, f"{_base(request)}/token"), 201)

    async def delegation(request: Request) -> Response:
        body = await _body(request)
        client_id, domain, scopes = body.get("client_id"), body.get("domain"), body.get("scopes", [])
        if not isinstance(client_id, str) or not isinstance(domain, str) or not domain:
            return _error(400, "client_id and domain are required")
        if request.method == "DELETE":
            return JSONResponse({"withdrawn": identity.withdraw(client_id, domain)})
        if not isinstance(scopes, list) or not scopes or not all(isinstance(scope, str) for scope in scopes):
            return _error(400, "scopes: a non-empty list of scope URLs is required")
        identity.delegate(client_id, domain, scopes)
        return JSONResponse({"client_id": client_id, "domain": domain, "scopes": scopes}, 201)

    async def revoke_grants(request: Request) -> Response:
        return JSONResponse({"revoked_grants": identity.revoke_user(request.path_params["email"].lower())})

    async def id_token(request: Request) -> Response:
        body = await _body(request)
        email, audience = body.get("email"), body.get("audience")
        if not isinstance(email, str) or not isinstance(audience, str) or not audience:
            return _error(400, "email and audience are required")
        is_account = email.endswith(".gserviceaccount.com") and identity.has_service_account(email)
        if not identity.is_user(email) and not is_account:
            return _error(404, f"no user or service account {email}")
        return JSONResponse({"id_token": identity.id_token(email, audience)})

    admin = [
        Route("/_sandbox/oauth-clients", _admin(new_client), methods=["POST"]),
        Route("/_sandbox/service-accounts", _admin(new_service_account), methods=["POST"]),
        Route("/_sandbox/domain-wide-delegation", _admin(delegation), methods=["POST", "DELETE"]),
        Route("/_sandbox/users/{email}/revoke-grants", _admin(revoke_grants), methods=["POST"]),
        Route("/_sandbox/id-token", _admin(id_token), methods=["POST"]),
    ]
    return [
        *oauth_routes(surface),
        Route("/oauth2/v3/certs", jwks, methods=["GET"]),
        Route("/oauth2/v1/certs", pem_certs, methods=["GET"]),
        *admin,
    ]


def _admin(handler: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        try:
            response: Response = await handler(request)
        except OAuthError as err:
            return _error(err.status, err.description)
        return response

    return endpoint


async def _body(request: Request) -> dict[str, Any]:
    """A JSON object of at most ``_MAX_BODY`` bytes; anything else reads as empty (then a 400)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY:
            raise OAuthError("invalid_request", "the body is too large", status=413)
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": {"code": status, "message": message}}, status_code=status)
