"""A sandbox's OAuth endpoints over HTTP: authorize (consent page), token and revoke.

Each sandbox mounts them at its provider's paths (Google: ``/o/oauth2/v2/auth``, ``/token``,
``/revoke``; the conferencing vendor: ``/oauth/authorize``, ``/oauth/token``,
``/oauth/revoke``) and may add grant types of its own (Google's JWT bearer assertion).
Errors a person must see (an unknown client, a redirect address not registered) are pages;
errors for the app go back to its redirect address; the token endpoint answers RFC 6749's
JSON errors. A form body over 64 KiB is refused (413 ``invalid_request``) without being read
in full; malformed HTTP Basic client credentials are 401 ``invalid_client``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.identity import Principal
from sandbox.oauth.pages import consent_page, error_page
from sandbox.oauth.server import AuthorizationServer, AuthorizeRequest, Client, OAuthError, TokenResponse, with_query

__all__ = ["OAuthSurface", "oauth_routes"]

_SHOWN_TO_THE_USER = frozenset({"invalid_client", "redirect_uri_mismatch"})
MAX_FORM_BYTES = 64 * 1024

GrantHandler = Callable[[Mapping[str, str]], TokenResponse]


@dataclass
class OAuthSurface:
    """Where a sandbox serves its OAuth endpoints and what its consent page says.

    ``principal_for(email)`` is the sandbox user a person signs in as, or None if there is
    no such user; ``extra_grants`` maps a grant_type to its handler."""

    server: AuthorizationServer
    principal_for: Callable[[str], Principal | None]
    heading: str
    authorize_path: str
    token_path: str
    revoke_path: str
    scope_names: dict[str, str] = field(default_factory=dict)
    extra_grants: dict[str, GrantHandler] = field(default_factory=dict)


def oauth_routes(surface: OAuthSurface) -> list[Route]:
    server = surface.server

    def consent(request: AuthorizeRequest, *, email: str | None = None, problem: str | None = None) -> Response:
        page = consent_page(
            request,
            action=surface.authorize_path,
            heading=surface.heading,
            app_name=request.client.name,
            scope_names=surface.scope_names,
            email=email,
            problem=problem,
        )
        return HTMLResponse(page, status_code=200 if problem is None else 400)

    async def authorize(request: Request) -> Response:
        params: dict[str, str] = {}
        try:
            params = dict(request.query_params) if request.method == "GET" else dict(await _form(request))
            asked = server.authorize_request(params)
        except OAuthError as err:
            if err.code in _SHOWN_TO_THE_USER or err.status == 413:  # 413: no checked address to go back to
                return HTMLResponse(error_page(err.status, err.code, err.description), status_code=err.status)
            back = {"error": err.code, "error_description": err.description, "state": params.get("state")}
            return RedirectResponse(with_query(params["redirect_uri"], back), status_code=302)
        if request.method == "GET":
            return consent(asked)
        if params.get("decision") != "allow":
            return RedirectResponse(server.deny(asked), status_code=302)
        email = params.get("email", "").strip().lower()
        principal = surface.principal_for(email) if email else None
        if principal is None:
            return consent(asked, email=email, problem=f"There is no account {email or '(none given)'} here.")
        return RedirectResponse(server.approve(asked, principal), status_code=302)

    async def token(request: Request) -> Response:
        try:
            form = dict(await _form(request))
            grant_type = form.get("grant_type", "")
            if grant_type in surface.extra_grants:
                return JSONResponse(surface.extra_grants[grant_type](form).to_json())
            client = _client(server, request, form)
            if grant_type == "authorization_code":
                issued = server.exchange_code(
                    client, form.get("code", ""), form.get("redirect_uri", ""), form.get("code_verifier", "")
                )
            elif grant_type == "refresh_token":
                issued = server.refresh(client, form.get("refresh_token", ""))
            else:
                issued = _unsupported(grant_type)
        except OAuthError as err:
            return JSONResponse({"error": err.code, "error_description": err.description}, status_code=err.status)
        return JSONResponse(issued.to_json(), headers={"Cache-Control": "no-store"})

    async def revoke(request: Request) -> Response:
        try:
            form = dict(await _form(request))
        except OAuthError as err:
            return JSONResponse({"error": err.code, "error_description": err.description}, status_code=err.status)
        token_value = form.get("token") or request.query_params.get("token", "")
        if not server.revoke(token_value):
            return JSONResponse({"error": "invalid_token", "error_description": "Token expired or revoked"}, 400)
        return JSONResponse({})

    return [
        Route(surface.authorize_path, authorize, methods=["GET", "POST"]),
        Route(surface.token_path, token, methods=["POST"]),
        Route(surface.revoke_path, revoke, methods=["POST"]),
    ]


async def _form(request: Request) -> Mapping[str, str]:
    """An application/x-www-form-urlencoded body (what OAuth's endpoints take), last value wins;
    invalid_request (413) once it passes MAX_FORM_BYTES, read no further than that."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _too_large()
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def _too_large() -> OAuthError:
    return OAuthError("invalid_request", f"the request body is over {MAX_FORM_BYTES} bytes", status=413)


def _client(server: AuthorizationServer, request: Request, form: Mapping[str, str]) -> Client:
    """The client from HTTP Basic (RFC 6749 2.3.1) or from the form; its secret is checked."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(encoded.encode("ascii"), validate=True).decode("utf-8")
        except (ValueError, UnicodeError) as err:  # binascii.Error is a ValueError
            raise OAuthError("invalid_client", "malformed Basic credentials", status=401) from err
        client_id, _, secret = decoded.partition(":")
        return server.client(unquote(client_id), unquote(secret))
    return server.client(form.get("client_id", ""), form.get("client_secret", ""))


def _unsupported(grant_type: str) -> TokenResponse:
    raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
